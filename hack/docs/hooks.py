"""mkdocs hooks: add the generated reference pages to the site at build time.

Generated, not committed: the CRD reference from the spec models, the CLI reference
from the commands' parsers, the gRPC reference from the proto. Each page is rebuilt
from its source on every ``make docs``, so none can go stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

sys.path.insert(0, str(Path(__file__).parent))

import cli_reference
import crd_reference
import grpc_reference

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "feature_server" / "proto"
PROTO = "featurekube/serving/v1/serving.proto"

CLI_INTRO = (
    "Every command, option and default, generated from the commands' own parsers. "
    "`featurekube` is the command users run; `featurekube-operator` and "
    "`featurekube-server` are what the chart's Deployments run. Exit status 0 means "
    "success and 1 an error, reported on stderr as one line naming what is wrong, "
    "where, and what to do next (`--verbose` adds the detail)."
)


def generated_pages() -> dict[str, str]:
    """Site path -> Markdown of every generated page."""
    from featurekube.cli import main as cli_main
    from featurekube.spec import crds
    from featurekube_operator import __main__ as operator_main
    from featurekube_server import __main__ as server_main

    pages: dict[str, str] = {}
    for crd in crds.render_crds().values():
        kind = crd["spec"]["names"]["kind"].lower()
        pages[f"reference/crds/{kind}.md"] = crd_reference.render_crd_page(crd)
    pages["reference/cli.md"] = cli_reference.render_cli_page(
        "CLI reference",
        CLI_INTRO,
        [cli_main.build_parser(), operator_main.build_parser(), server_main.build_parser()],
    )
    descriptor = grpc_reference.load_descriptors(PROTO_ROOT, PROTO)
    pages["reference/grpc.md"] = grpc_reference.render_grpc_page(
        descriptor, f"feature_server/proto/{PROTO}"
    )
    return pages


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    """Add the generated pages, replacing any file of the same path."""
    for path, content in generated_pages().items():
        existing = files.get_file_from_path(path)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, path, content=content))
    return files


# Docstrings cross-reference in Sphinx's roles (:class:`~pkg.Name`), which Markdown
# renders as the role's name before the code; keep the code, shortened as `~` asks.
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):<code>(~)?([^<]*)</code>")


def _shown(match: re.Match[str]) -> str:
    name = match.group(2)
    return f"<code>{name.rsplit('.', 1)[-1] if match.group(1) else name}</code>"


def on_page_content(html: str, page: Page, **_: Any) -> str:
    """Render Sphinx roles left in docstrings as code."""
    return _ROLE.sub(_shown, html)
