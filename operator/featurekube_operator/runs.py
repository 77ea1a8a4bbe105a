"""What one SparkApplication says about one attempt at a window; pure.

A SparkApplication is the vehicle of one attempt, never the record of a view's
progress (that is :mod:`.progress`): :func:`read_run` reads what it shows, and
:func:`read_outcome` what its driver reported when it ended (the job writes its report
as the driver container's termination message), including whether a failure can heal
by itself.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from featurekube_operator import naming
from featurekube_operator.windows import Window

__all__ = [
    "COMPLETED",
    "FAILED",
    "PERMANENT_ERRORS",
    "Outcome",
    "Run",
    "parse_time",
    "read_outcome",
    "read_run",
]

COMPLETED = frozenset({"COMPLETED"})
FAILED = frozenset({"FAILED", "SUBMISSION_FAILED"})

PERMANENT_ERRORS = frozenset(
    {
        "ExpectationFailedError",
        "MaterializePlanError",
        "SourceSchemaError",
        "SqlTransformationError",
        "RowError",
        "ItemTooLargeError",
    }
)
"""Errors of :mod:`featurekube.errors` that running the same window again cannot heal:
the data or the spec must change first. Any other failure (a store that did not answer,
an evicted pod, a lost executor) is transient and retried with backoff for as long as
it takes."""

REASON_LIMIT = 512
"""Characters of a failure's reason kept in the view's status."""


def parse_time(text: str | None) -> dt.datetime | None:
    """An ISO 8601 instant (``Z`` or an offset) in UTC; None for an empty text."""
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


@dataclass(frozen=True)
class Run:
    """One SparkApplication of a view: one attempt at one window, and how it went."""

    name: str
    version: int
    window: Window
    state: str
    attempt: int = 1
    run_id: str = ""
    """Which run of the window this is: empty for the scheduled one, else the id of the
    backfill request that asked for it again."""
    error: str = ""
    finished_at: dt.datetime | None = None
    driver_pod: str = ""
    """The driver pod, whose termination message is the job's report."""
    generation: int = 0
    """The view's metadata.generation when the attempt was started."""

    @property
    def completed(self) -> bool:
        return self.state in COMPLETED

    @property
    def failed(self) -> bool:
        return self.state in FAILED

    @property
    def finished(self) -> bool:
        return self.completed or self.failed


def read_run(body: Mapping[str, Any]) -> Run:
    """A Run from a SparkApplication body the operator created."""
    meta = body["metadata"]
    annotations = meta.get("annotations") or {}
    status = body.get("status") or {}
    state = status.get("applicationState") or {}
    start = parse_time(annotations.get(naming.ANNOTATION_WINDOW_START))
    end = parse_time(annotations.get(naming.ANNOTATION_WINDOW_END))
    if start is None or end is None:
        raise ValueError(f"SparkApplication {meta.get('name')} carries no window annotations")
    return Run(
        name=meta["name"],
        version=int((meta.get("labels") or {}).get(naming.LABEL_VERSION, "0")),
        window=Window(start, end),
        state=state.get("state", "") or "",
        attempt=int(annotations.get(naming.ANNOTATION_ATTEMPT, "1")),
        run_id=annotations.get(naming.ANNOTATION_RUN, "") or "",
        error=state.get("errorMessage", "") or "",
        finished_at=parse_time(status.get("terminationTime")),
        driver_pod=(status.get("driverInfo") or {}).get("podName", "") or "",
        generation=int(annotations.get(naming.ANNOTATION_GENERATION, "0") or 0),
    )


@dataclass(frozen=True)
class Outcome:
    """What a finished attempt left behind."""

    rows: Mapping[str, int] | None = None
    """Rows the job reported (read, offline, online); None without a report."""
    reason: str = ""
    """Why it failed, in a line: the job's error, else the Spark Operator's."""
    permanent: bool = False
    """Running it again cannot succeed until the data or spec changes."""
    engine: str | None = None
    """What computed the window, as the job reported: ``python`` or ``spark``."""


def _report(pod: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    for container in ((pod or {}).get("status") or {}).get("containerStatuses") or ():
        terminated = (container.get("state") or {}).get("terminated") or {}
        try:
            body = json.loads(terminated.get("message") or "")
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("rows"), dict):
            return body
    return None


def _rows(report: Mapping[str, Any]) -> dict[str, int] | None:
    try:
        return {key: int(report["rows"][key]) for key in ("read", "offline", "online")}
    except (KeyError, TypeError, ValueError):
        return None


def read_outcome(run: Run, driver: Mapping[str, Any] | None) -> Outcome:
    """The outcome of a finished ``run``, from its driver pod's report when there is one.

    A failure is permanent when the job says its error is one of
    :data:`PERMANENT_ERRORS` (its report's ``errorType``), or when it published nothing
    because an expectation with ``onViolation: Fail`` was violated. A run without a
    report (evicted, out of memory, never started) failed transiently.
    """
    report = _report(driver)
    engine = _engine(report)
    if run.completed:
        return Outcome(rows=_rows(report) if report else None, engine=engine)
    if report is None:
        return Outcome(reason=_line(run.error or "the job left no report"))
    fatal = [
        str(v.get("message") or "")
        for v in report.get("violations") or ()
        if isinstance(v, dict) and v.get("onViolation") == "Fail"
    ]
    error = str(report.get("error") or "")
    expectation_failed = bool(fatal) and not report.get("published")
    permanent = report.get("errorType") in PERMANENT_ERRORS or expectation_failed
    if not error and fatal:
        error = "expectation failed: " + "; ".join(fatal)
    return Outcome(
        rows=_rows(report),
        reason=_line(error or run.error or "the job failed without a message"),
        permanent=permanent,
        engine=engine,
    )


def _engine(report: Mapping[str, Any] | None) -> str | None:
    engine = (report or {}).get("engine")
    return engine if engine in ("python", "spark") else None


def _line(text: str) -> str:
    """The first line of ``text``, at most :data:`REASON_LIMIT` characters."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= REASON_LIMIT else first[: REASON_LIMIT - 3] + "..."
