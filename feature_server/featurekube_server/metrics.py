"""The feature server's Prometheus metrics, in a registry of their own; served over
HTTP by :func:`serve` (a thread; no other I/O).

    featurekube_server_request_seconds{feature_service, method, code}   histogram
    featurekube_server_request_rows{feature_service, method}            histogram
    featurekube_server_values_total{feature_service, status}            counter
    featurekube_server_store_seconds{feature_service, feature_view}     histogram
    featurekube_server_errors_total{feature_service, method, code}      counter

Buckets reach down to 250 µs: a lookup from the in-memory store takes well under a
millisecond, one from DynamoDB a few.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

__all__ = ["ServerMetrics", "serve"]

LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_Metric = TypeVar("_Metric", Counter, Histogram)

ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 50000)


class ServerMetrics:
    """The metrics of one feature server, labelled with its feature service."""

    def __init__(self, feature_service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.feature_service = feature_service
        self._children: dict[tuple[object, ...], Any] = {}
        self._requests = Histogram(
            "featurekube_server_request_seconds",
            "Time to answer a request, by method and gRPC status code.",
            ["feature_service", "method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._rows = Histogram(
            "featurekube_server_request_rows",
            "Entity rows (or pushed rows) per request.",
            ["feature_service", "method"],
            buckets=ROW_BUCKETS,
            registry=self.registry,
        )
        self._values = Counter(
            "featurekube_server_values",
            "Feature values answered, by status (PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE).",
            ["feature_service", "status"],
            registry=self.registry,
        )
        self._store = Histogram(
            "featurekube_server_store_seconds",
            "Time of one view's read from the online store (all its BatchGetItem calls).",
            ["feature_service", "feature_view"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._errors = Counter(
            "featurekube_server_errors",
            "Requests answered with an error, by method and gRPC status code.",
            ["feature_service", "method", "code"],
            registry=self.registry,
        )

    def request(self, method: str, code: str, seconds: float, rows: int) -> None:
        """Record one answered request (``code`` is the gRPC status code's name)."""
        self._child(self._requests, method, code).observe(seconds)
        if rows:
            self._child(self._rows, method).observe(rows)
        if code != "OK":
            self._child(self._errors, method, code).inc()

    def values(self, counts: Mapping[str, int]) -> None:
        """Count answered values by status name."""
        for status, count in counts.items():
            if count:
                self._child(self._values, status).inc(count)

    def store_read(self, feature_view: str, seconds: float) -> None:
        """Record one view's read from the store."""
        self._child(self._store, feature_view).observe(seconds)

    def _child(self, metric: _Metric, *labels: str) -> _Metric:
        # A metric's labelled child, kept: looking it up anew takes a lock and
        # validation on every call, several times per request.
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.feature_service, *labels)
        return child


def serve(metrics: ServerMetrics, port: int, host: str = "0.0.0.0") -> Callable[[], None]:
    """Serve ``metrics`` at http://host:port/metrics from a daemon thread; returns the
    function that stops serving them."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
