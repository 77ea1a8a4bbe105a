"""Where a view's materialization stands, and what to do next; pure.

The operator keeps no state of its own: the SparkApplications a view owns are the
record of which windows ran, how, and when. :func:`summarize` reads them; :func:`decide`
turns that into the next actions. Both are deterministic, so a restarted operator
makes the same decisions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from featurekube.materialize import report
from featurekube_operator import naming
from featurekube_operator.windows import Window, plan_windows

__all__ = [
    "COMPLETED",
    "FAILED",
    "Decision",
    "Progress",
    "Run",
    "decide",
    "read_report_rows",
    "read_run",
    "retry_delay",
    "summarize",
]

COMPLETED = frozenset({"COMPLETED"})
FAILED = frozenset({"FAILED", "SUBMISSION_FAILED"})


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


@dataclass(frozen=True)
class Run:
    """One SparkApplication of a view: a window and how its job went."""

    name: str
    version: int
    window: Window
    state: str
    attempt: int = 1
    error: str = ""
    finished_at: dt.datetime | None = None
    driver_pod: str = ""
    """The driver pod, whose termination message is the job's report."""

    @property
    def completed(self) -> bool:
        return self.state in COMPLETED

    @property
    def failed(self) -> bool:
        return self.state in FAILED


def read_run(body: Mapping[str, Any]) -> Run:
    """A Run from a SparkApplication body the operator created."""
    meta = body["metadata"]
    annotations = meta.get("annotations") or {}
    status = body.get("status") or {}
    state = (status.get("applicationState") or {}).get("state", "") or ""
    start = _parse_time(annotations.get(naming.ANNOTATION_WINDOW_START))
    end = _parse_time(annotations.get(naming.ANNOTATION_WINDOW_END))
    if start is None or end is None:
        raise ValueError(f"SparkApplication {meta.get('name')} carries no window annotations")
    return Run(
        name=meta["name"],
        version=int((meta.get("labels") or {}).get(naming.LABEL_VERSION, "0")),
        window=Window(start, end),
        state=state,
        attempt=int(annotations.get(naming.ANNOTATION_ATTEMPT, "1")),
        error=(status.get("applicationState") or {}).get("errorMessage", "") or "",
        finished_at=_parse_time(status.get("terminationTime")),
        driver_pod=(status.get("driverInfo") or {}).get("podName", "") or "",
    )


def read_report_rows(pod: Mapping[str, Any] | None) -> dict[str, int] | None:
    """The rows a window's job reported, from its driver pod's termination message;
    None when there is no such pod or it holds no report."""
    for container in ((pod or {}).get("status") or {}).get("containerStatuses") or ():
        terminated = (container.get("state") or {}).get("terminated") or {}
        rows = report.read_termination_message(terminated.get("message"))
        if rows is not None:
            return rows
    return None


@dataclass(frozen=True)
class Progress:
    """What the runs of one version of a view add up to."""

    materialized_until: dt.datetime | None
    """End of the gap-free run of completed windows from the first start."""
    planned_until: dt.datetime | None
    """End of the last window that has a run, whatever its state."""
    in_flight: tuple[Run, ...]
    failed: tuple[Run, ...]
    completed: tuple[Run, ...]


def summarize(first_start: dt.datetime, runs: Iterable[Run]) -> Progress:
    """Fold the runs of one version into its :class:`Progress`."""
    ordered = sorted(runs, key=lambda r: r.window)
    materialized_until = None
    cursor = first_start
    for run in ordered:
        if run.window.start != cursor or not run.completed:
            break
        cursor = run.window.end
        materialized_until = cursor
    return Progress(
        materialized_until=materialized_until,
        planned_until=max((r.window.end for r in ordered), default=None),
        in_flight=tuple(r for r in ordered if not r.completed and not r.failed),
        failed=tuple(r for r in ordered if r.failed),
        completed=tuple(r for r in ordered if r.completed),
    )


def retry_delay(attempt: int, base: float, ceiling: float) -> dt.timedelta:
    """Backoff before attempt ``attempt + 1``: base, 2*base, 4*base, ... up to ceiling."""
    return dt.timedelta(seconds=min(base * 2 ** max(attempt - 1, 0), ceiling))


@dataclass(frozen=True)
class Decision:
    """What to do now for one version of a view."""

    create: tuple[Window, ...] = ()
    """New windows to start, in order."""
    retry: tuple[Run, ...] = ()
    """Failed runs whose backoff has passed: run the same window again."""
    next_retry_at: dt.datetime | None = None
    """When the next failed run becomes due for a retry."""
    caught_up: bool = False
    """Every window due by now has completed."""


def decide(
    progress: Progress,
    *,
    schedule: str,
    first_start: dt.datetime,
    now: dt.datetime,
    max_in_flight: int,
    max_span: dt.timedelta,
    backoff: float,
    max_backoff: float,
) -> Decision:
    """The next actions for one version, given its progress at ``now``."""
    retry: list[Run] = []
    waiting: list[dt.datetime] = []
    for run in progress.failed:
        due = (run.finished_at or now) + retry_delay(run.attempt, backoff, max_backoff)
        if due <= now:
            retry.append(run)
        else:
            waiting.append(due)
    busy = len(progress.in_flight) + len(progress.failed)
    free = max(max_in_flight - busy, 0)
    begin = progress.planned_until or first_start
    create = plan_windows(schedule, begin, now, max_span, free) if free else []
    caught_up = (
        not progress.in_flight
        and not progress.failed
        and progress.planned_until == progress.materialized_until
        and not plan_windows(schedule, begin, now, max_span, 1)
    )
    return Decision(
        create=tuple(create),
        retry=tuple(retry[: max(max_in_flight - len(progress.in_flight), 0)]),
        next_retry_at=min(waiting, default=None),
        caught_up=caught_up,
    )
