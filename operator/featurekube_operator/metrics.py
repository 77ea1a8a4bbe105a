"""The operator's Prometheus metrics; served over HTTP by :func:`serve`.

Freshness is computed when scraped, from the end of each view's last materialized
window, so it keeps growing while a view is stuck rather than freezing at its last value.
A view's health (its freshness objective, the verdicts of its last window's
expectation checks, its features' drift; see :mod:`.monitoring`) is set from its
status on every reconcile, a whole view at a time.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["COUNTED_KEYS", "Metrics"]

COUNTED_KEYS = 10_000
"""Run outcomes remembered to count each once, however long the operator runs."""


class _Freshness(Collector):
    def __init__(self) -> None:
        self._ends: dict[tuple[str, str], dt.datetime] = {}
        self._lock = threading.Lock()

    def set(self, namespace: str, view: str, end: dt.datetime | None) -> None:
        with self._lock:
            if end is None:
                self._ends.pop((namespace, view), None)
            else:
                self._ends[(namespace, view)] = end

    def forget(self, namespace: str, view: str) -> None:
        self.set(namespace, view, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "featurekube_feature_view_freshness_seconds",
            "Seconds since the end of the view's last materialized window.",
            labels=["namespace", "feature_view"],
        )
        now = dt.datetime.now(dt.UTC)
        with self._lock:
            for (namespace, view), end in sorted(self._ends.items()):
                family.add_metric([namespace, view], (now - end).total_seconds())
        yield family


class _ViewGauges(Collector):
    """A gauge whose series are set a whole view at a time: a view's series that its
    latest reconcile did not set (a check removed from the spec) disappear."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self._name, self._documentation = name, documentation
        self._labels = ["namespace", "feature_view", *labels]
        self._values: dict[tuple[str, str], dict[tuple[str, ...], float]] = {}
        self._lock = threading.Lock()

    def set_view(self, namespace: str, view: str, values: Mapping[tuple[str, ...], float]) -> None:
        """The view's series: extra label values (after namespace and feature_view) ->
        value. Empty: the view has none."""
        with self._lock:
            if values:
                self._values[(namespace, view)] = dict(values)
            else:
                self._values.pop((namespace, view), None)

    def forget(self, namespace: str, view: str) -> None:
        self.set_view(namespace, view, {})

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=self._labels)
        with self._lock:
            for (namespace, view), series in sorted(self._values.items()):
                for extra, value in sorted(series.items()):
                    family.add_metric([namespace, view, *extra], value)
        yield family


class Metrics:
    """Counters and gauges of one operator process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.freshness = _Freshness()
        self.registry.register(self.freshness)
        labels = ["namespace", "feature_view"]
        self.windows_succeeded = Counter(
            "featurekube_windows_succeeded",
            "Materialization windows completed, by the engine that computed them (python, "
            "spark, or unknown when the job left no report).",
            [*labels, "engine"],
            registry=self.registry,
        )
        self.windows_failed = Counter(
            "featurekube_windows_failed",
            "Materialization window runs that failed (each attempt counts).",
            labels,
            registry=self.registry,
        )
        self.reconciles = Counter(
            "featurekube_reconciles",
            "Reconciles run, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "featurekube_reconcile_errors",
            "Reconciles that raised an error, by kind.",
            ["kind"],
            registry=self.registry,
        )
        # A view's health (see featurekube_operator.monitoring), set from its status
        # on every reconcile, so a restarted operator exports it again at once.
        self.freshness_objective = _ViewGauges(
            "featurekube_feature_view_freshness_objective_seconds",
            "The view's freshness objective: featurekube_feature_view_freshness_seconds "
            "above it means the view is stale.",
            [],
        )
        self.expectation_violation_rows = _ViewGauges(
            "featurekube_expectation_violation_rows",
            "Rows of the view's last materialized window that broke an expectation check "
            "(0: it passed), by feature, check and onViolation.",
            ["feature", "check", "on_violation"],
        )
        self.feature_drift_psi = _ViewGauges(
            "featurekube_feature_drift_psi",
            "Population stability index of each feature's values in the view's last "
            "materialized window against its drift reference.",
            ["feature"],
        )
        self.feature_drift_threshold = _ViewGauges(
            "featurekube_feature_drift_threshold",
            "The PSI above which the view counts a feature as drifted "
            "(spec.monitoring.drift.threshold); set while drift is measured.",
            [],
        )
        # A streaming view's streams, by version (see featurekube_operator.streams).
        self.stream_running = _ViewGauges(
            "featurekube_stream_running",
            "1 while the version's stream runs and reports, else 0.",
            ["version"],
        )
        self.stream_consumer_lag = _ViewGauges(
            "featurekube_stream_consumer_lag_records",
            "Records in the stream's topic not yet read, at its last report.",
            ["version"],
        )
        self.stream_latency = _ViewGauges(
            "featurekube_stream_event_to_online_seconds",
            "Record appended to Kafka -> its value online: the median of the stream's "
            "last micro-batch.",
            ["version"],
        )
        self.stream_last_event = _ViewGauges(
            "featurekube_stream_last_event_timestamp_seconds",
            "The greatest event time the stream has written (Unix seconds).",
            ["version"],
        )
        self.stream_dead_letters = _ViewGauges(
            "featurekube_stream_dead_letters",
            "Records the stream's current run has written to its dead-letter table.",
            ["version"],
        )
        self.stream_late_events = _ViewGauges(
            "featurekube_stream_late_events",
            "Events the stream's current run found more than allowedLateness behind its "
            "watermark and dead-lettered (aggregations; counted in the dead letters too).",
            ["version"],
        )
        self.stream_history_missing = _ViewGauges(
            "featurekube_stream_history_missing_intervals",
            "Intervals before the stream's start its windows reach back to that the batch "
            "windows have not stored yet: the stream waits, reading nothing, while above 0 "
            "(aggregations).",
            ["version"],
        )
        for gauges in self.view_gauges:
            self.registry.register(gauges)
        self.expectation_violating_windows = Counter(
            "featurekube_expectation_violating_windows",
            "Materialized windows whose rows broke an expectation check, by feature, check "
            "and onViolation.",
            [*labels, "feature", "check", "on_violation"],
            registry=self.registry,
        )
        service = ["namespace", "feature_service"]
        self.parity_mismatch_rate = Gauge(
            "featurekube_parity_mismatch_rate",
            "Served feature values that differed from a point-in-time pull of the offline "
            "store, as a share of those compared, in the service's last parity check.",
            service,
            registry=self.registry,
        )
        self.parity_values = Counter(
            "featurekube_parity_values_compared",
            "Served feature values the parity checks compared with the offline store.",
            service,
            registry=self.registry,
        )
        self.parity_mismatches = Counter(
            "featurekube_parity_values_mismatched",
            "Served feature values the parity checks found different from the offline store.",
            service,
            registry=self.registry,
        )
        self.parity_skipped = Counter(
            "featurekube_parity_entities_skipped",
            "Sampled entities a parity check left out because a race could make their "
            "values differ, by reason (changed, pending, recent, ttl, moved).",
            [*service, "reason"],
            registry=self.registry,
        )
        self._counted: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def view_gauges(self) -> tuple[_ViewGauges, ...]:
        """The gauges set a whole view at a time, from its status."""
        return (
            self.freshness_objective,
            self.expectation_violation_rows,
            self.feature_drift_psi,
            self.feature_drift_threshold,
            self.stream_running,
            self.stream_consumer_lag,
            self.stream_latency,
            self.stream_last_event,
            self.stream_dead_letters,
            self.stream_late_events,
            self.stream_history_missing,
        )

    def count_run_once(self, key: str) -> bool:
        """True the first time ``key`` (a run and its outcome) is seen lately.

        Each outcome is news to one reconcile only (the view's status records it); this
        guards against two reconciles of one view at once, so it remembers only the
        latest :data:`COUNTED_KEYS` keys, not a view's whole history.
        """
        with self._lock:
            if key in self._counted:
                return False
            self._counted[key] = None
            while len(self._counted) > COUNTED_KEYS:
                self._counted.popitem(last=False)
            return True

    def serve(self, port: int) -> None:
        """Serve /metrics on ``port`` (all interfaces: Prometheus scrapes the pod IP)."""
        start_http_server(port, registry=self.registry)
