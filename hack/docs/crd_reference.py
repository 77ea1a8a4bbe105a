"""The CRD reference pages, rendered from the spec models; pure, no I/O.

:func:`render_crd_page` walks the structural schema that
:func:`featurekube.spec.crds.render_crds` makes from the pydantic models (the same one
``make crds`` writes to ``crds/``), so the reference lists exactly what the API server
enforces: every field with its type, whether it is required, its default, its
validation, and its description.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FieldRow", "iter_fields", "render_crd_page"]

# Validation keywords, in the order and words the reference shows them.
_CHECKS: tuple[tuple[str, str], ...] = (
    ("enum", "one of"),
    ("pattern", "matches"),
    ("minimum", "≥"),
    ("exclusiveMinimum", ">"),
    ("maximum", "≤"),
    ("exclusiveMaximum", "<"),
    ("minLength", "length ≥"),
    ("maxLength", "length ≤"),
    ("minItems", "items ≥"),
    ("maxItems", "items ≤"),
    ("minProperties", "entries ≥"),
    ("maxProperties", "entries ≤"),
)


@dataclass(frozen=True)
class FieldRow:
    """One field of a resource, as a row of the reference."""

    path: str
    type: str
    required: bool
    default: str
    checks: tuple[str, ...]
    description: str


def _type_of(node: Mapping[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "integer or string"
    kind = str(node.get("type", "any"))
    if kind == "array":
        return f"array of {_type_of(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), Mapping):
        return f"map of string to {_type_of(node['additionalProperties'])}"
    if "format" in node:
        return f"{kind} ({node['format']})"
    return kind


def _checks(node: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for key, words in _CHECKS:
        if key not in node:
            continue
        value = node[key]
        if key == "enum":
            shown = ", ".join(f"`{item}`" for item in value)
        elif key == "pattern":
            shown = f"`{value}`"
        else:
            shown = str(value)
        found.append(f"{words} {shown}")
    if node.get("x-kubernetes-list-type") == "map":
        keys = ", ".join(node.get("x-kubernetes-list-map-keys", ()))
        found.append(f"unique by {keys}")
    elif node.get("x-kubernetes-list-type") == "set":
        found.append("unique items")
    for rule in node.get("x-kubernetes-validations", ()):
        found.append(str(rule.get("message") or f"`{rule['rule']}`"))
    return tuple(found)


def _default(node: Mapping[str, Any]) -> str:
    if "default" not in node:
        return ""
    return f"`{json.dumps(node['default'], ensure_ascii=False)}`"


def iter_fields(
    node: Mapping[str, Any], prefix: str = "", required: Sequence[str] = ()
) -> Iterator[FieldRow]:
    """Every field under ``node`` (an OpenAPI v3 object schema), depth first, in the
    models' order; array items are spelled ``path[]`` and map values ``path.*``."""
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield FieldRow(
            path=path,
            type=_type_of(child),
            required=name in required,
            default=_default(child),
            checks=_checks(child),
            description=" ".join(str(child.get("description", "")).split()),
        )
        yield from _children(child, path)


def _children(node: Mapping[str, Any], path: str) -> Iterator[FieldRow]:
    if node.get("type") == "array":
        items = node.get("items", {})
        rules = _checks(items) if items.get("type") == "object" else ()
        if rules:
            # Rules on each item of a list of objects (CEL over each element).
            yield FieldRow(f"{path}[]", "object", False, "", rules, "Each item.")
        yield from iter_fields(items, f"{path}[]", items.get("required", ()))
    elif isinstance(node.get("additionalProperties"), Mapping):
        values = node["additionalProperties"]
        yield from iter_fields(values, f"{path}.*", values.get("required", ()))
    else:
        yield from iter_fields(node, path, node.get("required", ()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: Sequence[FieldRow]) -> list[str]:
    lines = [
        "| field | type | required | default | validation | description |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| `{row.path}` | {_cell(row.type)} | {'yes' if row.required else ''} "
            f"| {_cell(row.default)} | {_cell('; '.join(row.checks))} "
            f"| {_cell(row.description)} |"
        )
    return lines


def render_crd_page(crd: Mapping[str, Any]) -> str:
    """The Markdown reference page of one CustomResourceDefinition."""
    names = crd["spec"]["names"]
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    group = crd["spec"]["group"]
    short = ", ".join(f"`{name}`" for name in names.get("shortNames", ()))
    lines = [
        f"# {names['kind']}",
        "",
        "<!-- Generated by hack/docs/crd_reference.py from featurekube.spec.v1alpha1. -->",
        "",
        " ".join(str(schema.get("description", "")).split()),
        "",
        f"- API version: `{group}/{version['name']}`",
        f"- Resource: `{names['plural']}.{group}`, namespaced",
        f"- Short names: {short}; category: "
        + ", ".join(f"`{c}`" for c in names.get("categories", ())),
        "",
        "Field paths are those of the YAML: `a[]` is each item of the list `a`, `m.*` "
        "each value of the map `m`. A rule in *validation* is checked by the API server "
        "when the object is applied, and by `featurekube validate` before that.",
        "",
    ]
    properties = schema["properties"]
    for part in ("spec", "status"):
        if part not in properties:
            continue
        node = properties[part]
        lines += [f"## {part}", "", " ".join(str(node.get("description", "")).split()), ""]
        rules = _checks(node)
        if rules:
            lines += ["Rules across fields:", ""] + [f"- {rule}" for rule in rules] + [""]
        rows = list(iter_fields(node, part, node.get("required", ())))
        lines += [*_table(rows), ""]
    columns = version.get("additionalPrinterColumns", ())
    if columns:
        lines += [
            "## Columns of `kubectl get`",
            "",
            "| column | type | from | meaning |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {c['name']} | {c['type']} | `{_cell(c['jsonPath'])}` "
            f"| {_cell(c.get('description', ''))} |"
            for c in columns
        ]
        lines.append("")
    return "\n".join(lines)
