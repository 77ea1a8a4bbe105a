"""The report of one materialization run, the verdicts of the view's expectations,
and the observer that follows a run; pure (the default observer logs).

The job prints the report as one JSON line on stdout, and writes it to
``$FEATUREKUBE_REPORT_FILE`` when set: the driver container's termination-message path,
where the operator reads it back (:func:`read_termination_message`) to put the rows in
the view's status. Its shape::

    {"view": "FeatureView rides/driver-profile",
     "window": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
     "engine": "python",                 # what ran the window: python or spark
     "published": true,                  # false: nothing was written (failed expectation)
     "rows": {"read": 1200, "offline": 1180, "online": 200},   # = FeatureViewStatus.rows
     "onlineStale": 0,                   # entities not written: the table held newer values
     "features": {"rating": {"nulls": 3, "min": 3.1, "max": 5.0}, ...},
     "violations": [{"feature": "rating", "check": "max", "rows": 2, "onViolation": "Fail",
                     "message": "2 rows of rating are above max 5"}],
     "drift": {"rating": 0.031, "vehicle_type": 0.27},   # PSI per feature, or null
     "notes": ["drift not computed: ..."],   # what went wrong after publishing, if anything
     "timingsSeconds": {"read_compute": 4.2, "offline_write": 1.1, "statistics": 0.2, ...},
     "error": null, "errorType": null}      # errorType: the failure's class, if any

``rows.read`` counts the source rows the window read, after the transformation: for
an aggregation, the whole lookback on Spark, but on the python engine only the spans
its stored tiles do not cover (a steady window reads its own intervals, which may hold
no rows at all); ``rows.offline`` the rows written to the offline table;
``rows.online`` the entities written online. Statistics and checks are over the
rows written offline.

``timingsSeconds`` holds the seconds of each phase of the run, and ``published`` the
seconds from the job's process start to the window's publication (both stores
written, the pending record removed), when it was published.

``drift`` is null unless the view declares ``spec.monitoring.drift`` and its reference
profile was found: then it maps each feature with a PSI
(:mod:`featurekube.monitoring.drift`) to it, rounded to 4 decimals; a feature the
reference has no values of, or without values in the window, is absent. The window's
full statistics go to the version's statistics table
(:mod:`featurekube.monitoring.stats_store`), after the offline commit; ``notes`` says,
in words, why drift was not computed (no saved training-pull reference, a period not
over yet) or statistics were not stored — neither fails nor un-publishes the window.

A float NaN or infinity is written as the string ``"NaN"``,
``"Infinity"`` or ``"-Infinity"``; timestamps as ISO 8601 in UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from featurekube import errors
from featurekube.spec import v1alpha1

log = logging.getLogger(__name__)

__all__ = [
    "REPORT_FILE_ENV",
    "TERMINATION_LOG",
    "TERMINATION_MESSAGE_LIMIT",
    "Check",
    "FeatureStats",
    "LogObserver",
    "MaterializationReport",
    "Observer",
    "Violation",
    "evaluate_checks",
    "plan_checks",
    "read_termination_message",
    "stop_on_failed_checks",
]

REPORT_FILE_ENV = "FEATUREKUBE_REPORT_FILE"
"""The environment variable naming the file the job writes its report to."""
TERMINATION_LOG = "/dev/termination-log"
"""Where a container's termination message is written; Kubernetes keeps it in the pod's
status, so the operator sets :data:`REPORT_FILE_ENV` to it in the driver."""
TERMINATION_MESSAGE_LIMIT = 4096
"""Bytes of a container's termination message that Kubernetes keeps."""

CheckKind = Literal["notNull", "min", "max", "allowedValues"]


@dataclass(frozen=True)
class Check:
    """One thing an expectation checks: rows of ``feature`` that break it are counted."""

    feature: str
    kind: CheckKind
    on_violation: str
    bound: float | None = None
    """The limit of a min or max check."""
    allowed: tuple[str, ...] = ()
    """The values (as text) an allowedValues check accepts."""

    def describe(self, rows: int) -> str:
        """What ``rows`` offending rows mean, for people."""
        noun = "row" if rows == 1 else "rows"
        if self.kind == "notNull":
            return f"{rows} {noun} of {self.feature} are null"
        if self.kind == "min":
            return f"{rows} {noun} of {self.feature} are below min {_number(self.bound)}"
        if self.kind == "max":
            return f"{rows} {noun} of {self.feature} are above max {_number(self.bound)}"
        return (
            f"{rows} {noun} of {self.feature} are not one of the allowed values "
            f"{', '.join(self.allowed)}"
        )


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def plan_checks(spec: v1alpha1.FeatureViewSpec) -> list[Check]:
    """Every check of the view's expectations, in spec order."""
    checks: list[Check] = []
    for expectation in spec.expectations or ():
        feature, on = expectation.feature, expectation.on_violation
        if expectation.not_null:
            checks.append(Check(feature, "notNull", on))
        if expectation.min is not None:
            checks.append(Check(feature, "min", on, bound=expectation.min))
        if expectation.max is not None:
            checks.append(Check(feature, "max", on, bound=expectation.max))
        if expectation.allowed_values is not None:
            checks.append(
                Check(feature, "allowedValues", on, allowed=tuple(expectation.allowed_values))
            )
    return checks


@dataclass(frozen=True)
class Violation:
    """A check that some rows broke."""

    check: Check
    rows: int

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.check.feature,
            "check": self.check.kind,
            "rows": self.rows,
            "onViolation": self.check.on_violation,
            "message": self.check.describe(self.rows),
        }


def evaluate_checks(checks: Sequence[Check], offending: Sequence[int]) -> list[Violation]:
    """The violations among ``checks``, given how many rows broke each.

    >>> c = [Check("rating", "max", "Fail", bound=5.0), Check("rating", "notNull", "Warn")]
    >>> [v.to_json()["message"] for v in evaluate_checks(c, [2, 0])]
    ['2 rows of rating are above max 5']
    """
    return [Violation(c, n) for c, n in zip(checks, offending, strict=True) if n]


@dataclass(frozen=True)
class FeatureStats:
    """Nulls, least and greatest value of one feature over the rows written."""

    nulls: int
    min: Any = None
    max: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"nulls": self.nulls, "min": _json_value(self.min), "max": _json_value(self.max)}


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dt.datetime):
        return _iso(value)
    return value


def _iso(moment: dt.datetime) -> str:
    utc = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return utc.isoformat().replace("+00:00", "Z")


class Observer(Protocol):
    """Follows a run of either engine: the CLI draws it as progress bars; the default
    (:class:`LogObserver`) logs it."""

    def phase(self, name: str, total: int | None = None) -> None:
        """A phase starts: ``compute`` (read, compute, statistics and checks),
        ``offline`` or ``online``; ``total`` is its amount of rows or entities, when
        known."""

    def advance(self, amount: int) -> None:
        """``amount`` more rows or entities of the current phase are done."""


class LogObserver:
    """Logs each phase of a run; the observer of jobs run without a terminal."""

    def phase(self, name: str, total: int | None = None) -> None:
        log.info("materialize: %s%s", name, f" ({total} rows)" if total is not None else "")

    def advance(self, amount: int) -> None:
        pass


@dataclass
class MaterializationReport:
    """What one run read, wrote and found; see the module docstring for its JSON."""

    view: str
    start: dt.datetime
    end: dt.datetime
    rows_read: int = 0
    rows_offline: int = 0
    rows_online: int = 0
    online_stale: int = 0
    features: Mapping[str, FeatureStats] = field(default_factory=dict)
    violations: Sequence[Violation] = ()
    published: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    engine: str | None = None
    """What ran the window: ``python`` or ``spark`` (None: it did not start)."""
    error_type: str | None = None
    """The class of the error that failed the run (a :mod:`featurekube.errors` name,
    or Spark's), from which the operator judges whether a retry can heal it."""
    drift: dict[str, float] | None = None
    """Feature -> PSI against the view's drift reference; None: not computed."""
    notes: list[str] = field(default_factory=list)
    """What went wrong after publishing (statistics, drift), in words."""

    @property
    def failed_checks(self) -> list[Violation]:
        """Violations of checks with ``onViolation: Fail``."""
        return [v for v in self.violations if v.check.on_violation == "Fail"]

    def to_json(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "window": {"start": _iso(self.start), "end": _iso(self.end)},
            "engine": self.engine,
            "published": self.published,
            "rows": {
                "read": self.rows_read,
                "offline": self.rows_offline,
                "online": self.rows_online,
            },
            "onlineStale": self.online_stale,
            "features": {name: stats.to_json() for name, stats in self.features.items()},
            "violations": [v.to_json() for v in self.violations],
            "drift": None
            if self.drift is None
            else {name: round(psi, 4) for name, psi in self.drift.items()},
            "notes": list(self.notes),
            "timingsSeconds": {k: round(v, 3) for k, v in self.timings.items()},
            "error": self.error,
            "errorType": self.error_type,
        }

    def to_termination_message(self, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
        """The report as JSON of at most ``limit`` bytes, for a termination message.

        What does not fit is left out, least useful first: the per-feature statistics,
        the notes, the timings, the violations' messages (their feature, check and rows
        stay: the operator reports every violated check from them), then ``drift``
        keeps its largest PSIs only (``driftTruncated``), then the violations, then the
        error's text is cut short; the window, ``published`` and the row counts are
        always there.
        """
        body = self.to_json()

        def fits() -> bool:
            return len(_compact(body).encode()) <= limit

        for key in ("features", "notes", "timingsSeconds"):
            if fits():
                return _compact(body)
            body[key] = None
            body["truncated"] = True
        if not fits() and body.get("violations"):
            body["violations"] = [
                {k: v for k, v in violation.items() if k != "message"}
                for violation in body["violations"]
            ]
        drift = body.get("drift")
        if drift and not fits():
            largest = sorted(drift.items(), key=lambda item: (-item[1], item[0]))
            body["driftTruncated"] = True
            while largest and not fits():
                largest = largest[: len(largest) // 2]
                body["drift"] = dict(largest)
        if not fits() and body.get("violations"):
            body["violations"] = None
        error = str(body.get("error") or "")
        while not fits() and error:
            error = error[: len(error) // 2]
            body["error"] = error + "..."
        return _compact(body)


def stop_on_failed_checks(result: MaterializationReport) -> None:
    """Raise :class:`~featurekube.errors.ExpectationFailedError`, carrying ``result``
    with the message as its error, when an ``onViolation: Fail`` check was violated:
    the engines call it after checking and before writing, so nothing is written."""
    if not result.failed_checks:
        return
    message = (
        f"{result.view}: the window [{_iso(result.start)}, {_iso(result.end)}) broke "
        "expectations with onViolation: Fail, so nothing was written: "
        + "; ".join(v.check.describe(v.rows) for v in result.failed_checks)
    )
    result.error = message
    raise errors.ExpectationFailedError(message, result)


def _compact(body: Mapping[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def read_termination_message(text: str | None) -> dict[str, int] | None:
    """The row counts of a report read back from a termination message; None when the
    text is not a report (a job that died before writing one, another program).

    >>> read_termination_message('{"rows": {"read": 3, "offline": 3, "online": 1}}')
    {'read': 3, 'offline': 3, 'online': 1}
    >>> read_termination_message("Error: out of memory") is None
    True
    """
    try:
        body = json.loads(text or "")
        rows = body["rows"]
        return {key: int(rows[key]) for key in ("read", "offline", "online")}
    except (ValueError, TypeError, KeyError):
        return None
