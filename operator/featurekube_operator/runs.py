"""What one SparkApplication or Job says about one attempt at a window; pure.

A SparkApplication (Spark) or a Job (the python engine) is the vehicle of one attempt,
never the record of a view's progress (that is :mod:`.progress`): :func:`read_run`
reads what it shows, and :func:`read_outcome` what its pod reported when it ended (the
job writes its report as the termination message of the driver's, or the Job's,
container), including whether a failure can heal by itself.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featurekube_operator import naming
from featurekube_operator.windows import Window

__all__ = [
    "COMPLETED",
    "FAILED",
    "PERMANENT_ERRORS",
    "VIOLATIONS_LIMIT",
    "Outcome",
    "Run",
    "job_pod",
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
        "PathNotAllowedError",
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
    """One SparkApplication or Job of a view: one attempt at one window, and how it went."""

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
    """The driver pod, whose termination message is the job's report (a
    SparkApplication's; a Job's pod is found by its job-name label)."""
    generation: int = 0
    """The view's metadata.generation when the attempt was started."""
    kind: str = "SparkApplication"
    """SparkApplication or Job."""
    uid: str = ""
    """The object's uid: a Job's pods carry it in their controller-uid label."""

    @property
    def completed(self) -> bool:
        return self.state in COMPLETED

    @property
    def failed(self) -> bool:
        return self.state in FAILED

    @property
    def finished(self) -> bool:
        return self.completed or self.failed


def read_run(body: Mapping[str, Any], kind: str | None = None) -> Run:
    """A Run from a SparkApplication or Job body the operator created; ``kind`` is the
    body's kind where it carries none (the items of a list do not).

    A Job's state is the Spark Operator's word for it: COMPLETED once its Complete
    condition is true (or a pod succeeded), FAILED once its Failed condition is (or a
    pod failed: it never retries), else RUNNING.
    """
    meta = body["metadata"]
    kind = kind or body.get("kind") or "SparkApplication"
    annotations = meta.get("annotations") or {}
    start = parse_time(annotations.get(naming.ANNOTATION_WINDOW_START))
    end = parse_time(annotations.get(naming.ANNOTATION_WINDOW_END))
    if start is None or end is None:
        raise ValueError(f"{kind} {meta.get('name')} carries no window annotations")
    status = body.get("status") or {}
    if kind == "Job":
        state, error, finished_at = _job_state(status)
        driver_pod = ""
    else:
        application = status.get("applicationState") or {}
        state = application.get("state", "") or ""
        error = application.get("errorMessage", "") or ""
        finished_at = parse_time(status.get("terminationTime"))
        driver_pod = (status.get("driverInfo") or {}).get("podName", "") or ""
    return Run(
        name=meta["name"],
        version=int((meta.get("labels") or {}).get(naming.LABEL_VERSION, "0")),
        window=Window(start, end),
        state=state,
        attempt=int(annotations.get(naming.ANNOTATION_ATTEMPT, "1")),
        run_id=annotations.get(naming.ANNOTATION_RUN, "") or "",
        error=error,
        finished_at=finished_at,
        driver_pod=driver_pod,
        generation=int(annotations.get(naming.ANNOTATION_GENERATION, "0") or 0),
        kind=kind,
        uid=str(meta.get("uid") or ""),
    )


def _job_state(status: Mapping[str, Any]) -> tuple[str, str, dt.datetime | None]:
    """A Job's state, error and finish time. Its one pod's outcome counts as soon as the
    job controller has counted it, before the Job's final condition follows."""
    conditions = {
        c.get("type"): c for c in status.get("conditions") or () if c.get("status") == "True"
    }
    done = conditions.get("Complete") or conditions.get("SuccessCriteriaMet")
    if done is not None or (status.get("succeeded") or 0) > 0:
        finished = status.get("completionTime") or (done or {}).get("lastTransitionTime")
        return "COMPLETED", "", parse_time(finished)
    failed = conditions.get("Failed") or conditions.get("FailureTarget")
    if failed is not None or (status.get("failed") or 0) > 0:
        error = str((failed or {}).get("message") or "the job's pod failed")
        return "FAILED", error, parse_time((failed or {}).get("lastTransitionTime"))
    return "RUNNING", "", None


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
    violations: tuple[Mapping[str, Any], ...] | None = None
    """The checks the job found broken (feature, check, rows, onViolation, message);
    None when the report does not say (no report, or one cut short to fit)."""
    drift: Mapping[str, float] | None = None
    """Each feature's PSI against the view's drift reference, when the job measured it."""


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
        return Outcome(
            rows=_rows(report) if report else None,
            engine=engine,
            violations=_violations(report),
            drift=_drift(report),
        )
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
        violations=_violations(report),
    )


VIOLATIONS_LIMIT = 1024
"""Violations of one report read: a view has at most 256 expectations of 4 checks."""


def _violations(report: Mapping[str, Any] | None) -> tuple[Mapping[str, Any], ...] | None:
    listed = (report or {}).get("violations")
    if not isinstance(listed, list):
        return None
    return tuple(v for v in listed[:VIOLATIONS_LIMIT] if isinstance(v, dict))


def _drift(report: Mapping[str, Any] | None) -> Mapping[str, float] | None:
    found = (report or {}).get("drift")
    if not isinstance(found, dict):
        return None
    return {
        str(feature): float(psi)
        for feature, psi in list(found.items())[:VIOLATIONS_LIMIT]
        if isinstance(psi, int | float) and not isinstance(psi, bool) and math.isfinite(psi)
    }


def job_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """Of a Job's pods, the one whose termination message is its report: the latest
    created with a terminated container (a Job of the operator's has one pod)."""
    ended = [
        p
        for p in pods
        if any(
            (c.get("state") or {}).get("terminated")
            for c in (p.get("status") or {}).get("containerStatuses") or ()
        )
    ]
    return max(
        ended,
        key=lambda p: str(p["metadata"].get("creationTimestamp") or ""),
        default=None,
    )


def _engine(report: Mapping[str, Any] | None) -> str | None:
    engine = (report or {}).get("engine")
    return engine if engine in ("python", "spark") else None


def _line(text: str) -> str:
    """The first line of ``text``, at most :data:`REASON_LIMIT` characters."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= REASON_LIMIT else first[: REASON_LIMIT - 3] + "..."
