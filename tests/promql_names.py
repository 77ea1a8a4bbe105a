"""The metric names PromQL expressions read, and the names featurekube exports, for the
tests of the chart's alerts and dashboard (importable as ``promql_names``: pytest puts
this folder on sys.path with its conftest); pure."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry

__all__ = ["dashboard_expressions", "exported_names", "metric_names"]

_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "and",
        "or",
        "unless",
        "bool",
        "inf",
        "nan",
    }
)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
}


def metric_names(expression: str) -> set[str]:
    """The metric names ``expression`` selects: identifiers that are not functions,
    keywords, label names (in ``{}`` or after by/on/...), strings, durations or
    Grafana variables.

    >>> sorted(metric_names('sum by (ns) (rate(a_total{x="y"}[5m])) / on (ns) b offset 1h > 0.1'))
    ['a_total', 'b']
    """
    text = re.sub(r"\{\{.*?\}\}", " 1 ", expression)  # Helm's and Grafana's templates
    text = re.sub(r'"(\\.|[^"\\])*"', " ", text)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    text = re.sub(r"\b[0-9]+(ms|[smhdwy])\b", " ", text)  # durations, as after offset
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group()
        after = text[match.end() :].lstrip()
        if name.lower() in _KEYWORDS or after.startswith("("):
            continue
        names.add(name)
    return names


def exported_names(registries: Iterable[CollectorRegistry]) -> set[str]:
    """Every sample name the registries' metrics export, suffixes included."""
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            suffixes = _SUFFIXES.get(family.type)
            # A counter's or histogram's samples are only ever the suffixed names.
            names.update(family.name + s for s in suffixes) if suffixes else names.add(family.name)
    return names


def dashboard_expressions(dashboard: dict[str, Any]) -> Iterator[str]:
    """The PromQL of every panel target and templating query of a Grafana dashboard."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels") or [])

    for panel in panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or ():
            if target.get("expr"):
                yield str(target["expr"])
    for variable in (dashboard.get("templating") or {}).get("list") or ():
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        if variable.get("type") == "query" and text:
            found = re.fullmatch(r"label_values\((.*),\s*\w+\)", str(text))
            yield found.group(1) if found else str(text)
