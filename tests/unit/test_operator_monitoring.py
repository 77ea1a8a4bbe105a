"""A view's health as people see it: freshness objectives, expectation verdicts, drift,
and tags mirrored as labels; pure, no cluster."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest
from prometheus_client import generate_latest

from featurekube.spec import v1alpha1
from featurekube.spec.v1alpha1 import monitoring as watched_models
from featurekube_operator import freshness, metrics, monitoring, runs, tag_labels
from featurekube_operator.windows import Window

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
H = dt.timedelta(hours=1)

SPEC: dict[str, Any] = {
    "owner": "eta-team",
    "entities": [{"name": "driver_id", "type": "int64"}],
    "source": {"batch": {"path": "s3://featurekube-demo/raw/drivers/"}},
    "features": [
        {"name": "rating", "type": "float64"},
        {"name": "city", "type": "string"},
    ],
    "materialization": {"schedule": "@hourly"},
    "expectations": [
        {"feature": "rating", "notNull": True, "min": 1, "max": 5},
        {"feature": "city", "allowedValues": ["SF", "NYC"], "onViolation": "Warn"},
    ],
}


def _spec(**changes: Any) -> v1alpha1.FeatureViewSpec:
    body = copy.deepcopy(SPEC)
    body.update(changes)
    return v1alpha1.FeatureViewSpec.model_validate(body)


# -- freshness ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "interval"),
    [
        ("@hourly", H),
        ("@daily", 24 * H),
        ("*/15 * * * *", dt.timedelta(minutes=15)),
        ("0 */6 * * *", 6 * H),
        # Irregular: the longest gap counts.
        ("0 9-17 * * 1-5", dt.timedelta(days=2, hours=16)),
        ("0 0,20 * * *", 20 * H),
        ("0 0 1 * *", dt.timedelta(days=31)),
        ("@weekly", dt.timedelta(days=7)),
        ("* 9-17 * * 1-5", dt.timedelta(days=2, hours=15, minutes=1)),
        # Leap days only: sampled for as long as three ticks take.
        ("0 0 29 2 *", dt.timedelta(days=4 * 365 + 1)),
    ],
)
def test_the_interval_of_a_schedule_is_its_longest_gap(
    schedule: str, interval: dt.timedelta
) -> None:
    assert freshness.schedule_interval(schedule) == interval


def test_the_objective_is_declared_or_twice_the_schedule() -> None:
    assert freshness.objective(_spec()) == 2 * H
    declared = _spec(monitoring={"freshnessObjective": "45m"})
    assert freshness.objective(declared) == dt.timedelta(minutes=45)
    assert freshness.format_duration(2 * H) == "2h"
    assert freshness.format_duration(dt.timedelta(days=2, hours=16) * 2) == "128h"


def test_freshness_is_met_within_the_objective_and_says_since_when_it_was_not() -> None:
    spec = _spec()
    done = T0 + 10 * H

    fresh = freshness.evaluate(spec, done, T0, done + 2 * H, None)
    assert fresh.status == {"objective": "2h", "met": True, "since": "2026-01-01T12:00:00Z"}
    assert (fresh.condition.type, fresh.condition.status) == ("Fresh", True)

    # Later on, nothing new: the same status, word for word.
    later = freshness.evaluate(spec, done, T0, done + 2 * H, fresh.status)
    assert later.status == fresh.status and later.condition == fresh.condition

    # Past the objective: stale since the data's end plus the objective, whenever seen.
    stale = freshness.evaluate(spec, done, T0, done + 5 * H, fresh.status)
    assert stale.status == {"objective": "2h", "met": False, "since": "2026-01-01T12:00:00Z"}
    assert stale.condition.reason == "ObjectiveMissed" and not stale.condition.status
    assert "2026-01-01T10:00:00Z" in stale.condition.message
    again = freshness.evaluate(spec, done, T0, done + 6 * H, stale.status)
    assert again == stale

    # Caught up: met again, since it was seen to be.
    back = freshness.evaluate(spec, done + 6 * H, T0, done + 7 * H, stale.status)
    assert back.status["met"] is True and back.status["since"] == "2026-01-01T17:00:00Z"


def test_a_view_with_nothing_materialized_is_behind_since_its_first_start() -> None:
    spec = _spec()
    assert freshness.evaluate(spec, None, T0, T0 + H, None).status["met"] is True
    stale = freshness.evaluate(spec, None, T0, T0 + 3 * H, None)
    assert stale.status["met"] is False and stale.status["since"] == "2026-01-01T02:00:00Z"
    assert "nothing materialized" in stale.condition.message


# -- expectations ---------------------------------------------------------------------


def _violation(feature: str, check: str, rows: int, on: str = "Warn") -> dict[str, Any]:
    return {
        "feature": feature,
        "check": check,
        "rows": rows,
        "onViolation": on,
        "message": f"{rows} rows of {feature} broke {check}",
    }


def test_every_check_has_a_verdict_passed_ones_with_zero_rows() -> None:
    results = monitoring.expectation_results(
        _spec(), T0, [_violation("rating", "max", 2), _violation("city", "allowedValues", 1)]
    )

    assert [(r["feature"], r["check"], r["rows"]) for r in results] == [
        ("rating", "notNull", 0),
        ("rating", "min", 0),
        ("rating", "max", 2),
        ("city", "allowedValues", 1),
    ]
    assert all(r["windowStart"] == "2026-01-01T00:00:00Z" for r in results)
    assert "message" not in results[0] and results[2]["message"] == "2 rows of rating broke max"
    # They fit the status model.
    for result in results:
        watched_models.ExpectationResult.model_validate(result)

    condition = monitoring.expectations_condition(results)
    assert condition is not None
    assert (condition.type, condition.status, condition.reason) == (
        "ExpectationsMet",
        False,
        "WarnViolations",
    )
    assert "rating, city" in condition.message


def test_a_clean_window_meets_its_expectations() -> None:
    results = monitoring.expectation_results(_spec(), T0, [])
    condition = monitoring.expectations_condition(results)
    assert condition is not None and condition.status and condition.reason == "AllPassed"
    assert monitoring.expectations_condition([]) is None


def test_each_violating_feature_gets_one_bounded_warning_per_window() -> None:
    many = [_violation("rating", "max", 2), _violation("rating", "notNull", 3)]
    many.append({**_violation("city", "allowedValues", 1), "message": "x" * 5000})
    notices = monitoring.violation_notices((T0, T0 + H), [*many, _violation("city", "min", 0)])

    assert [n.type for n in notices] == ["Warning", "Warning"]
    assert {n.reason for n in notices} == {"ExpectationViolated"}
    city, rating = notices
    assert len(city.message) <= monitoring.EVENT_MESSAGE_LIMIT
    assert rating.message.startswith("window [2026-01-01T00:00:00Z, 2026-01-01T01:00:00Z)")
    assert "2 rows of rating broke max (onViolation: Warn)" in rating.message


# -- drift ----------------------------------------------------------------------------

DRIFT = {"reference": {"trainingPull": "eta-2026-01"}, "threshold": 0.2}


def test_drift_over_the_threshold_is_drifted() -> None:
    spec = _spec(monitoring={"drift": DRIFT})
    results = monitoring.drift_results(spec, T0, {"city": 0.31, "rating": 0.05, "gone": 9.0})

    assert results == [
        {"feature": "rating", "psi": 0.05, "drifted": False, "windowStart": "2026-01-01T00:00:00Z"},
        {"feature": "city", "psi": 0.31, "drifted": True, "windowStart": "2026-01-01T00:00:00Z"},
    ]
    for result in results:
        watched_models.FeatureDrift.model_validate(result)
    condition = monitoring.drift_condition(spec, results)
    assert condition is not None and condition.status and condition.reason == "DriftOverThreshold"
    assert "city (0.310)" in condition.message and "rating" not in condition.message

    calm = monitoring.drift_results(spec, T0, {"city": 0.1})
    condition = monitoring.drift_condition(spec, calm)
    assert condition is not None and not condition.status
    # Not measured: no drift status, no condition.
    assert monitoring.drift_results(_spec(), T0, {"city": 0.5}) is None
    assert monitoring.drift_condition(_spec(), results) is None


# -- from the report to the status ----------------------------------------------------


def _run(hour: int, state: str = "COMPLETED") -> runs.Run:
    window = Window(T0 + hour * H, T0 + (hour + 1) * H)
    return runs.Run(f"v-v1-{hour}", 1, window, state)


def _driver(report: dict[str, Any]) -> dict[str, Any]:
    terminated = {"exitCode": 0, "message": json.dumps(report)}
    return {"status": {"containerStatuses": [{"state": {"terminated": terminated}}]}}


def _report(**more: Any) -> dict[str, Any]:
    return {"published": True, "rows": {"read": 3, "offline": 3, "online": 1}, **more}


def test_the_outcome_carries_the_reports_violations_and_drift() -> None:
    outcome = runs.read_outcome(
        _run(0),
        _driver(
            _report(
                violations=[_violation("rating", "max", 2)],
                drift={"rating": 0.4, "city": "NaN", "n": None},
            )
        ),
    )
    assert outcome.violations == (_violation("rating", "max", 2),)
    assert outcome.drift == {"rating": 0.4}
    # A report cut short to fit the termination message does not say.
    cut = runs.read_outcome(_run(0), _driver(_report(violations=None, truncated=True)))
    assert cut.violations is None and cut.drift is None


def _watch(
    spec: v1alpha1.FeatureViewSpec,
    before: dict[str, Any],
    completed: list[tuple[runs.Run, runs.Outcome]],
    now: dt.datetime = T0 + 3 * H,
) -> monitoring.Watched:
    return monitoring.watch_view(
        spec,
        before,
        completed,
        materializes=True,
        materialized_until=T0 + 3 * H,
        first_start=T0,
        now=now,
    )


def test_the_latest_window_sets_the_verdicts_and_an_older_one_does_not() -> None:
    spec = _spec(monitoring={"drift": DRIFT})
    warn = runs.Outcome(
        rows={"read": 1}, violations=(_violation("rating", "max", 2),), drift={"city": 0.5}
    )
    clean = runs.Outcome(rows={"read": 1}, violations=(), drift={"city": 0.0})

    watched = _watch(spec, {}, [(_run(1), clean), (_run(2), warn)])
    assert [r["rows"] for r in watched.status["expectations"]] == [0, 0, 2, 0]
    assert watched.status["drift"][0]["drifted"] is True
    kinds = {c.type: c.status for c in watched.conditions}
    assert kinds == {"ExpectationsMet": False, "Drifted": True, "Fresh": True}

    before = {**watched.status}
    # A re-run of an older window changes nothing; without news, nothing is written.
    older = _watch(spec, before, [(_run(0), clean)])
    assert "expectations" not in older.status and "drift" not in older.status
    assert {c.type: c.status for c in older.conditions} == kinds
    # The next window, clean.
    newer = _watch(spec, before, [(_run(3), clean)])
    assert {c.type: c.status for c in newer.conditions}["ExpectationsMet"] is True


def test_removing_expectations_or_drift_clears_their_status() -> None:
    spec = _spec(monitoring={"drift": DRIFT})
    outcome = runs.Outcome(rows={"read": 1}, violations=(), drift={"city": 0.5})
    before = {**_watch(spec, {}, [(_run(1), outcome)]).status}

    plain = _spec(expectations=None)
    watched = _watch(plain, before, [])
    assert watched.status["expectations"] is None and watched.status["drift"] is None
    assert [c.type for c in watched.conditions] == ["Fresh"]


def test_a_push_view_has_no_freshness() -> None:
    spec = _spec(expectations=None)
    watched = monitoring.watch_view(
        spec,
        {"freshness": {"objective": "2h", "met": True}},
        [],
        materializes=False,
        materialized_until=None,
        first_start=T0,
        now=T0,
    )
    assert watched.status == {"freshness": None} and watched.conditions == []
    assert watched.objective is None


# -- metrics --------------------------------------------------------------------------


def test_a_views_gauges_are_replaced_whole_and_forgotten() -> None:
    exported = metrics.Metrics()
    rows = exported.expectation_violation_rows
    rows.set_view("rides", "drivers", {("rating", "max", "Warn"): 2, ("rating", "min", "Warn"): 0})
    rows.set_view("rides", "drivers", {("rating", "max", "Warn"): 0})
    text = generate_latest(exported.registry).decode()
    assert (
        'featurekube_expectation_violation_rows{check="max",feature="rating",'
        'feature_view="drivers",namespace="rides",on_violation="Warn"} 0.0'
    ) in text
    assert 'check="min"' not in text
    rows.forget("rides", "drivers")
    assert (
        "featurekube_expectation_violation_rows{" not in generate_latest(exported.registry).decode()
    )


# -- tags as labels -------------------------------------------------------------------


def _body(
    tags: dict[str, str] | None, labels: dict[str, str], recorded: str | None = None
) -> dict[str, Any]:
    annotations = {tag_labels.ANNOTATION: recorded} if recorded else {}
    return {
        "kind": "FeatureView",
        "metadata": {
            "name": "drivers",
            "namespace": "rides",
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"tags": tags} if tags is not None else {},
    }


def test_valid_tags_become_labels_and_invalid_ones_are_explained_once() -> None:
    tags = {"team": "rides", "cost center": "42", "tier": "a" * 64, "example.com/pii": "no"}
    plan = tag_labels.plan_labels("FeatureView", _body(tags, {"app": "x"}))

    assert plan.metadata["labels"] == {"team": "rides", "example.com/pii": "no"}
    recorded = plan.metadata["annotations"][tag_labels.ANNOTATION]
    assert json.loads(recorded) == {
        "labels": ["example.com/pii", "team"],
        "refused": ["cost center", "tier"],
    }
    assert [n.reason for n in plan.notices] == ["TagNotLabelled", "TagNotLabelled"]
    assert "cost center" in plan.notices[0].message and "label name" in plan.notices[0].message

    # Applied: nothing more to do, and nothing said again.
    applied = _body(tags, {"app": "x", "team": "rides", "example.com/pii": "no"}, recorded)
    again = tag_labels.plan_labels("FeatureView", applied)
    assert again.metadata == {} and again.notices == []


def test_only_labels_the_operator_set_are_changed_or_removed() -> None:
    recorded = json.dumps({"labels": ["team"], "refused": []}, separators=(",", ":"))
    # Someone else's label of the same key is left alone, and the tag is refused.
    theirs = tag_labels.plan_labels(
        "FeatureView", _body({"owner": "a"}, {"owner": "b", "team": "rides"}, recorded)
    )
    assert theirs.metadata["labels"] == {"team": None}
    assert "already has the label owner=b" in theirs.notices[0].message
    # A tag changed: its label follows; removed: its label goes, others' stay.
    changed = tag_labels.plan_labels(
        "FeatureView", _body({"team": "maps"}, {"team": "rides"}, recorded)
    )
    assert changed.metadata == {"labels": {"team": "maps"}}
    gone = tag_labels.plan_labels(
        "FeatureView", _body(None, {"team": "rides", "app": "x"}, recorded)
    )
    assert gone.metadata == {
        "labels": {"team": None},
        "annotations": {tag_labels.ANNOTATION: None},
    }


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("team", "", None),
        ("a.b/c", "d_e.f-1", None),
        ("featurekube.dev/feature-view", "x", "reserved"),
        ("node.kubernetes.io/x", "y", "reserved"),
        ("Bad_Prefix/x", "y", "DNS subdomain"),
        ("x", "-y", "label value"),
        ("x" * 64, "y", "label name"),
    ],
)
def test_label_rules(key: str, value: str, problem: str | None) -> None:
    found = tag_labels.label_problem(key, value)
    assert (found is None) if problem is None else (found is not None and problem in found)
