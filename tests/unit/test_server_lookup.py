"""The feature server's pure core: the plan, keys, statuses and the answer's columns."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import grpc
import pytest

from featurekube import ondemand
from featurekube.online import keys, layout, values, windows, wire
from featurekube_server import errors, lookup, plan, servicer

NOW = 1_800_000_000_000_000  # request time, microseconds since the epoch
MINUTE = 60_000_000

PLAN: dict[str, Any] = {
    "featureService": "eta-model",
    "namespace": "rides",
    "featureViews": [
        {
            "name": "driver-trip-stats",
            "namespace": "rides",
            "onlineTable": "stats",
            "entities": [{"name": "driver_id", "type": "int64", "description": "ignored"}],
            "ttl": "1d",
            "features": [
                {"name": "trips_30m", "source": "trips_30m", "type": "int64"},
                {"name": "avg_speed_7d", "source": "avg_trip_speed_kmh_7d", "type": "float64"},
            ],
        },
        {
            "name": "driver-zone",
            "namespace": "rides",
            "onlineTable": "zone",
            "entities": [
                {"name": "zone", "type": "string"},
                {"name": "driver_id", "type": "int64"},
            ],
            "ttl": None,
            "features": [{"name": "zone_rank", "source": "rank", "type": "int64"}],
        },
        {
            "name": "driver-location-live",
            "namespace": "rides",
            "onlineTable": "live",
            "entities": [{"name": "driver_id", "type": "int64"}],
            "ttl": "2m",
            "features": [{"name": "current_zone_id", "source": "current_zone_id", "type": "int64"}],
            "push": {
                "timestampField": "event_timestamp",
                "features": [
                    {"name": "current_zone_id", "type": "int64"},
                    {"name": "current_speed_kmh", "type": "float64"},
                ],
            },
        },
    ],
    "requestData": [{"name": "trip_distance_km", "type": "float64"}],
    "transformations": [
        {
            "name": "naive_eta_min",
            "type": "float64",
            "expression": "trip_distance_km / NULLIF(avg_speed_7d, 0) * 60",
        },
        {"name": "busy", "type": "bool", "expression": "trips_30m > 2"},
    ],
}


@pytest.fixture(scope="module")
def serving() -> plan.ServingPlan:
    return plan.parse_plan(PLAN)


def ints(*items: int | None) -> lookup.Column:
    return lookup.Column("int64", list(items))


def item(key: str, event_time: int, **attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        layout.ENTITY_KEY: {"S": key},
        layout.EVENT_TIME: {"N": str(event_time)},
        **attributes,
    }


def plan_lookup(serving: plan.ServingPlan, **overrides: Any) -> lookup.Lookup:
    arguments: dict[str, Any] = {
        "feature_service": None,
        "feature_names": None,
        "entities": {"driver_id": ints(1001)},
        "request_data": {},
        "include_event_times": True,
        "max_rows": 100,
    }
    arguments.update(overrides)
    return lookup.plan_lookup(serving, **arguments)


# --- the plan ------------------------------------------------------------------------


def test_the_plan_lists_features_then_transformations(serving: plan.ServingPlan) -> None:
    assert serving.feature_names == (
        "trips_30m",
        "avg_speed_7d",
        "zone_rank",
        "current_zone_id",
        "naive_eta_min",
        "busy",
    )
    assert serving.join_keys == {"driver_id": "int64", "zone": "string"}
    stats, zone, live = serving.feature_views
    assert stats.ttl == dt.timedelta(days=1)
    assert stats.ttl_micros == 86_400_000_000
    assert zone.ttl is None and zone.ttl_micros is None
    assert live.push is not None and live.push.timestamp_field == "event_timestamp"
    assert serving.type_of("busy") == "bool"
    assert serving.view("driver-zone") is zone
    assert serving.view("driver-zone", "other") is None


def broken(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(PLAN)
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (broken(("featureService",), None), "featureService: expected a non-empty string"),
        (broken(("featureViews",), []), "featureViews: expected a non-empty list"),
        (
            broken(("featureViews", 0, "features", 0, "type"), "int32"),
            "featureViews[0].features[0].type: 'int32' is not a value type",
        ),
        (broken(("featureViews", 0, "ttl"), "1 day"), "featureViews[0].ttl: '1 day' is not"),
        (
            broken(("featureViews", 1, "entities", 1, "type"), "string"),
            "has join key driver_id of type string, but driver-trip-stats has it as int64",
        ),
        (
            broken(("featureViews", 1, "features", 0, "name"), "trips_30m"),
            "'trips_30m' is served by driver-trip-stats too",
        ),
        (
            broken(("transformations", 1, "expression"), "trips_31m > 2"),
            "transformations[1] (busy): 'trips_31m' is neither a request field nor a feature",
        ),
        (
            broken(("transformations", 1, "name"), "trips_30m"),
            "transformations[1]: 'trips_30m' is also the name of a feature",
        ),
    ],
)
def test_a_broken_plan_is_refused_naming_the_field(document: Any, message: str) -> None:
    with pytest.raises(errors.PlanError) as refused:
        plan.parse_plan(document, source="plan.yaml")
    assert str(refused.value).startswith("plan.yaml: ")
    assert message in str(refused.value)


def test_the_operators_plan_for_the_examples_loads() -> None:
    from featurekube.spec import v1alpha1
    from featurekube_operator import desired

    # The operator is imported only to check that its plan is what the server reads.
    document = _example_plan(v1alpha1, desired)
    serving = plan.parse_plan(document)
    assert "naive_eta_min" in serving.feature_names
    assert serving.join_keys == {"driver_id": "int64"}


def _example_plan(v1alpha1: Any, desired: Any) -> dict[str, Any]:
    from pathlib import Path

    import yaml

    examples = Path(__file__).parents[2] / "examples"
    loaded = {}
    for path in examples.glob("*.yaml"):
        body = yaml.safe_load(path.read_text())
        loaded[body["metadata"]["name"]] = body
    service = v1alpha1.FeatureService.model_validate(loaded["eta-model"])
    resolved = [
        desired.ResolvedView(
            view=v1alpha1.FeatureView.model_validate(loaded[ref.feature_view]),
            online_table=f"table-{ref.feature_view}",
            features=ref.features,
            prefix=ref.prefix or "",
        )
        for ref in service.spec.features
    ]
    rendered: dict[str, Any] = desired.render_serving_plan(service, resolved)
    return rendered


# --- keys ----------------------------------------------------------------------------


def test_keys_are_encoded_per_view_and_read_once(serving: plan.ServingPlan) -> None:
    checked = plan_lookup(
        serving,
        feature_names=["trips_30m", "zone_rank"],
        entities={
            "driver_id": ints(7, 8, 7),
            "zone": lookup.Column("string", ["SF/N", "SF/N", "SF/N"]),
        },
    )
    stats, zone = checked.reads
    assert stats.row_keys == ("driver_id:i:7", "driver_id:i:8", "driver_id:i:7")
    assert stats.keys == ("driver_id:i:7", "driver_id:i:8")
    assert stats.attributes == ("trips_30m",)
    assert zone.keys == ("driver_id:i:7/zone:s:SF%2FN", "driver_id:i:8/zone:s:SF%2FN")
    assert zone.keys[0] == keys.encode_entity_key(
        {"zone": "string", "driver_id": "int64"}, {"zone": "SF/N", "driver_id": 7}
    )
    assert zone.attributes == ("rank",)


def test_whole_items_are_read_only_when_every_stored_feature_is_wanted() -> None:
    views = [
        {**PLAN["featureViews"][0], "storedFeatures": ["trips_30m", "avg_trip_speed_kmh_7d"]},
        {**PLAN["featureViews"][1], "storedFeatures": ["rank", "zone_name"]},
    ]
    serving = plan.parse_plan({**PLAN, "featureViews": views, "transformations": []})
    entities = {"driver_id": ints(7), "zone": lookup.Column("string", ["SF"])}

    everything = plan_lookup(serving, entities=entities)
    stats, zone = everything.reads
    assert stats.attributes is None  # both stored features: whole items
    assert zone.attributes == ("rank",)  # the table holds zone_name too

    (one,) = plan_lookup(serving, feature_names=["trips_30m"], entities=entities).reads
    assert one.attributes == ("trips_30m",)


def test_stored_features_must_be_a_list_of_names() -> None:
    bad = {**PLAN, "featureViews": [{**PLAN["featureViews"][0], "storedFeatures": "trips_30m"}]}
    with pytest.raises(errors.PlanError, match=r"featureViews\[0\]\.storedFeatures"):
        plan.parse_plan(bad)


def test_features_that_transformations_read_are_fetched_but_not_answered(
    serving: plan.ServingPlan,
) -> None:
    checked = plan_lookup(
        serving,
        feature_names=["naive_eta_min"],
        request_data={"trip_distance_km": lookup.Column("float64", [5.0])},
    )
    assert checked.features == ("naive_eta_min",)
    (stats,) = checked.reads
    assert stats.attributes == ("avg_trip_speed_kmh_7d",)


def test_a_planner_answers_each_selection_as_planning_afresh_does(
    serving: plan.ServingPlan,
) -> None:
    planner = lookup.Planner(serving)
    entities = {"driver_id": ints(3, 1, 3), "zone": lookup.Column("string", ["a", "b", "a"])}
    request_data = {"trip_distance_km": lookup.Column("float64", [1.0, 2.0, 3.0])}
    selections = [None, ["busy"], ["zone_rank", "trips_30m"], None, ["busy"], ["naive_eta_min"]]
    for names in selections:
        arguments: dict[str, Any] = {
            "feature_service": None if names else "eta-model",
            "feature_names": names,
            "entities": entities,
            "request_data": request_data,
            "include_event_times": False,
            "max_rows": 10,
        }
        assert planner.plan(**arguments) == lookup.plan_lookup(serving, **arguments)


# --- statuses ------------------------------------------------------------------------


def test_statuses_follow_the_ttl_and_a_value_exactly_ttl_old_is_present(
    serving: plan.ServingPlan,
) -> None:
    ttl = serving.feature_views[0].ttl_micros
    assert ttl is not None
    entities = {"driver_id": ints(1, 2, 3, 4, 5)}
    checked = plan_lookup(serving, feature_names=["trips_30m", "avg_speed_7d"], entities=entities)
    items = {
        "stats": {
            "driver_id:i:1": item("driver_id:i:1", NOW - MINUTE, trips_30m={"N": "3"}),
            "driver_id:i:2": item("driver_id:i:2", NOW - ttl, trips_30m={"N": "4"}),
            "driver_id:i:3": item("driver_id:i:3", NOW - ttl - 1, trips_30m={"N": "5"}),
            # Present, but trips_30m was written as null (an absent attribute).
            "driver_id:i:5": item(
                "driver_id:i:5", NOW, avg_trip_speed_kmh_7d=values.to_attribute("float64", 0.1)
            ),
        }
    }

    result = lookup.assemble(checked, items, NOW)

    trips, speed = result.features
    present, absent, old = (
        lookup.Status.PRESENT,
        lookup.Status.NOT_FOUND,
        lookup.Status.OUTSIDE_MAX_AGE,
    )
    assert trips.values == [3, 4, None, None, None]
    assert trips.statuses == [present, present, old, absent, present]
    assert trips.event_times == [NOW - MINUTE, NOW - ttl, NOW - ttl - 1, 0, NOW]
    assert speed.values == [None, None, None, None, 0.1]
    assert result.status_counts == {present: 6, absent: 2, old: 2}


def test_an_aggregations_ttl_counts_from_its_latest_event_not_its_boundary(
    serving: plan.ServingPlan,
) -> None:
    ttl = serving.feature_views[0].ttl_micros
    assert ttl is not None
    boundary = NOW - 3 * ttl  # the value last changed long ago ...
    latest = {layout.LATEST_EVENT_TIME: {"N": str(NOW - ttl)}}  # ... its events are recent
    stale = {layout.LATEST_EVENT_TIME: {"N": str(NOW - ttl - 1)}}
    checked = plan_lookup(
        serving, feature_names=["trips_30m"], entities={"driver_id": ints(1, 2, 1)}
    )
    items = {
        "stats": {
            "driver_id:i:1": item("driver_id:i:1", boundary, trips_30m={"N": "2"}, **latest),
            "driver_id:i:2": item("driver_id:i:2", NOW, trips_30m={"N": "7"}, **stale),
        }
    }

    (trips,) = lookup.assemble(checked, items, NOW).features

    old = lookup.Status.OUTSIDE_MAX_AGE
    assert trips.values == [2, None, 2]
    assert trips.statuses == [lookup.Status.PRESENT, old, lookup.Status.PRESENT]
    assert trips.event_times == [boundary, NOW, boundary]  # the value's own event time


def _windows_item(*ranges: tuple[int, int]) -> dict[str, Any]:
    pending = {windows.window_id(a, b): {"S": f"run-{a}"} for a, b in ranges}
    return {
        layout.ENTITY_KEY: {"S": windows.WINDOWS_KEY},
        windows.PENDING: {"M": pending},
    }


def test_items_a_pending_window_may_have_written_are_not_found_until_it_completes(
    serving: plan.ServingPlan,
) -> None:
    checked = plan_lookup(
        serving, feature_names=["trips_30m"], entities={"driver_id": ints(1, 2, 3, 2)}
    )
    window = (NOW - 10 * MINUTE, NOW - 5 * MINUTE)
    found = {
        "driver_id:i:1": item("driver_id:i:1", window[0] - 1, trips_30m={"N": "1"}),
        "driver_id:i:2": item("driver_id:i:2", window[0], trips_30m={"N": "2"}),
        "driver_id:i:3": item("driver_id:i:3", window[1], trips_30m={"N": "3"}),
    }
    read = checked.reads[0]

    pending = lookup.assemble(
        checked, {"stats": {**found, windows.WINDOWS_KEY: _windows_item(window)}}, NOW
    )
    completed = lookup.assemble(
        checked, {"stats": {**found, windows.WINDOWS_KEY: _windows_item()}}, NOW
    )

    (trips,) = pending.features
    present, absent = lookup.Status.PRESENT, lookup.Status.NOT_FOUND
    assert trips.values == [1, None, 3, None]  # [start, end): the end is the next window's
    assert trips.statuses == [present, absent, present, absent]
    assert completed.features[0].values == [1, 2, 3, 2]
    # The windows item is read in the same call as the entities, once per table.
    table_read = lookup.table_read(read)
    assert table_read.table == "stats"
    assert list(table_read.keys) == [*read.keys, windows.WINDOWS_KEY]


def test_push_source_views_have_no_pending_windows(serving: plan.ServingPlan) -> None:
    checked = plan_lookup(
        serving, feature_names=["current_zone_id"], entities={"driver_id": ints(1)}
    )
    (read,) = checked.reads
    assert list(lookup.table_read(read).keys) == list(read.keys)
    found = {
        "driver_id:i:1": item("driver_id:i:1", NOW, current_zone_id={"N": "4"}),
        windows.WINDOWS_KEY: _windows_item((NOW - 1, NOW + 1)),
    }
    assert lookup.assemble(checked, {"live": found}, NOW).features[0].values == [4]


def test_the_windows_item_names_pending_ranges_half_open() -> None:
    assert windows.pending_ranges(None) == ()
    assert windows.pending_ranges(_windows_item()) == ()
    item_ = _windows_item((30, 40), (-20, 10))
    ranges = windows.pending_ranges(item_)
    assert ranges == ((-20, 10), (30, 40))  # times before 1970 too
    assert [windows.hidden(t, ranges) for t in (-21, -20, 9, 10, 29, 30, 39, 40)] == [
        False,
        True,
        True,
        False,
        False,
        True,
        True,
        False,
    ]


def test_a_view_without_ttl_never_expires(serving: plan.ServingPlan) -> None:
    checked = plan_lookup(
        serving,
        feature_names=["zone_rank"],
        entities={"driver_id": ints(1), "zone": lookup.Column("string", ["a"])},
    )
    key = checked.reads[0].keys[0]
    result = lookup.assemble(checked, {"zone": {key: item(key, 0, rank={"N": "2"})}}, NOW)
    assert result.features[0].values == [2]
    assert result.features[0].statuses == [lookup.Status.PRESENT]


def test_duplicate_rows_get_their_values_in_the_callers_order(serving: plan.ServingPlan) -> None:
    checked = plan_lookup(
        serving, feature_names=["trips_30m"], entities={"driver_id": ints(2, 1, 2, 2)}
    )
    items = {
        "stats": {
            "driver_id:i:1": item("driver_id:i:1", NOW, trips_30m={"N": "1"}),
            "driver_id:i:2": item("driver_id:i:2", NOW, trips_30m={"N": "2"}),
        }
    }
    assert lookup.assemble(checked, items, NOW).features[0].values == [2, 1, 2, 2]


def test_transformations_are_computed_with_the_worst_status_of_what_they_read(
    serving: plan.ServingPlan,
) -> None:
    ttl = serving.feature_views[0].ttl_micros
    assert ttl is not None
    checked = plan_lookup(
        serving,
        feature_names=["naive_eta_min", "busy", "trips_30m"],
        entities={"driver_id": ints(1, 2, 3)},
        request_data={"trip_distance_km": ints(5, 5, 5)},  # int64 widens to float64
    )
    speed = values.to_attribute("float64", 30.0)
    items = {
        "stats": {
            "driver_id:i:1": item(
                "driver_id:i:1", NOW, trips_30m={"N": "3"}, avg_trip_speed_kmh_7d=speed
            ),
            "driver_id:i:2": item(
                "driver_id:i:2", NOW - ttl - 1, trips_30m={"N": "3"}, avg_trip_speed_kmh_7d=speed
            ),
        }
    }

    eta, busy, trips = lookup.assemble(checked, items, NOW).features

    assert [eta.name, busy.name, trips.name] == ["naive_eta_min", "busy", "trips_30m"]
    assert eta.values == [10.0, None, None]
    assert busy.values == [True, None, None]
    assert eta.statuses == [
        lookup.Status.PRESENT,
        lookup.Status.OUTSIDE_MAX_AGE,
        lookup.Status.NOT_FOUND,
    ]
    assert eta.event_times == [NOW, NOW - ttl - 1, 0]


def test_event_times_are_left_out_unless_asked_for(serving: plan.ServingPlan) -> None:
    checked = plan_lookup(serving, feature_names=["trips_30m"], include_event_times=False)
    assert lookup.assemble(checked, {}, NOW).features[0].event_times is None


def test_a_transformation_failing_on_a_requests_values_is_an_error(
    serving: plan.ServingPlan,
) -> None:
    document = copy.deepcopy(PLAN)
    document["transformations"].append(
        {"name": "huge", "type": "int64", "expression": "trips_30m * 9223372036854775807"}
    )
    checked = plan_lookup(plan.parse_plan(document), feature_names=["huge"])
    items = {"stats": {"driver_id:i:1001": item("driver_id:i:1001", NOW, trips_30m={"N": "3"})}}
    with pytest.raises(ondemand.TransformationError, match="huge"):
        lookup.assemble(checked, items, NOW)


@pytest.mark.parametrize("include_event_times", [True, False])
def test_the_response_holds_every_columns_values_statuses_and_event_times(
    serving: plan.ServingPlan, include_event_times: bool
) -> None:
    ttl = serving.feature_views[0].ttl_micros
    assert ttl is not None
    checked = plan_lookup(
        serving,
        feature_names=["trips_30m", "naive_eta_min", "avg_speed_7d", "busy"],
        entities={"driver_id": ints(1, 2, 3, 1)},
        request_data={"trip_distance_km": lookup.Column("float64", [5.0] * 4)},
        include_event_times=include_event_times,
    )
    speed = values.to_attribute("float64", 30.0)
    items = {
        "stats": {
            "driver_id:i:1": item(
                "driver_id:i:1", NOW, trips_30m={"N": "3"}, avg_trip_speed_kmh_7d=speed
            ),
            "driver_id:i:2": item("driver_id:i:2", NOW - ttl - 1, trips_30m={"N": "4"}),
        }
    }
    result = lookup.assemble(checked, items, NOW)

    response = servicer._encode(result)

    assert response.row_count == 4
    assert [c.name for c in response.features] == [f.name for f in result.features]
    for column, feature in zip(response.features, result.features, strict=True):
        assert wire.decode(column.values) == feature.values
        assert list(column.statuses) == feature.statuses
        assert list(column.event_times) == (feature.event_times or [])
    assert list(response.features[0].statuses) == [1, 3, 2, 1]
    if include_event_times:
        assert list(response.features[1].event_times) == [NOW, NOW - ttl - 1, 0, NOW]


def test_large_answers_match_the_layout_row_by_row(serving: plan.ServingPlan) -> None:
    ttl = serving.feature_views[0].ttl_micros
    assert ttl is not None
    drivers = [i % 250 for i in range(300)]  # repeats, in the caller's order
    checked = plan_lookup(
        serving,
        feature_names=["avg_speed_7d", "trips_30m"],
        entities={"driver_id": ints(*drivers)},
        max_rows=1000,
    )
    stats: dict[str, Any] = {}
    for driver in range(250):
        if driver % 7 == 0:
            continue  # not found
        key = f"driver_id:i:{driver}"
        event = NOW - ttl - 1 if driver % 11 == 0 else NOW - driver
        attributes = {"trips_30m": {"N": str(driver)}}
        if driver % 13:
            attributes["avg_trip_speed_kmh_7d"] = values.to_attribute("float64", driver / 3)
        stats[key] = item(key, event, **attributes)

    speed, trips = lookup.assemble(checked, {"stats": stats}, NOW).features

    for row, driver in enumerate(drivers):
        found = stats.get(f"driver_id:i:{driver}")
        valid = found is not None and driver % 11 != 0
        expected_speed = driver / 3 if valid and driver % 13 else None
        assert speed.values[row] == expected_speed
        assert trips.values[row] == (driver if valid else None)
        assert speed.statuses[row] == (
            lookup.Status.NOT_FOUND
            if found is None
            else lookup.Status.OUTSIDE_MAX_AGE
            if driver % 11 == 0
            else lookup.Status.PRESENT
        )
    # All found and fresh: the bulk path.
    fresh = [d for d in range(250) if d % 7 and d % 11 and d % 13][:200]
    checked = plan_lookup(
        serving, feature_names=["avg_speed_7d"], entities={"driver_id": ints(*fresh)}, max_rows=1000
    )
    (speed,) = lookup.assemble(checked, {"stats": stats}, NOW).features
    assert speed.values == [d / 3 for d in fresh]
    assert speed.statuses == [lookup.Status.PRESENT] * len(fresh)


# --- refused requests ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (
            {"feature_names": ["trips_31m"]},
            errors.UnknownFeatureError,
            "unknown feature 'trips_31m'",
        ),
        ({"feature_names": ["trips_31m"]}, errors.UnknownFeatureError, "did you mean 'trips_30m'"),
        ({"feature_names": []}, errors.UnknownFeatureError, "names no feature"),
        ({"feature_names": ["busy", "busy"]}, errors.UnknownFeatureError, "asked for twice"),
        (
            {"feature_service": "other"},
            errors.NotServedError,
            "serves feature service rides/eta-model, not 'other'",
        ),
        ({"entities": {}}, errors.InvalidColumnError, "has no entity rows"),
        ({"entities": {"driver": ints(1)}}, errors.InvalidColumnError, "unknown join key 'driver'"),
        (
            {"entities": {"driver_id": lookup.Column("string", ["1"])}},
            errors.InvalidColumnError,
            "join key driver_id is int64, but the request sent string",
        ),
        (
            {"entities": {"driver_id": lookup.Column(None, [None])}},
            errors.InvalidColumnError,
            "sent only nulls",
        ),
        (
            {"entities": {"driver_id": ints(1, None)}},
            errors.InvalidColumnError,
            "join key driver_id is null in row 1",
        ),
        (
            {"feature_names": ["zone_rank"]},
            errors.InvalidColumnError,
            "missing join key zone (string), needed for zone_rank of feature view driver-zone",
        ),
        (
            {"entities": {"driver_id": ints(*range(101))}},
            errors.TooManyRowsError,
            "101 entity rows in one request; this server takes at most 100",
        ),
        (
            {"request_data": {"trip_distance_km": ints(1, 2)}},
            errors.InvalidColumnError,
            "columns of different lengths",
        ),
        (
            {"request_data": {"distance": ints(1)}, "feature_names": ["busy"]},
            errors.InvalidColumnError,
            "unknown request field 'distance'",
        ),
        (
            {"feature_names": ["naive_eta_min"]},
            errors.InvalidColumnError,
            "missing request field trip_distance_km (float64), read by naive_eta_min",
        ),
        (
            {
                "request_data": {"trip_distance_km": lookup.Column("string", ["5"])},
                "feature_names": ["naive_eta_min"],
            },
            errors.InvalidColumnError,
            "request field trip_distance_km is float64",
        ),
    ],
)
def test_requests_that_cannot_be_served_are_refused(
    serving: plan.ServingPlan, overrides: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error) as refused:
        plan_lookup(serving, **overrides)
    assert message in str(refused.value)


def test_every_error_has_its_status_code() -> None:
    codes = {
        errors.UnknownFeatureError("x"): grpc.StatusCode.INVALID_ARGUMENT,
        errors.InvalidColumnError("x"): grpc.StatusCode.INVALID_ARGUMENT,
        errors.TooManyRowsError("x"): grpc.StatusCode.INVALID_ARGUMENT,
        errors.InvalidPushError("x"): grpc.StatusCode.INVALID_ARGUMENT,
        ondemand.TransformationError("x"): grpc.StatusCode.INVALID_ARGUMENT,
        errors.NotServedError("x"): grpc.StatusCode.NOT_FOUND,
        errors.StoreUnavailableError("x"): grpc.StatusCode.UNAVAILABLE,
        errors.PushUnsupportedError("x"): grpc.StatusCode.UNIMPLEMENTED,
        TimeoutError(): grpc.StatusCode.DEADLINE_EXCEEDED,
        KeyError("bug"): grpc.StatusCode.INTERNAL,
    }
    assert {e: servicer.status_code(e) for e in codes} == codes


# --- pushed rows ---------------------------------------------------------------------


def push_columns(**overrides: lookup.Column) -> dict[str, lookup.Column]:
    columns = {
        "driver_id": ints(1, 2),
        "event_timestamp": lookup.Column("timestamp", [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * 2),
        "current_zone_id": ints(5, None),
        "current_speed_kmh": lookup.Column("float64", [10.5, 3.0]),
    }
    columns.update(overrides)
    return columns


def test_pushed_event_times_lie_between_1970_and_the_allowed_skew(
    serving: plan.ServingPlan,
) -> None:
    live = serving.feature_views[2]
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    latest = lookup_micros(now + dt.timedelta(minutes=5))

    def times(*moments: dt.datetime) -> dict[str, lookup.Column]:
        return push_columns(event_timestamp=lookup.Column("timestamp", list(moments)))

    on_time = times(now, now + dt.timedelta(minutes=5))
    assert lookup.check_push(live, on_time, max_rows=10, latest_micros=latest).num_rows == 2
    with pytest.raises(errors.InvalidPushError, match=r"row 1, column event_timestamp: .* ahead"):
        lookup.check_push(
            live, times(now, dt.datetime(2200, 1, 1, tzinfo=dt.UTC)), 10, latest_micros=latest
        )
    with pytest.raises(errors.InvalidPushError, match=r"row 0, column event_timestamp: .* 1970"):
        lookup.check_push(
            live, times(dt.datetime(1969, 12, 31, tzinfo=dt.UTC), now), 10, latest_micros=latest
        )


def lookup_micros(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * 1_000_000


def test_pushed_rows_become_a_typed_table(serving: plan.ServingPlan) -> None:
    live = serving.feature_views[2]
    table = lookup.check_push(live, push_columns(current_speed_kmh=ints(10, 3)), max_rows=10)
    assert table.column_names == [
        "driver_id",
        "event_timestamp",
        "current_zone_id",
        "current_speed_kmh",
    ]
    assert table["current_speed_kmh"].to_pylist() == [10.0, 3.0]
    assert str(table.schema.field("event_timestamp").type) == "timestamp[us, tz=UTC]"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"speed": ints(1, 2)}, "column 'speed' is not a join key, the event timestamp field"),
        (
            {"current_zone_id": lookup.Column("string", ["a", "b"])},
            "column current_zone_id is a feature of type int64, but the rows have string values",
        ),
        ({"driver_id": ints(1, None)}, "row 1, column driver_id: null, but a join key"),
        (
            {"event_timestamp": lookup.Column("timestamp", [None, None])},
            "row 0, column event_timestamp: null, but the event timestamp field",
        ),
        ({"current_zone_id": ints(1)}, "pushed columns have different lengths"),
    ],
)
def test_pushed_rows_that_do_not_fit_the_view_are_refused_naming_row_and_column(
    serving: plan.ServingPlan, overrides: dict[str, lookup.Column], message: str
) -> None:
    with pytest.raises(errors.InvalidPushError) as refused:
        lookup.check_push(serving.feature_views[2], push_columns(**overrides), max_rows=10)
    assert message in str(refused.value)


def test_a_push_missing_a_feature_column_is_refused(serving: plan.ServingPlan) -> None:
    columns = push_columns()
    del columns["current_speed_kmh"]
    with pytest.raises(errors.InvalidPushError, match=r"lack column\(s\) current_speed_kmh"):
        lookup.check_push(serving.feature_views[2], columns, max_rows=10)


def test_only_push_source_views_take_pushed_rows(serving: plan.ServingPlan) -> None:
    with pytest.raises(errors.InvalidPushError, match="is not a push source"):
        lookup.check_push(serving.feature_views[0], push_columns(), max_rows=10)


@pytest.mark.parametrize(
    ("value_type", "samples"),
    [
        ("int64", [0, -(2**63), 2**63 - 1, None]),
        ("float64", [0.1, -0.0, float("inf"), float("-inf"), 1e308, None]),
        ("string", ["", "a/b", None]),
        ("bool", [True, False, None]),
        ("timestamp", [dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), None]),
        ("float64_array", [[1.0, -2.5], [], None]),
    ],
)
def test_the_answers_decoding_equals_the_layouts(value_type: str, samples: list[Any]) -> None:
    items: list[dict[str, Any] | None] = [
        {"x": a} if (a := values.to_attribute(value_type, v)) is not None else {} for v in samples
    ]
    items += [None, {"x": {"NULL": True}}]
    expected = [None if i is None else values.from_attribute(value_type, i.get("x")) for i in items]
    assert lookup._decode(value_type, "x", items) == expected
    # Without nulls (the column decoded in bulk), with and without rows found invalid.
    valued = [i for i in items if i and i.get("x") and not i["x"].get("NULL")]
    for stored in (valued, [None, *valued, None, *valued[:1]]):
        expected = [i and values.from_attribute(value_type, i["x"]) for i in stored]
        assert lookup._decode(value_type, "x", stored) == expected
