from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from featurekube_operator import naming, progress
from featurekube_operator.progress import Run, decide, summarize
from featurekube_operator.windows import Window

UTC = dt.UTC
H = dt.timedelta(hours=1)
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)


def run(hour: int, state: str, attempt: int = 1, finished: int | None = None) -> Run:
    return Run(
        name=f"v-v1-{hour}",
        version=1,
        window=Window(T0 + hour * H, T0 + (hour + 1) * H),
        state=state,
        attempt=attempt,
        finished_at=None if finished is None else T0 + finished * H,
    )


def _decide(summary: progress.Progress, now_hours: float, **overrides: Any) -> progress.Decision:
    options: dict[str, Any] = {
        "schedule": "@hourly",
        "first_start": T0,
        "now": T0 + dt.timedelta(hours=now_hours),
        "max_in_flight": 2,
        "max_span": H,
        "backoff": 60.0,
        "max_backoff": 3600.0,
    }
    options.update(overrides)
    return decide(summary, **options)


def test_materialized_until_stops_at_the_first_gap_or_unfinished_window() -> None:
    summary = summarize(T0, [run(0, "COMPLETED"), run(2, "COMPLETED"), run(1, "RUNNING")])

    assert summary.materialized_until == T0 + H
    assert summary.planned_until == T0 + 3 * H
    assert [r.window.start for r in summary.in_flight] == [T0 + H]


def test_new_windows_start_where_the_last_planned_one_ended_and_respect_the_bound() -> None:
    summary = summarize(T0, [run(0, "COMPLETED"), run(1, "RUNNING")])

    decision = _decide(summary, now_hours=5.5)

    assert [w.start for w in decision.create] == [T0 + 2 * H]
    assert not decision.caught_up


def test_a_failed_window_waits_its_backoff_then_is_retried() -> None:
    summary = summarize(T0, [run(0, "FAILED", attempt=2, finished=1)])

    early = _decide(summary, now_hours=1 + 1 / 60)
    late = _decide(summary, now_hours=2.5)

    assert early.retry == () and early.next_retry_at == T0 + H + dt.timedelta(seconds=120)
    assert [r.name for r in late.retry] == ["v-v1-0"]
    # A failed window holds its slot: the next windows wait rather than pile up.
    assert len(late.create) == 1


def test_backoff_doubles_up_to_the_ceiling() -> None:
    delays = [progress.retry_delay(a, 30, 200).total_seconds() for a in (1, 2, 3, 4)]

    assert delays == [30, 60, 120, 200]


def test_caught_up_when_every_due_window_completed() -> None:
    summary = summarize(T0, [run(0, "COMPLETED"), run(1, "COMPLETED")])

    assert _decide(summary, now_hours=2.5).caught_up
    assert not _decide(summary, now_hours=3.5).caught_up


@pytest.mark.parametrize("state", ["", "SUBMITTED", "RUNNING", "PENDING_RERUN", "UNKNOWN"])
def test_unfinished_states_are_in_flight(state: str) -> None:
    assert summarize(T0, [run(0, state)]).in_flight


def test_read_run_takes_the_window_from_annotations() -> None:
    body = {
        "metadata": {
            "name": "v-v3-202601010000",
            "labels": {naming.LABEL_VERSION: "3"},
            "annotations": {
                naming.ANNOTATION_WINDOW_START: "2026-01-01T00:00:00Z",
                naming.ANNOTATION_WINDOW_END: "2026-01-01T01:00:00Z",
                naming.ANNOTATION_ATTEMPT: "2",
            },
        },
        "status": {
            "applicationState": {"state": "FAILED", "errorMessage": "boom"},
            "terminationTime": "2026-01-01T01:05:00Z",
        },
    }

    parsed = progress.read_run(body)

    assert parsed.window == Window(T0, T0 + H)
    assert (parsed.version, parsed.attempt, parsed.failed, parsed.error) == (3, 2, True, "boom")
    assert parsed.finished_at == T0 + dt.timedelta(minutes=65)


def test_a_run_names_its_driver_pod_whose_termination_message_holds_the_rows() -> None:
    body = {
        "metadata": {
            "name": "v-v1-202601010000",
            "labels": {naming.LABEL_VERSION: "1"},
            "annotations": {
                naming.ANNOTATION_WINDOW_START: "2026-01-01T00:00:00Z",
                naming.ANNOTATION_WINDOW_END: "2026-01-01T01:00:00Z",
            },
        },
        "status": {
            "applicationState": {"state": "COMPLETED"},
            "driverInfo": {"podName": "v-v1-202601010000-driver"},
        },
    }
    message = '{"published":true,"rows":{"read":120,"offline":118,"online":20}}'

    def pod(*states: dict[str, Any]) -> dict[str, Any]:
        return {"status": {"containerStatuses": [{"name": "c", "state": s} for s in states]}}

    assert progress.read_run(body).driver_pod == "v-v1-202601010000-driver"
    assert progress.read_report_rows(pod({"terminated": {"message": message}})) == {
        "read": 120,
        "offline": 118,
        "online": 20,
    }
    assert progress.read_report_rows(pod({"running": {}}, {"terminated": {"message": message}}))
    assert progress.read_report_rows(pod({"terminated": {"message": "OOMKilled"}})) is None
    assert progress.read_report_rows(pod({"running": {}})) is None
    assert progress.read_report_rows(None) is None
