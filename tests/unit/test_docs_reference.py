"""The generated reference pages list everything their sources define."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "hack" / "docs"))

import cli_reference  # noqa: E402
import crd_reference  # noqa: E402
import grpc_reference  # noqa: E402

from featurekube.spec import crds  # noqa: E402


def _schema_paths(node: dict, prefix: str) -> set[str]:  # type: ignore[type-arg]
    found = set()
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}"
        found.add(path)
        if child.get("type") == "array":
            found |= _schema_paths(child.get("items", {}), f"{path}[]")
        elif isinstance(child.get("additionalProperties"), dict):
            found |= _schema_paths(child["additionalProperties"], f"{path}.*")
        else:
            found |= _schema_paths(child, path)
    return found


def test_the_crd_pages_list_every_field_of_spec_and_status() -> None:
    for crd in crds.render_crds().values():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        page = crd_reference.render_crd_page(crd)
        for part in ("spec", "status"):
            for path in _schema_paths(schema[part], part):
                assert f"| `{path}` |" in page, path


def test_a_field_row_shows_its_type_default_and_validation() -> None:
    node = {
        "properties": {
            "format": {"type": "string", "enum": ["parquet", "delta"], "default": "parquet"},
            "path": {"type": "string", "maxLength": 9, "description": "Where."},
        },
        "required": ["path"],
    }

    rows = {row.path: row for row in crd_reference.iter_fields(node, "spec", node["required"])}

    assert rows["spec.format"].default == '`"parquet"`'
    assert rows["spec.format"].checks == ("one of `parquet`, `delta`",)
    assert rows["spec.path"].required and rows["spec.path"].checks == ("length ≤ 9",)


def test_the_cli_page_shows_every_option_with_its_default() -> None:
    parser = argparse.ArgumentParser(prog="tool")
    commands = parser.add_subparsers()
    run = commands.add_parser("run", help="run it")
    run.add_argument("--port", type=int, default=50051, help="the port (default %(default)s)")
    run.add_argument("--quiet", action="store_true", help="say less")

    page = cli_reference.render_cli_page("T", "intro", [parser])

    assert "| `tool run` | run it |" in page
    assert "| `--port` `PORT` |  | `50051` | the port (default 50051) |" in page
    assert "| `--quiet` |  |  | say less |" in page


def test_the_grpc_page_lists_every_method_message_and_field() -> None:
    proto = REPO / "feature_server" / "proto"
    descriptor = grpc_reference.load_descriptors(proto, "featurekube/serving/v1/serving.proto")

    page = grpc_reference.render_grpc_page(descriptor, "serving.proto")

    for service in descriptor.service:
        for method in service.method:
            assert f"| `{method.name}` |" in page
    for message in descriptor.message_type:
        assert f"### {message.name}" in page
        for field in message.field:
            assert f"| `{field.name}` | {field.number} |" in page
    assert "map&lt;`string`, [`Values`](#values)&gt;" in page
