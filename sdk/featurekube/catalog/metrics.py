"""A feature service's request rate and latency, from its servers' Prometheus metrics; pure.

Two ways in, both turned into a :class:`~featurekube.catalog.model.ServingFigures`:

- the servers' own ``/metrics`` (text exposition format): :func:`parse_exposition`
  sums ``featurekube_server_request_seconds`` and ``featurekube_server_errors_total``
  over the pods; two scrapes some seconds apart give a rate (:func:`figures_between`);
- a Prometheus server: :func:`prometheus_queries` are the PromQL asked,
  :func:`parse_query_result` reads one answer.

Latency quantiles are estimated from the histogram's buckets the way Prometheus'
``histogram_quantile`` does (linear within a bucket).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from featurekube.catalog import model

__all__ = [
    "Sample",
    "figures_between",
    "histogram_quantile",
    "parse_exposition",
    "parse_query_result",
    "prometheus_queries",
]

REQUESTS = "featurekube_server_request_seconds"
ERRORS = "featurekube_server_errors_total"
MAX_LINES = 200_000
"""Exposition lines read from one scrape; a server exports a few hundred."""

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    """Request counters summed over a service's servers at one moment."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()
    """(upper bound, cumulative count) of the latency histogram, by bound."""

    def __add__(self, other: Sample) -> Sample:
        merged: dict[float, float] = dict(self.buckets)
        for bound, count in other.buckets:
            merged[bound] = merged.get(bound, 0.0) + count
        return Sample(
            self.requests + other.requests,
            self.errors + other.errors,
            tuple(sorted(merged.items())),
        )


def parse_exposition(text: str, feature_service: str) -> Sample:
    """The request counters of ``feature_service`` in one scrape's ``text``.

    >>> scrape = '''
    ... featurekube_server_request_seconds_bucket{feature_service="m",le="0.001"} 3
    ... featurekube_server_request_seconds_bucket{feature_service="m",le="+Inf"} 4
    ... featurekube_server_request_seconds_count{feature_service="m",code="OK"} 4
    ... featurekube_server_errors_total{feature_service="m",code="INTERNAL"} 1
    ... '''
    >>> parse_exposition(scrape, "m")
    Sample(requests=4.0, errors=1.0, buckets=((0.001, 3.0), (inf, 4.0)))
    """
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for number, line in enumerate(text.splitlines()):
        if number >= MAX_LINES:
            break
        if not line.startswith("featurekube_server_"):
            continue
        match = _LINE.match(line.strip())
        if match is None:
            continue
        name, labels_text, value_text = match.groups()
        labels = dict(_LABEL.findall(labels_text or ""))
        if labels.get("feature_service") != feature_service:
            continue
        try:
            value = float(value_text)
        except ValueError:
            continue
        if name == f"{REQUESTS}_count":
            requests += value
        elif name == ERRORS:
            errors += value
        elif name == f"{REQUESTS}_bucket" and "le" in labels:
            try:
                bound = float(labels["le"])
            except ValueError:
                continue
            buckets[bound] = buckets.get(bound, 0.0) + value
    return Sample(requests, errors, tuple(sorted(buckets.items())))


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q``-quantile of a cumulative histogram, as Prometheus estimates it; None
    without observations.

    >>> histogram_quantile(0.5, [(0.001, 50.0), (0.002, 100.0), (math.inf, 100.0)])
    0.001
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def figures_between(
    now: Sample,
    seconds: float,
    before: Sample | None,
    source: str,
) -> model.ServingFigures:
    """Figures from two scrapes ``seconds`` apart (``before`` None: only the first, so
    no rate yet; latency then covers every request since the servers started)."""
    if before is None or seconds <= 0 or now.requests < before.requests:
        return model.ServingFigures(
            source=source,
            requests_total=now.requests,
            p50_seconds=histogram_quantile(0.5, now.buckets),
            p99_seconds=histogram_quantile(0.99, now.buckets),
            error_ratio=now.errors / now.requests if now.requests else None,
        )
    before_buckets = dict(before.buckets)
    delta = tuple((b, c - before_buckets.get(b, 0.0)) for b, c in now.buckets)
    requests = now.requests - before.requests
    return model.ServingFigures(
        source=source,
        requests_total=now.requests,
        requests_per_second=requests / seconds,
        error_ratio=(now.errors - before.errors) / requests if requests else None,
        p50_seconds=histogram_quantile(0.5, delta),
        p99_seconds=histogram_quantile(0.99, delta),
    )


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def prometheus_queries(namespace: str, service: str, range_: str = "5m") -> Mapping[str, str]:
    """The PromQL the catalog asks a Prometheus server, by the figure each gives."""
    match = f'{{namespace="{_quoted(namespace)}",feature_service="{_quoted(service)}"}}'
    rate = f"sum(rate({REQUESTS}_count{match}[{range_}]))"
    return {
        "requests_per_second": rate,
        "error_ratio": f"sum(rate({ERRORS}{match}[{range_}])) / {rate}",
        "p50_seconds": (
            f"histogram_quantile(0.5, sum by (le) (rate({REQUESTS}_bucket{match}[{range_}])))"
        ),
        "p99_seconds": (
            f"histogram_quantile(0.99, sum by (le) (rate({REQUESTS}_bucket{match}[{range_}])))"
        ),
    }


def parse_query_result(document: Any) -> float | None:
    """The single value of a Prometheus ``/api/v1/query`` answer (None: no data or NaN).

    >>> parse_query_result({"status": "success", "data": {"resultType": "vector",
    ...     "result": [{"metric": {}, "value": [1700000000, "12.5"]}]}})
    12.5
    """
    if not isinstance(document, dict) or document.get("status") != "success":
        return None
    data = document.get("data")
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, list) or not result:
        return None
    value = result[0].get("value") if isinstance(result[0], dict) else None
    if not isinstance(value, list) or len(value) != 2:
        return None
    try:
        number = float(value[1])
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number
