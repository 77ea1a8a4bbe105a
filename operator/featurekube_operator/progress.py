"""A view version's materialization progress: its durable record, and what to do
next; pure.

The record lives in the view's status (``status.progress``, one entry per version the
view serves or backfills), never in the SparkApplications: ``materializedUntil`` (the
end of the gap-free run of completed windows from the first start), ``plannedUntil``
(the end of the last window started), the windows not yet part of that run (running,
failed with their attempts and reasons, or completed out of order), the ranges a
backfill asked to run again, and the latest window completed with its rows (what engine
auto estimates from). A SparkApplication or Job is the vehicle of one attempt:

- :func:`observe` folds what the existing applications show into the record;
- :func:`collectable` names the finished applications whose outcome the record already
  holds, beyond the history limits: deleting them (or anyone deleting them) loses
  nothing, so a view's applications stay few however long its history;
- :func:`decide` turns the record into the attempts to start now: new windows,
  retries after backoff, windows whose application vanished before it finished, and
  re-runs; a failure that cannot heal stops after a bounded number of attempts;
- :func:`request_backfill` adds a re-run of chosen windows to the record.

Everything here is deterministic, so a restarted operator makes the same decisions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featurekube_operator import runs
from featurekube_operator.runs import Run
from featurekube_operator.windows import Window, plan_windows

__all__ = [
    "COLLECT_GRACE",
    "FAILED",
    "LOOKAHEAD",
    "RUNNING",
    "SUCCEEDED",
    "Backfill",
    "Decision",
    "Limits",
    "Observation",
    "Progress",
    "WindowRecord",
    "collectable",
    "decide",
    "news",
    "observe",
    "progress_from_status",
    "progress_to_status",
    "request_backfill",
    "retry_delay",
]

RUNNING, SUCCEEDED, FAILED = "Running", "Succeeded", "Failed"


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class WindowRecord:
    """One window the record follows: started, and not yet part of materializedUntil."""

    window: Window
    state: str
    """Running, Succeeded (ahead of a gap, or a re-run) or Failed."""
    attempt: int = 1
    run: str = ""
    """Empty for the scheduled run; else the id of the backfill that re-runs it."""
    reason: str = ""
    """Why the last attempt failed."""
    permanent: bool = False
    """The last failure cannot heal by running the window again."""
    finished_at: dt.datetime | None = None
    rows: Mapping[str, int] | None = None
    """Rows a succeeded attempt reported."""
    engine: str | None = None
    """What computed the succeeded attempt: python or spark."""
    generation: int = 0
    """The view's metadata.generation the last attempt was started with."""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "start": _iso(self.window.start),
            "end": _iso(self.window.end),
            "state": self.state,
            "attempt": self.attempt,
        }
        if self.run:
            body["run"] = self.run
        if self.reason:
            body["reason"] = self.reason
        if self.permanent:
            body["permanent"] = True
        if self.finished_at is not None:
            body["finishedAt"] = _iso(self.finished_at)
        if self.rows is not None:
            body["rows"] = dict(self.rows)
        if self.engine is not None:
            body["engine"] = self.engine
        if self.generation:
            body["generation"] = self.generation
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> WindowRecord:
        return cls(
            window=_window(body),
            state=str(body["state"]),
            attempt=int(body.get("attempt") or 1),
            run=str(body.get("run") or ""),
            reason=str(body.get("reason") or ""),
            permanent=bool(body.get("permanent")),
            finished_at=runs.parse_time(body.get("finishedAt")),
            rows=dict(body["rows"]) if body.get("rows") else None,
            engine=str(body["engine"]) if body.get("engine") else None,
            generation=int(body.get("generation") or 0),
        )


def _window(body: Mapping[str, Any]) -> Window:
    start, end = runs.parse_time(str(body["start"])), runs.parse_time(str(body["end"]))
    assert start is not None and end is not None
    return Window(start, end)


@dataclass(frozen=True)
class Backfill:
    """A range a backfill asked to run again, not started yet."""

    window: Window
    run: str


@dataclass(frozen=True)
class Progress:
    """The durable record of one version's materialization."""

    version: int
    materialized_until: dt.datetime | None = None
    """End of the gap-free run of completed windows from the first start."""
    planned_until: dt.datetime | None = None
    """End of the last scheduled window started."""
    windows: tuple[WindowRecord, ...] = ()
    backfills: tuple[Backfill, ...] = ()
    last: WindowRecord | None = None
    """The latest window (by its end) that completed with a report of its rows: engine
    auto estimates the input of the next windows from it."""

    def done(self, window: Window) -> bool:
        """Whether ``window`` lies within materializedUntil."""
        return self.materialized_until is not None and window.end <= self.materialized_until

    @property
    def running(self) -> tuple[WindowRecord, ...]:
        return tuple(w for w in self.windows if w.state == RUNNING)

    @property
    def failed(self) -> tuple[WindowRecord, ...]:
        return tuple(w for w in self.windows if w.state == FAILED)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"version": self.version}
        if self.materialized_until is not None:
            body["materializedUntil"] = _iso(self.materialized_until)
        if self.planned_until is not None:
            body["plannedUntil"] = _iso(self.planned_until)
        body["windows"] = [w.to_json() for w in sorted(self.windows, key=lambda w: w.window)]
        body["backfills"] = [
            {"start": _iso(b.window.start), "end": _iso(b.window.end), "run": b.run}
            for b in self.backfills
        ]
        if self.last is not None:
            body["lastWindow"] = self.last.to_json()
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Progress:
        return cls(
            version=int(body["version"]),
            materialized_until=runs.parse_time(body.get("materializedUntil")),
            planned_until=runs.parse_time(body.get("plannedUntil")),
            windows=tuple(WindowRecord.from_json(w) for w in body.get("windows") or ()),
            backfills=tuple(
                Backfill(_window(b), str(b.get("run") or "")) for b in body.get("backfills") or ()
            ),
            last=WindowRecord.from_json(body["lastWindow"]) if body.get("lastWindow") else None,
        )


def progress_from_status(status: Mapping[str, Any], version: int) -> Progress | None:
    """The record of ``version`` in a view's status; None when it holds none."""
    for item in status.get("progress") or ():
        if item.get("version") == version:
            return Progress.from_json(item)
    return None


def progress_to_status(records: Iterable[Progress]) -> list[dict[str, Any]]:
    """``status.progress`` holding ``records``."""
    return [p.to_json() for p in sorted(records, key=lambda p: p.version)]


# -- observing applications -------------------------------------------------------------


def _observed(
    progress: Progress,
    entries: Mapping[Window, WindowRecord],
    run: Run,
    outcome: runs.Outcome | None,
) -> WindowRecord | None:
    """The record ``run`` makes of its window; None when it teaches the record nothing
    (its outcome is recorded already, or it is history: an older attempt, a run a
    backfill superseded, or a window within materializedUntil)."""
    entry = entries.get(run.window)
    if entry is None:
        queued = any(
            b.window.start < run.window.end and run.window.start < b.window.end
            for b in progress.backfills
        )
        if run.run_id or queued or progress.done(run.window):
            return None
        entry = WindowRecord(run.window, RUNNING, run.attempt)
        known = False
    elif entry.run != run.run_id or run.attempt < entry.attempt:
        return None
    else:
        known = True
    if run.completed:
        state, finished = SUCCEEDED, run.finished_at
    elif run.failed:
        state, finished = FAILED, run.finished_at
    else:
        state, finished = RUNNING, None
    if known and (entry.state, entry.attempt) == (state, run.attempt):
        return None
    return dataclasses.replace(
        entry,
        state=state,
        attempt=run.attempt,
        finished_at=finished,
        reason=(outcome.reason if outcome else run.error) if state == FAILED else "",
        permanent=bool(outcome and outcome.permanent) if state == FAILED else False,
        rows=outcome.rows if outcome and state == SUCCEEDED else None,
        engine=outcome.engine if outcome and state == SUCCEEDED else None,
        generation=run.generation or entry.generation,
    )


def news(progress: Progress, present: Iterable[Run]) -> list[Run]:
    """The finished runs whose outcome the record does not hold yet: their driver's
    report is worth reading once."""
    entries = {w.window: w for w in progress.windows}
    return [
        r
        for r in present
        if r.version == progress.version
        and r.finished
        and _observed(progress, entries, r, None) is not None
    ]


@dataclass(frozen=True)
class Observation:
    """The record after observing the applications, and what changed."""

    progress: Progress
    succeeded: tuple[Run, ...] = ()
    """Runs newly seen to complete."""
    failed: tuple[Run, ...] = ()
    """Runs newly seen to fail."""
    last: WindowRecord | None = None
    """The window that now ends materializedUntil, if it moved this time."""


def observe(
    progress: Progress,
    present: Iterable[Run],
    first_start: dt.datetime,
    outcomes: Mapping[str, runs.Outcome] | None = None,
) -> Observation:
    """Fold what the present applications show into ``progress``, then move
    materializedUntil over the completed windows that now follow it without a gap.

    ``outcomes`` holds what the drivers of newly finished runs reported, by name.
    Applications that are gone change nothing: the record already holds all it needs.
    """
    entries = {w.window: w for w in progress.windows}
    succeeded: list[Run] = []
    failed: list[Run] = []
    latest = progress.last
    for run in sorted(present, key=lambda r: (r.window, r.attempt)):
        if run.version != progress.version:
            continue
        found = _observed(progress, entries, run, (outcomes or {}).get(run.name))
        if found is None:
            continue
        entries[run.window] = found
        if found.state == SUCCEEDED:
            succeeded.append(run)
            if found.rows is not None and (latest is None or found.window.end >= latest.window.end):
                latest = found
        elif found.state == FAILED:
            failed.append(run)
    cursor = progress.materialized_until or first_start
    last = None
    while True:
        following = next(
            (w for w in entries.values() if w.state == SUCCEEDED and w.window.start == cursor),
            None,
        )
        if following is None:
            break
        del entries[following.window]
        cursor, last = following.window.end, following
    materialized_until = cursor if last is not None else progress.materialized_until
    for window, entry in list(entries.items()):
        # A re-run within materializedUntil is done once it succeeds.
        if entry.state == SUCCEEDED and materialized_until and window.end <= materialized_until:
            del entries[window]
    scheduled = [w.window.end for w in entries.values() if not w.run]
    planned = [t for t in (progress.planned_until, materialized_until, *scheduled) if t]
    return Observation(
        progress=dataclasses.replace(
            progress,
            materialized_until=materialized_until,
            planned_until=max(planned, default=None),
            windows=tuple(sorted(entries.values(), key=lambda w: w.window)),
            last=latest,
        ),
        succeeded=tuple(succeeded),
        failed=tuple(failed),
        last=last,
    )


COLLECT_GRACE = dt.timedelta(seconds=60)
"""How long a finished application is kept, whatever the history limits."""


def collectable(
    records: Mapping[int, Progress],
    present: Sequence[Run],
    *,
    keep_succeeded: int,
    keep_failed: int,
    now: dt.datetime,
    grace: dt.timedelta = COLLECT_GRACE,
) -> list[str]:
    """The finished applications that may be deleted: the record already holds their
    outcome, and those of later windows fill the history limits (per view, like a
    CronJob's).

    ``records`` are the records as read at the start of the reconcile (so, durably
    written); applications of versions without one are kept. Applications still
    running, or that finished less than ``grace`` ago, are kept: a reconcile that
    started before one finished, and writes the status after another recorded it,
    still finds it and records it again.
    """
    recorded: list[Run] = []
    for run in present:
        if not run.finished or (run.finished_at and now - run.finished_at < grace):
            continue
        record = records.get(run.version)
        if record is None:
            continue
        entries = {w.window: w for w in record.windows}
        if _observed(record, entries, run, None) is None:
            recorded.append(run)

    def newest_first(found: Iterable[Run]) -> list[Run]:
        # By window, so the applications kept are of the latest windows, without gaps.
        oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
        return sorted(
            found, key=lambda r: (r.window, r.finished_at or oldest, r.name), reverse=True
        )

    done = newest_first(r for r in recorded if r.completed)[keep_succeeded:]
    failed = newest_first(r for r in recorded if r.failed)[keep_failed:]
    return sorted(r.name for r in (*done, *failed))


# -- deciding what to start -------------------------------------------------------------


def retry_delay(attempt: int, base: float, ceiling: float) -> dt.timedelta:
    """Backoff before attempt ``attempt + 1``: base, 2*base, 4*base, ... up to ceiling."""
    return dt.timedelta(seconds=min(base * 2 ** max(attempt - 1, 0), ceiling))


@dataclass(frozen=True)
class Limits:
    """How much runs at once, how long windows are, how failures are retried."""

    max_in_flight: int
    max_span: dt.timedelta
    backoff: float
    max_backoff: float
    max_attempts: int
    """Attempts at a window whose failure cannot heal before it stops being retried."""


@dataclass(frozen=True)
class Decision:
    """What to do now for one version, and the record once it is done."""

    progress: Progress
    start: tuple[WindowRecord, ...] = ()
    """Attempts to start now (each replaces any other application of its name)."""
    next_retry_at: dt.datetime | None = None
    """When the next failed window becomes due for a retry."""
    exhausted: tuple[WindowRecord, ...] = ()
    """Failed windows that are no longer retried: they need a fix, then a backfill."""
    caught_up: bool = False
    """Every window due by ``now`` has completed."""


LOOKAHEAD = 2
"""Windows followed at once (running, failed, or completed after a missing one), as a
multiple of max_in_flight."""


def _carve(span: Window, schedule: str, max_span: dt.timedelta) -> tuple[Window, Window | None]:
    """The first window of ``span`` (ending at a tick when one falls within it and
    ``max_span``), and what remains."""
    planned = plan_windows(schedule, span.start, span.end, max_span, 1)
    first = planned[0] if planned else Window(span.start, min(span.end, span.start + max_span))
    return first, (Window(first.end, span.end) if first.end < span.end else None)


def _gaps(progress: Progress, first_start: dt.datetime) -> list[Window]:
    """Ranges up to plannedUntil that no record covers: windows whose application
    vanished before the record learnt of them (an operator that stopped between
    creating an application and writing the status, or a record restored without it)."""
    cursor = progress.materialized_until or first_start
    covered = sorted(
        [w.window for w in progress.windows if not progress.done(w.window)]
        + [b.window for b in progress.backfills if not progress.done(b.window)]
    )
    gaps = []
    for window in covered:
        if window.start > cursor:
            gaps.append(Window(cursor, window.start))
        cursor = max(cursor, window.end)
    if progress.planned_until is not None and cursor < progress.planned_until:
        gaps.append(Window(cursor, progress.planned_until))
    return gaps


def decide(
    progress: Progress,
    present: Iterable[Run],
    *,
    schedule: str,
    first_start: dt.datetime,
    now: dt.datetime,
    limits: Limits,
    generation: int = 0,
    plan_until: dt.datetime | None = None,
) -> Decision:
    """The attempts to start for one version at ``now``, given its record and the
    applications that exist. ``plan_until``: scheduled windows end no later than this
    (a streaming version's start: the stream writes what comes after).

    In order: windows recorded as running whose application is gone (started again,
    same attempt); failed windows whose backoff has passed (a failure that cannot heal
    only up to ``limits.max_attempts``, and once more after each change of the view's
    ``generation``, which may have fixed it); ranges no record covers; re-runs a
    backfill asked for; then the schedule's next windows. Running and failed windows
    hold their slots, so at most ``limits.max_in_flight`` run or wait at once; with the
    windows completed after a missing one, at most :data:`LOOKAHEAD` times as many are
    followed, so the record stays small.
    """
    live = {(r.window, r.run_id, r.attempt) for r in present if r.version == progress.version}
    entries = {w.window: w for w in progress.windows}
    start: list[WindowRecord] = []
    waiting: list[dt.datetime] = []
    exhausted: list[WindowRecord] = []
    running, failed = progress.running, progress.failed
    start.extend(w for w in running if (w.window, w.run, w.attempt) not in live)
    retry_room = max(limits.max_in_flight - len(running), 0)
    for entry in failed:
        changed = entry.generation < generation
        if entry.permanent and entry.attempt >= limits.max_attempts and not changed:
            exhausted.append(entry)
            continue
        due = (entry.finished_at or now) + retry_delay(
            entry.attempt, limits.backoff, limits.max_backoff
        )
        if due > now:
            waiting.append(due)
        elif retry_room:
            retried = dataclasses.replace(
                entry,
                state=RUNNING,
                attempt=entry.attempt + 1,
                reason="",
                permanent=False,
                finished_at=None,
                generation=generation,
            )
            entries[entry.window] = retried
            start.append(retried)
            retry_room -= 1
    # Windows completed while an earlier one is missing wait in the record; so that it
    # stays small, and nothing runs far ahead of a window that keeps failing, at most
    # twice max_in_flight windows are followed at once.
    waiting_for_gap = [w for w in progress.windows if w.state == SUCCEEDED]
    followed = len(running) + len(failed) + len(waiting_for_gap)
    free = max(
        min(
            limits.max_in_flight - len(running) - len(failed),
            LOOKAHEAD * limits.max_in_flight - followed,
        ),
        0,
    )

    def begin(window: Window, run: str = "") -> None:
        nonlocal free
        record = WindowRecord(window, RUNNING, run=run, generation=generation)
        entries[window] = record
        start.append(record)
        free -= 1

    for gap in _gaps(progress, first_start):
        remaining: Window | None = gap
        while free and remaining is not None:
            window, remaining = _carve(remaining, schedule, limits.max_span)
            begin(window)
    backfills = list(progress.backfills)
    while free and backfills:
        window, rest = _carve(backfills[0].window, schedule, limits.max_span)
        begin(window, backfills[0].run)
        if rest is None:
            backfills.pop(0)
        else:
            backfills[0] = Backfill(rest, backfills[0].run)
    planned_until = progress.planned_until
    after = planned_until or first_start
    horizon = now if plan_until is None else min(now, plan_until)
    for window in plan_windows(schedule, after, horizon, limits.max_span, free) if free else ():
        begin(window)
        planned_until = window.end
    ahead = [w for w in progress.windows if not progress.done(w.window)]
    caught_up = (
        not ahead
        and not [b for b in progress.backfills if not progress.done(b.window)]
        and progress.planned_until == progress.materialized_until
        and not plan_windows(schedule, after, horizon, limits.max_span, 1)
    )
    return Decision(
        progress=dataclasses.replace(
            progress,
            planned_until=planned_until,
            windows=tuple(sorted(entries.values(), key=lambda w: w.window)),
            backfills=tuple(backfills),
        ),
        start=tuple(start),
        next_retry_at=min(waiting, default=None),
        exhausted=tuple(exhausted),
        caught_up=caught_up,
    )


def request_backfill(
    progress: Progress, span: Window, run: str, first_start: dt.datetime
) -> Progress:
    """``progress`` with the windows of ``span`` to run again, under the run id ``run``.

    Its part within materializedUntil runs again; failed windows it touches start over
    with fresh attempts (the way to resume a window that stopped after too many
    failures, once its cause is fixed). Windows not yet run, or running, are left to
    run as they are.
    """
    windows = list(progress.windows)
    backfills = list(progress.backfills)
    for entry in progress.windows:
        overlaps = entry.window.start < span.end and span.start < entry.window.end
        if entry.state == FAILED and overlaps:
            windows.remove(entry)
            backfills.append(Backfill(entry.window, run))
    if progress.materialized_until is not None:
        low, high = max(span.start, first_start), min(span.end, progress.materialized_until)
        if low < high:
            backfills.append(Backfill(Window(low, high), run))
    return dataclasses.replace(progress, windows=tuple(windows), backfills=tuple(backfills))
