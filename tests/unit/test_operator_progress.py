from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from featurekube_operator import progress
from featurekube_operator.progress import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    Limits,
    Progress,
    WindowRecord,
    decide,
    observe,
)
from featurekube_operator.runs import Outcome, Run
from featurekube_operator.windows import Window

UTC = dt.UTC
H = dt.timedelta(hours=1)
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = Limits(max_in_flight=2, max_span=H, backoff=60.0, max_backoff=3600.0, max_attempts=3)


def w(hour: int, hours: int = 1) -> Window:
    return Window(T0 + hour * H, T0 + (hour + hours) * H)


def run(
    hour: int, state: str, attempt: int = 1, finished: float | None = None, run_id: str = ""
) -> Run:
    return Run(
        name=f"v-v1-{hour}",
        version=1,
        window=w(hour),
        state=state,
        attempt=attempt,
        run_id=run_id,
        finished_at=None if finished is None else T0 + finished * H,
    )


def record(**fields: Any) -> Progress:
    return Progress(version=1, **fields)


def _decide(p: Progress, now_hours: float, present: list[Run] | None = None) -> progress.Decision:
    return decide(
        p,
        present or [],
        schedule="@hourly",
        first_start=T0,
        now=T0 + dt.timedelta(hours=now_hours),
        limits=LIMITS,
    )


# -- observing ----------------------------------------------------------------------------


def test_materialized_until_moves_over_completed_windows_up_to_the_first_gap() -> None:
    seen = observe(
        record(), [run(0, "COMPLETED"), run(2, "COMPLETED"), run(1, "RUNNING")], first_start=T0
    )

    assert seen.progress.materialized_until == T0 + H
    assert seen.progress.planned_until == T0 + 3 * H
    assert [(e.window, e.state) for e in seen.progress.windows] == [
        (w(1), RUNNING),
        (w(2), SUCCEEDED),
    ]
    assert seen.last is not None and seen.last.window == w(0)


def test_a_recorded_outcome_needs_its_application_no_more() -> None:
    seen = observe(record(), [run(0, "COMPLETED"), run(1, "FAILED", finished=2)], T0).progress

    assert observe(seen, [], T0).progress == seen
    assert observe(seen, [run(0, "COMPLETED"), run(1, "FAILED", finished=2)], T0).progress == seen


def test_news_are_the_finished_runs_the_record_does_not_hold() -> None:
    p = observe(record(), [run(0, "COMPLETED"), run(1, "RUNNING")], T0).progress

    fresh = progress.news(p, [run(0, "COMPLETED"), run(1, "FAILED", finished=2), run(2, "")])

    assert [r.window for r in fresh] == [w(1)]


def test_a_failure_keeps_its_attempt_reason_and_whether_it_can_heal() -> None:
    outcome = Outcome(reason="2 rows of rating are above max 5", permanent=True)
    failed = run(0, "FAILED", attempt=2, finished=1)

    (entry,) = observe(record(), [failed], T0, {failed.name: outcome}).progress.windows

    assert (entry.state, entry.attempt, entry.permanent) == (FAILED, 2, True)
    assert entry.reason == outcome.reason and entry.finished_at == T0 + H


def test_an_older_attempt_or_a_superseded_run_teaches_nothing() -> None:
    p = record(planned_until=T0 + H, windows=(WindowRecord(w(0), RUNNING, attempt=2),))

    assert observe(p, [run(0, "FAILED", attempt=1, finished=1)], T0).progress == p
    assert observe(p, [run(0, "COMPLETED", run_id="ab12")], T0).progress == p


def test_the_rows_of_a_completed_window_are_recorded_with_it() -> None:
    done = run(0, "COMPLETED", finished=1)
    rows = {"read": 3, "offline": 2, "online": 1}

    seen = observe(record(), [done], T0, {done.name: Outcome(rows=rows)})

    assert seen.last is not None and seen.last.rows == rows
    assert [r.name for r in seen.succeeded] == [done.name]


# -- the record in the status -------------------------------------------------------------


def test_the_record_survives_a_round_trip_through_the_status() -> None:
    p = Progress(
        version=3,
        materialized_until=T0 + H,
        planned_until=T0 + 3 * H,
        windows=(
            WindowRecord(w(1), FAILED, 2, "", "boom", True, T0 + 2 * H, generation=7),
            WindowRecord(w(2), SUCCEEDED, 1, "", rows={"read": 1, "offline": 1, "online": 1}),
        ),
        backfills=(progress.Backfill(w(0), "ab12"),),
    )

    status = {"progress": progress.progress_to_status([p])}

    assert progress.progress_from_status(status, 3) == p
    assert progress.progress_from_status(status, 4) is None


# -- collecting finished applications ------------------------------------------------------


def test_finished_applications_beyond_the_history_limits_are_collected_once_recorded() -> None:
    apps = [run(h, "COMPLETED", finished=h + 1) for h in range(6)] + [
        run(6, "FAILED", finished=7),
        run(7, "RUNNING"),
    ]
    read = {1: observe(record(), apps[:4], T0).progress}

    collect = progress.collectable(read, apps, keep_succeeded=1, keep_failed=0, now=T0 + 9 * H)

    # Windows 4 and 5 completed after the status was read: kept until it records them.
    assert collect == ["v-v1-0", "v-v1-1", "v-v1-2"]


def test_no_application_is_collected_for_a_version_without_a_record() -> None:
    apps = [run(h, "COMPLETED", finished=h + 1) for h in range(3)]

    assert progress.collectable({}, apps, keep_succeeded=0, keep_failed=0, now=T0 + 9 * H) == []


def test_an_application_that_just_finished_is_kept_a_while_whatever_the_limits() -> None:
    apps = [run(0, "COMPLETED", finished=1)]
    read = {1: observe(record(), apps, T0).progress}

    def collect(now: dt.datetime) -> list[str]:
        return progress.collectable(read, apps, keep_succeeded=0, keep_failed=0, now=now)

    assert collect(T0 + H + dt.timedelta(seconds=30)) == []
    assert collect(T0 + H + progress.COLLECT_GRACE) == ["v-v1-0"]


# -- deciding what to start ----------------------------------------------------------------


def test_new_windows_start_where_the_last_planned_one_ended_and_respect_the_bound() -> None:
    p = observe(record(), [run(0, "COMPLETED"), run(1, "RUNNING")], T0).progress

    decision = _decide(p, now_hours=5.5, present=[run(1, "RUNNING")])

    assert [s.window for s in decision.start] == [w(2)]
    assert decision.progress.planned_until == T0 + 3 * H
    assert not decision.caught_up


def test_a_running_window_whose_application_vanished_starts_again_as_the_same_attempt() -> None:
    p = record(planned_until=T0 + H, windows=(WindowRecord(w(0), RUNNING, attempt=2),))

    assert [(s.window, s.attempt) for s in _decide(p, 0.5).start] == [(w(0), 2)]
    assert _decide(p, 0.5, present=[run(0, "RUNNING", attempt=2)]).start == ()


def test_a_completed_window_never_runs_again_when_its_applications_are_gone() -> None:
    p = observe(record(), [run(h, "COMPLETED") for h in range(3)], T0).progress

    decision = _decide(p, now_hours=3.5)

    assert decision.start == () and decision.caught_up


def test_a_range_no_record_covers_is_run_again() -> None:
    # Window 1 was started, but the status that recorded it was lost with its application.
    p = record(
        materialized_until=T0 + H,
        planned_until=T0 + 3 * H,
        windows=(WindowRecord(w(2), SUCCEEDED),),
    )

    assert [s.window for s in _decide(p, 3.5).start] == [w(1)]


def test_a_failed_window_waits_its_backoff_then_is_retried() -> None:
    p = observe(record(), [run(0, "FAILED", attempt=2, finished=1)], T0).progress

    early = _decide(p, now_hours=1 + 1 / 60)
    late = _decide(p, now_hours=2.5)

    assert early.start == () and early.next_retry_at == T0 + H + dt.timedelta(seconds=120)
    (retry, new) = late.start
    assert (retry.window, retry.attempt, retry.state) == (w(0), 3, RUNNING)
    # A failed window holds its slot: the next windows wait rather than pile up.
    assert new.window == w(1)


def test_a_failure_that_cannot_heal_stops_after_the_bounded_attempts() -> None:
    outcome = {"v-v1-0": Outcome(reason="schema", permanent=True)}
    stuck = observe(record(), [run(0, "FAILED", attempt=3, finished=1)], T0, outcome).progress
    transient = observe(record(), [run(0, "FAILED", attempt=9, finished=1)], T0).progress

    decision = _decide(stuck, now_hours=100)

    assert [e.window for e in decision.exhausted] == [w(0)]
    assert all(s.window != w(0) for s in decision.start)
    assert [s.attempt for s in _decide(transient, now_hours=100).start][:1] == [10]


def test_a_change_of_the_view_gives_a_stopped_window_one_more_attempt() -> None:
    outcome = {"v-v1-0": Outcome(reason="2 rows above max 5", permanent=True)}
    failed = dataclasses.replace(run(0, "FAILED", attempt=3, finished=1), generation=4)
    stuck = observe(record(), [failed], T0, outcome).progress

    def decide_at(generation: int, p: Progress = stuck) -> progress.Decision:
        return decide(
            p,
            [],
            schedule="@hourly",
            first_start=T0,
            now=T0 + 100 * H,
            limits=LIMITS,
            generation=generation,
        )

    assert decide_at(4).exhausted
    (again, *_) = decide_at(5).start
    assert (again.window, again.attempt, again.generation) == (w(0), 4, 5)
    failed_again = dataclasses.replace(failed, attempt=4, generation=5)
    stuck_again = observe(decide_at(5).progress, [failed_again], T0, outcome).progress
    assert decide_at(5, stuck_again).exhausted


def test_a_window_completed_after_a_gap_holds_its_slot_so_the_record_stays_small() -> None:
    stuck = run(0, "FAILED", attempt=3, finished=1)
    outcome = {stuck.name: Outcome(reason="schema", permanent=True)}
    p = observe(record(), [stuck, run(1, "COMPLETED")], T0, outcome).progress

    while started := _decide(p, now_hours=50).start:
        done = [dataclasses.replace(run(0, "COMPLETED"), window=s.window) for s in started]
        p = observe(_decide(p, now_hours=50).progress, done, T0).progress

    assert len(p.windows) == progress.LOOKAHEAD * LIMITS.max_in_flight


def test_backoff_doubles_up_to_the_ceiling() -> None:
    delays = [progress.retry_delay(a, 30, 200).total_seconds() for a in (1, 2, 3, 4)]

    assert delays == [30, 60, 120, 200]


def test_caught_up_when_every_due_window_completed() -> None:
    p = observe(record(), [run(0, "COMPLETED"), run(1, "COMPLETED")], T0).progress

    assert _decide(p, now_hours=2.5).caught_up
    assert not _decide(p, now_hours=3.5).caught_up


@pytest.mark.parametrize("state", ["", "SUBMITTED", "RUNNING", "PENDING_RERUN", "UNKNOWN"])
def test_unfinished_states_are_running(state: str) -> None:
    assert observe(record(), [run(0, state)], T0).progress.running


# -- backfills -----------------------------------------------------------------------------


def test_a_backfill_reruns_history_in_windows_of_the_span_and_marks_them_its_own() -> None:
    p = observe(record(), [run(h, "COMPLETED") for h in range(5)], T0).progress

    asked = progress.request_backfill(p, Window(T0 + H, T0 + 4 * H), "ab12", T0)
    decision = _decide(asked, now_hours=5.5)

    assert [(s.window, s.run, s.attempt) for s in decision.start] == [
        (w(1), "ab12", 1),
        (w(2), "ab12", 1),
    ]
    assert decision.progress.backfills == (progress.Backfill(w(3), "ab12"),)
    # Re-runs within materializedUntil leave it, and serving, where they are.
    assert decision.progress.materialized_until == T0 + 5 * H


def test_a_rerun_is_done_once_it_succeeds_and_old_runs_of_its_window_are_history() -> None:
    p = observe(record(), [run(h, "COMPLETED") for h in range(2)], T0).progress
    started = _decide(progress.request_backfill(p, w(0), "ab12", T0), now_hours=2.5).progress

    old = run(0, "COMPLETED")
    assert observe(started, [old], T0).progress == started
    done = observe(started, [run(0, "COMPLETED", run_id="ab12")], T0).progress

    assert done.windows == () and done.materialized_until == T0 + 2 * H


def test_a_backfill_restarts_a_window_that_stopped_after_too_many_failures() -> None:
    outcome = {"v-v1-0": Outcome(reason="schema", permanent=True)}
    stuck = observe(record(), [run(0, "FAILED", attempt=3, finished=1)], T0, outcome).progress

    asked = progress.request_backfill(stuck, w(0), "cd34", T0)
    decision = _decide(asked, now_hours=2, present=[run(0, "FAILED", attempt=3, finished=1)])

    assert decision.exhausted == ()
    assert [(s.window, s.run, s.attempt) for s in decision.start][:1] == [(w(0), "cd34", 1)]


def test_observing_keeps_a_record_unchanged_by_an_unrelated_version() -> None:
    other = dataclasses.replace(run(0, "COMPLETED"), version=2)

    assert observe(record(), [other], T0).progress == record()


def test_the_record_keeps_the_latest_window_completed_with_its_rows() -> None:
    rows = {"read": 30, "offline": 10, "online": 4}
    first = observe(
        Progress(1),
        [run(0, "COMPLETED", finished=1.0), run(1, "COMPLETED", finished=1.1)],
        T0,
        {"v-v1-0": Outcome(rows=rows), "v-v1-1": Outcome(rows={**rows, "read": 60})},
    ).progress
    assert first.last is not None
    assert (first.last.window, first.last.rows) == (w(1), {**rows, "read": 60})
    # A window that left no report teaches the estimate nothing; an earlier window
    # completing later (a re-run) does not replace a later one.
    later = observe(first, [run(2, "COMPLETED", finished=2.0)], T0, {}).progress
    assert later.last == first.last
    assert Progress.from_json(later.to_json()) == later
    assert progress.Progress.from_json(Progress(1).to_json()).last is None
