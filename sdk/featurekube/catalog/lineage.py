"""Lineage as a picture: source -> view -> services -> who reads them, as inline SVG; pure.

:func:`view_lineage` draws a view's: its source on the left, then the view, the
services that use it and the ServiceAccounts that may read those services: everything
a change to the view would affect. :func:`service_lineage` draws a service's: the
sources and views it is made from, the service, and its readers. :func:`render_svg`
lays out any columns of nodes; every label is escaped.
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from featurekube.catalog import model

__all__ = [
    "MAX_NODES_PER_COLUMN",
    "Node",
    "render_svg",
    "service_lineage",
    "view_lineage",
]

MAX_NODES_PER_COLUMN = 24
"""Nodes drawn per column; the rest become one "+N more" node."""
_BOX_WIDTH = 220
_BOX_HEIGHT = 34
_COLUMN_GAP = 70
_ROW_GAP = 12
_MARGIN = 10
_LABEL_CHARACTERS = 30


@dataclass(frozen=True)
class Node:
    """One box of the picture."""

    id: str
    label: str
    kind: str
    """source, view, service or reader: the box's style."""
    href: str = ""
    focus: bool = False
    """The object whose page this is."""


def view_href(key: model.Key) -> str:
    """The catalog path of a view's page."""
    return f"/views/{urllib.parse.quote(key[0])}/{urllib.parse.quote(key[1])}"


def service_href(key: model.Key) -> str:
    """The catalog path of a service's page."""
    return f"/services/{urllib.parse.quote(key[0])}/{urllib.parse.quote(key[1])}"


def view_lineage(page: model.ViewPage) -> str:
    """The view's source, the view, the services that use it, and their readers."""
    view_id = f"view:{page.key[0]}/{page.key[1]}"
    source = Node("source", model.source_label(page.view), "source")
    view = Node(view_id, f"{page.key[0]}/{page.key[1]}", "view", view_href(page.key), True)
    services: list[Node] = []
    readers: dict[str, Node] = {}
    edges = [(source.id, view.id)]
    for key, who in page.consumers:
        node = Node(
            f"service:{key[0]}/{key[1]}", f"{key[0]}/{key[1]}", "service", service_href(key)
        )
        services.append(node)
        edges.append((view.id, node.id))
        for reader in who:
            readers.setdefault(reader, Node(f"reader:{reader}", reader, "reader"))
            edges.append((node.id, f"reader:{reader}"))
    columns: list[Sequence[Node]] = [[source], [view]]
    if services:
        columns.append(services)
    if readers:
        columns.append(list(readers.values()))
    return render_svg(columns, edges, title=f"lineage of {page.key[0]}/{page.key[1]}")


def service_lineage(page: model.ServicePage) -> str:
    """The sources and views a service is made from, the service, and its readers."""
    service = Node(
        f"service:{page.key[0]}/{page.key[1]}",
        f"{page.key[0]}/{page.key[1]}",
        "service",
        service_href(page.key),
        True,
    )
    sources: dict[str, Node] = {}
    views: list[Node] = []
    edges: list[tuple[str, str]] = []
    labels = dict(page.sources)
    for key in page.views:
        view = Node(f"view:{key[0]}/{key[1]}", f"{key[0]}/{key[1]}", "view", view_href(key))
        views.append(view)
        edges.append((view.id, service.id))
        if key in labels:
            source_id = f"source:{labels[key]}"
            sources.setdefault(source_id, Node(source_id, labels[key], "source"))
            edges.append((source_id, view.id))
    readers = [Node(f"reader:{r}", r, "reader") for r in page.readers]
    edges.extend((service.id, reader.id) for reader in readers)
    columns: list[Sequence[Node]] = []
    if sources:
        columns.append(list(sources.values()))
    columns.extend([views, [service]])
    if readers:
        columns.append(readers)
    return render_svg(columns, edges, title=f"lineage of {page.key[0]}/{page.key[1]}")


def _shortened(label: str) -> str:
    if len(label) <= _LABEL_CHARACTERS:
        return label
    return label[: _LABEL_CHARACTERS - 1] + "\u2026"


def render_svg(
    columns: Sequence[Sequence[Node]], edges: Iterable[tuple[str, str]], *, title: str
) -> str:
    """An SVG picture of ``columns`` of nodes, left to right, and arrows for ``edges``
    (pairs of node ids; edges to nodes not drawn are left out).

    >>> svg = render_svg([[Node("a", "<s3>", "source")]], [], title="t")
    >>> "&lt;s3&gt;" in svg and "<s3>" not in svg
    True
    """
    shown: list[list[Node]] = []
    for column in columns:
        kept = list(column[:MAX_NODES_PER_COLUMN])
        if len(column) > MAX_NODES_PER_COLUMN:
            more = len(column) - MAX_NODES_PER_COLUMN
            kept.append(Node(f"more:{len(shown)}", f"+{more} more", "more"))
        shown.append(kept)
    positions: dict[str, tuple[int, int]] = {}
    tallest = max((len(c) for c in shown), default=1)
    height = _MARGIN * 2 + tallest * (_BOX_HEIGHT + _ROW_GAP) - _ROW_GAP
    width = _MARGIN * 2 + len(shown) * (_BOX_WIDTH + _COLUMN_GAP) - _COLUMN_GAP
    boxes: list[str] = []
    for index, column in enumerate(shown):
        x = _MARGIN + index * (_BOX_WIDTH + _COLUMN_GAP)
        offset = (height - (len(column) * (_BOX_HEIGHT + _ROW_GAP) - _ROW_GAP)) // 2
        for row, node in enumerate(column):
            y = offset + row * (_BOX_HEIGHT + _ROW_GAP)
            positions[node.id] = (x, y)
            boxes.append(_box(node, x, y))
    arrows: list[str] = []
    for start, end in dict.fromkeys(edges):
        if start not in positions or end not in positions:
            continue
        (x1, y1), (x2, y2) = positions[start], positions[end]
        arrows.append(
            f'<line class="edge" x1="{x1 + _BOX_WIDTH}" y1="{y1 + _BOX_HEIGHT // 2}" '
            f'x2="{x2}" y2="{y2 + _BOX_HEIGHT // 2}" marker-end="url(#arrow)"/>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f"<title>{html.escape(title)}</title>"
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>'
        + "".join(arrows)
        + "".join(boxes)
        + "</svg>"
    )


def _box(node: Node, x: int, y: int) -> str:
    focus = " focus" if node.focus else ""
    label = html.escape(_shortened(node.label))
    inner = (
        f'<rect x="{x}" y="{y}" rx="6" width="{_BOX_WIDTH}" height="{_BOX_HEIGHT}"/>'
        f'<text x="{x + 10}" y="{y + _BOX_HEIGHT // 2 + 5}">{label}</text>'
        f"<title>{html.escape(node.kind)}: {html.escape(node.label)}</title>"
    )
    group = f'<g class="node {html.escape(node.kind)}{focus}" data-kind="{html.escape(node.kind)}">'
    if node.href:
        return f'{group}<a href="{html.escape(node.href)}">{inner}</a></g>'
    return f"{group}{inner}</g>"
