from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from featurekube_operator import naming, runs
from featurekube_operator.windows import Window

UTC = dt.UTC
H = dt.timedelta(hours=1)
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)


def _app(state: str, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "v-v3-202601010000",
            "labels": {naming.LABEL_VERSION: "3"},
            "annotations": {
                naming.ANNOTATION_WINDOW_START: "2026-01-01T00:00:00Z",
                naming.ANNOTATION_WINDOW_END: "2026-01-01T01:00:00Z",
                **annotations,
            },
        },
        "status": {
            "applicationState": {"state": state, "errorMessage": "driver failed"},
            "terminationTime": "2026-01-01T01:05:00Z",
            "driverInfo": {"podName": "v-v3-202601010000-driver"},
        },
    }


def _pod(*messages: str) -> dict[str, Any]:
    return {
        "status": {
            "containerStatuses": [
                {"name": "c", "state": {"terminated": {"message": m}}} for m in messages
            ]
        }
    }


def test_read_run_takes_the_window_attempt_and_run_from_annotations() -> None:
    body = _app("FAILED", **{naming.ANNOTATION_ATTEMPT: "2", naming.ANNOTATION_RUN: "ab12"})

    parsed = runs.read_run(body)

    assert parsed.window == Window(T0, T0 + H)
    assert (parsed.version, parsed.attempt, parsed.run_id) == (3, 2, "ab12")
    assert (parsed.failed, parsed.error) == (True, "driver failed")
    assert parsed.finished_at == T0 + dt.timedelta(minutes=65)
    assert parsed.driver_pod == "v-v3-202601010000-driver"


def test_a_completed_run_reports_its_rows() -> None:
    report = json.dumps({"published": True, "rows": {"read": 120, "offline": 118, "online": 20}})
    done = runs.read_run(_app("COMPLETED"))

    assert runs.read_outcome(done, _pod("OOMKilled", report)).rows == {
        "read": 120,
        "offline": 118,
        "online": 20,
    }
    assert runs.read_outcome(done, None).rows is None


def test_a_failed_fail_expectation_cannot_heal() -> None:
    report = {
        "published": False,
        "rows": {"read": 10, "offline": 0, "online": 0},
        "violations": [{"onViolation": "Fail", "message": "2 rows of rating are above max 5"}],
        "error": None,
    }

    outcome = runs.read_outcome(runs.read_run(_app("FAILED")), _pod(json.dumps(report)))

    assert outcome.permanent
    assert outcome.reason == "expectation failed: 2 rows of rating are above max 5"


@pytest.mark.parametrize(
    ("error_type", "permanent"),
    [
        ("SourceSchemaError", True),
        ("ItemTooLargeError", True),
        ("ExpectationFailedError", True),
        ("StoreUnavailableError", False),
        ("OnlineWriteError", False),
        (None, False),
    ],
)
def test_the_jobs_error_type_says_whether_a_failure_can_heal(
    error_type: str | None, permanent: bool
) -> None:
    report = {"published": False, "rows": {}, "error": "what went wrong\nmore detail"}
    if error_type:
        report["errorType"] = error_type

    outcome = runs.read_outcome(runs.read_run(_app("FAILED")), _pod(json.dumps(report)))

    assert (outcome.permanent, outcome.reason) == (permanent, "what went wrong")


def test_a_run_that_left_no_report_failed_transiently() -> None:
    outcome = runs.read_outcome(runs.read_run(_app("FAILED")), _pod("Evicted"))

    assert (outcome.permanent, outcome.reason) == (False, "driver failed")


def _job(status: dict[str, Any]) -> dict[str, Any]:
    body = _app("")
    body["status"] = status
    body["metadata"]["uid"] = "uid-1"
    return body


def _condition(kind: str, at: str, message: str = "") -> dict[str, str]:
    return {"type": kind, "status": "True", "lastTransitionTime": at, "message": message}


def test_read_run_reads_a_jobs_state_from_its_conditions_and_counts() -> None:
    running = runs.read_run(_job({"active": 1}), "Job")
    complete = runs.read_run(
        _job(
            {
                "succeeded": 1,
                "completionTime": "2026-01-01T01:02:00Z",
                "conditions": [_condition("Complete", "2026-01-01T01:02:01Z")],
            }
        ),
        "Job",
    )
    counted = runs.read_run(_job({"succeeded": 1}), "Job")
    failed = runs.read_run(
        _job(
            {
                "failed": 1,
                "conditions": [
                    _condition(
                        "Failed", "2026-01-01T01:03:00Z", "Job has reached the backoff limit"
                    )
                ],
            }
        ),
        "Job",
    )

    assert (running.kind, running.state, running.finished) == ("Job", "RUNNING", False)
    assert running.uid == "uid-1" and running.window == Window(T0, T0 + H)
    assert complete.completed and complete.finished_at == T0 + dt.timedelta(minutes=62)
    assert counted.completed and counted.finished_at is None
    assert failed.failed and failed.error == "Job has reached the backoff limit"
    assert failed.finished_at == T0 + dt.timedelta(minutes=63)


def test_a_jobs_report_comes_from_its_latest_terminated_pod() -> None:
    def pod(created: str, *messages: str) -> dict[str, Any]:
        return {"metadata": {"creationTimestamp": created}, **_pod(*messages)}

    report = json.dumps({"published": True, "rows": {"read": 5, "offline": 5, "online": 2}})
    pending = {"metadata": {"creationTimestamp": "2026-01-01T01:09:00Z"}, "status": {}}
    chosen = runs.job_pod(
        [pod("2026-01-01T01:00:00Z", "old"), pod("2026-01-01T01:05:00Z", report), pending]
    )

    assert chosen is not None
    done = runs.read_run(_job({"succeeded": 1}), "Job")
    assert runs.read_outcome(done, chosen).rows == {"read": 5, "offline": 5, "online": 2}
    assert runs.job_pod([pending]) is None
