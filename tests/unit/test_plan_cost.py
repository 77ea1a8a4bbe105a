"""What ``featurekube plan`` says a change starts: a new version and its backfill."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from featurekube.planning import cost, diff
from featurekube.spec import v1alpha1

NOW = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)


def _view(**materialization: Any) -> dict[str, Any]:
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": {"name": "driver-profile", "namespace": "rides"},
        "spec": {
            "owner": "eta-team",
            "entities": [{"name": "driver_id", "type": "int64"}],
            "source": {"batch": {"path": "s3://raw/drivers/"}},
            "features": [{"name": "rating", "type": "float64"}],
            "materialization": {"startTime": "2026-01-01T00:00:00Z", **materialization},
        },
    }


def _live(body: dict[str, Any], latest: int = 2, **metadata: Any) -> v1alpha1.FeatureView:
    live = copy.deepcopy(body)
    live["metadata"].update(metadata)
    live["status"] = {"version": latest, "latestVersion": latest}
    return v1alpha1.FeatureView.model_validate(live)


def _plan(desired: dict[str, Any], *live: v1alpha1.FeatureView) -> diff.Plan:
    return diff.plan_apply([v1alpha1.FeatureView.model_validate(desired)], live, now=NOW)


def test_a_new_view_backfills_every_window_since_its_start_time() -> None:
    (new,) = _plan(_view()).new_versions

    assert (new.version, new.reason) == (1, "a new view")
    # 31 days of hourly ticks, merged into jobs of a day each.
    assert (new.windows, new.jobs, new.more) == (744, 31, False)
    assert (new.start, new.end) == (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), NOW)
    assert str(new) == (
        "FeatureView rides/driver-profile: creates version 1 (a new view); backfills 744 "
        "windows as 31 jobs, 31d from 2026-01-01T00:00:00Z to 2026-02-01T00:00:00Z, on auto "
        "(the first window on Spark, later ones by their estimated size)"
    )


def test_a_data_change_makes_the_next_version_and_names_the_fields() -> None:
    desired = _view(engine="python")
    desired["spec"]["features"].append({"name": "trips", "type": "int64"})

    (new,) = _plan(desired, _live(_view(engine="python"), latest=2)).new_versions

    assert (new.version, new.reason, new.engine) == (3, "spec.features changed", "python")


def test_a_change_outside_the_data_fields_makes_no_version() -> None:
    desired = _view(schedule="@daily")
    desired["spec"]["ttl"] = "7d"

    assert _plan(desired, _live(_view())).new_versions == ()


def test_without_a_start_time_an_existing_view_backfills_from_its_creation() -> None:
    body = _view()
    del body["spec"]["materialization"]["startTime"]
    desired = copy.deepcopy(body)
    desired["spec"]["features"][0]["type"] = "string"
    live = _live(body, creationTimestamp="2026-01-31T12:30:00Z")

    (new,) = _plan(desired, live).new_versions

    assert new.start == dt.datetime(2026, 1, 31, 13, tzinfo=dt.UTC)
    assert (new.windows, new.jobs) == (11, 1)


def test_a_new_view_without_a_start_time_has_nothing_to_backfill() -> None:
    body = _view()
    del body["spec"]["materialization"]["startTime"]

    (new,) = _plan(body).new_versions

    assert (new.windows, new.start) == (0, None)
    assert str(new).endswith("nothing to backfill, its first window is the next tick")


def test_a_long_history_of_a_frequent_schedule_is_counted_up_to_a_bound() -> None:
    body = _view(schedule="* * * * *", startTime="2025-01-01T00:00:00Z")

    (new,) = _plan(body).new_versions

    assert (new.windows, new.more) == (cost.MAX_COUNTED, True)
    assert "backfills more than 20,000 windows" in str(new)


def test_the_plan_prints_and_serializes_what_each_new_version_starts() -> None:
    plan = _plan(_view())

    text = diff.render_text(plan)
    (data,) = plan.to_json()["newVersions"]  # type: ignore[misc]

    assert "* new version: FeatureView rides/driver-profile: creates version 1" in text
    assert data["windows"] == 744 and data["start"] == "2026-01-01T00:00:00Z"
    assert data["jobs"] == 31 and data["version"] == 1
