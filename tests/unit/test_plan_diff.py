"""The pure half of ``featurekube plan``: desired objects against live ones."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from featurekube.planning import diff
from featurekube.spec import loader, v1alpha1

NS = "rides"


def trip_stats(namespace: str | None = NS) -> dict[str, Any]:
    """driver-trip-stats as its author writes it: no server defaults."""
    metadata: dict[str, Any] = {"name": "driver-trip-stats"}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": metadata,
        "spec": {
            "owner": "eta-team@example.com",
            "entities": [{"name": "driver_id", "type": "int64"}],
            "source": {"batch": {"path": "s3://featurekube-demo/raw/trips/"}},
            "aggregations": [
                {"name": "trips_30m", "column": "trip_id", "function": "count", "window": "30m"},
                {"name": "trips_1d", "column": "trip_id", "function": "count", "window": "1d"},
                {"name": "trips_7d", "column": "trip_id", "function": "count", "window": "7d"},
            ],
            "aggregationInterval": "10m",
            "ttl": "1d",
            "expectations": [{"feature": "trips_7d", "min": 0, "max": 5000}],
        },
    }


def driver_profile(namespace: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": {"name": "driver-profile", "namespace": namespace},
        "spec": {
            "owner": "eta-team@example.com",
            "entities": [{"name": "driver_id", "type": "int64"}],
            "source": {"batch": {"path": "s3://featurekube-demo/raw/drivers/", "format": "delta"}},
            "features": [
                {"name": "rating", "type": "float64"},
                {"name": "vehicle_type", "type": "string"},
            ],
        },
    }


def eta_model(namespace: str = NS, **reference: Any) -> dict[str, Any]:
    """The eta-model service; ``reference`` replaces its reference to driver-trip-stats."""
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureService",
        "metadata": {"name": "eta-model", "namespace": namespace},
        "spec": {
            "owner": "eta-team@example.com",
            "features": [
                reference
                or {"featureView": "driver-trip-stats", "features": ["trips_30m", "trips_7d"]},
                {"featureView": "driver-profile"},
            ],
            "requestData": [{"name": "trip_distance_km", "type": "float64"}],
            "transformations": [
                {
                    "name": "km_per_trip",
                    "type": "float64",
                    "expression": "trip_distance_km / nullif(trips_7d, 0)",
                }
            ],
        },
    }


def driver_ranker(**reference: Any) -> dict[str, Any]:
    """A service of the ranking namespace using driver-profile, shared from rides."""
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureService",
        "metadata": {"name": "driver-ranker", "namespace": "ranking"},
        "spec": {
            "owner": "ranking-team@example.com",
            "features": [{"featureView": "driver-profile", "namespace": NS, **reference}],
        },
    }


def as_live(body: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    """``body`` as the API server returns it after ``kubectl apply``: defaults filled
    in, server metadata added, and the operator's status."""
    live = copy.deepcopy(body)
    spec = live["spec"]
    if live["kind"] == "FeatureView":
        batch = spec["source"].get("batch")
        if batch is not None:
            batch.setdefault("format", "parquet")
            batch.setdefault("timestampField", "event_timestamp")
        materialization = spec.setdefault("materialization", {})
        materialization.setdefault("online", True)
        materialization.setdefault("offline", True)
        materialization.setdefault("schedule", "@hourly")
        for expectation in spec.get("expectations", ()):
            expectation.setdefault("notNull", False)
            expectation.setdefault("onViolation", "Warn")
        spec.setdefault("deletionPolicy", "Retain")
    else:
        server = spec.setdefault("server", {})
        server.setdefault("replicas", 2)
        server.setdefault("port", 50051)
    live["metadata"].update(
        uid="9a0c6a3e-5f3c-4f0e-9d43-0c5c1f1e2b7a",
        resourceVersion="48213",
        generation=3,
        creationTimestamp="2026-03-01T09:00:00Z",
        managedFields=[{"manager": "kubectl-client-side-apply", "operation": "Update"}],
        finalizers=["featurekube.dev/cleanup"],
    )
    annotations = live["metadata"].setdefault("annotations", {})
    annotations[diff.LAST_APPLIED_ANNOTATION] = json.dumps(body)
    annotations["featurekube.dev/last-handled-configuration"] = "{}"
    if status is not None:
        live["status"] = status
    return live


MATERIALIZED = {
    "observedGeneration": 3,
    "lastMaterializedWindow": {"start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z"},
    "conditions": [{"type": "Ready", "status": "True", "reason": "Serving"}],
}


def parse(body: dict[str, Any]) -> loader.Resource:
    return loader.KINDS[body["kind"]].model_validate(body)


def plan(
    desired: list[dict[str, Any]], live: list[dict[str, Any]], *, prune: bool = True
) -> diff.Plan:
    return diff.plan_apply(
        [parse(body) for body in desired], [parse(body) for body in live], prune=prune
    )


def ref(kind: str, name: str, namespace: str = NS) -> diff.ObjectRef:
    return diff.ObjectRef(kind, namespace, name)


VIEW = ref("FeatureView", "driver-trip-stats")
PROFILE = ref("FeatureView", "driver-profile")
SERVICE = ref("FeatureService", "eta-model")


def actions(result: diff.Plan) -> dict[diff.ObjectRef, diff.Action]:
    return {change.ref: change.action for change in result.changes}


def fields(result: diff.Plan, which: diff.ObjectRef) -> list[tuple[str, str | None, Any, Any]]:
    (change,) = [c for c in result.changes if c.ref == which]
    return [(f.path, f.item, f.old, f.new) for f in change.fields]


# --- create, change, unchanged -----------------------------------------------------


def test_objects_not_in_the_cluster_are_created() -> None:
    result = plan([trip_stats(), eta_model(), driver_profile()], [])

    assert actions(result) == {
        VIEW: diff.Action.CREATE,
        PROFILE: diff.Action.CREATE,
        SERVICE: diff.Action.CREATE,
    }
    assert result.namespaces == (NS,)
    assert result.has_changes
    assert not result.breaking
    # FeatureViews first (they are what services refer to), then by name.
    assert [c.ref for c in result.changes] == [PROFILE, VIEW, SERVICE]


def test_an_object_as_applied_is_unchanged_despite_server_defaults_metadata_and_status() -> None:
    desired = [trip_stats(), driver_profile(), eta_model()]

    result = plan(
        desired, [as_live(body, MATERIALIZED) for body in desired[:2]] + [as_live(desired[2])]
    )

    assert set(actions(result).values()) == {diff.Action.UNCHANGED}
    assert not result.has_changes
    assert result.summary() == (
        "Plan: 0 to create, 0 to change, 0 to delete, 3 unchanged; 0 breaking changes."
    )


def test_an_explicit_default_in_yaml_is_no_change() -> None:
    desired = trip_stats()
    desired["spec"]["deletionPolicy"] = "Retain"
    desired["spec"]["source"]["batch"]["format"] = "parquet"

    result = plan([desired], [as_live(trip_stats())])

    assert actions(result) == {VIEW: diff.Action.UNCHANGED}


def test_a_change_is_listed_field_by_field() -> None:
    desired = trip_stats()
    desired["spec"]["ttl"] = "2d"
    desired["spec"]["materialization"] = {"schedule": "*/10 * * * *"}
    desired["spec"]["deletionPolicy"] = "Delete"

    result = plan([desired], [as_live(trip_stats())])

    assert actions(result) == {VIEW: diff.Action.CHANGE}
    assert fields(result, VIEW) == [
        ("spec.ttl", None, "1d", "2d"),
        ("spec.materialization.schedule", None, "@hourly", "*/10 * * * *"),
        ("spec.deletionPolicy", None, "Retain", "Delete"),
    ]
    assert not result.breaking


def test_setting_and_unsetting_optional_fields() -> None:
    desired = trip_stats()
    desired["spec"]["description"] = "Trips per driver over sliding windows"
    del desired["spec"]["ttl"]

    result = plan([desired], [as_live(trip_stats())])

    (change,) = result.changes
    assert [(f.path, f.kind, f.old, f.new) for f in change.fields] == [
        ("spec.description", "added", None, "Trips per driver over sliding windows"),
        ("spec.ttl", "removed", "1d", None),
    ]


# --- lists by name -----------------------------------------------------------------


def test_an_aggregation_inserted_in_the_middle_is_one_addition_not_a_shift() -> None:
    live = trip_stats()
    del live["spec"]["aggregations"][1]  # trips_1d is new
    desired = trip_stats()

    result = plan([desired], [as_live(live)])

    (change,) = result.changes
    assert [(f.path, f.item, f.kind) for f in change.fields] == [
        ("spec.aggregations[1]", "trips_1d", "added"),
    ]
    assert change.fields[0].new == desired["spec"]["aggregations"][1]


def test_a_change_inside_a_named_item_names_the_item() -> None:
    desired = trip_stats()
    desired["spec"]["aggregations"][2]["window"] = "14d"
    desired["spec"]["aggregations"][2]["name"] = "trips_14d"
    desired["spec"]["aggregations"][1]["description"] = "Completed trips in the last day"
    desired["spec"]["expectations"][0] = {"feature": "trips_14d", "max": 9000}

    result = plan([desired], [as_live(trip_stats())])

    assert fields(result, VIEW) == [
        ("spec.aggregations[1].description", "trips_1d", None, "Completed trips in the last day"),
        ("spec.aggregations[2]", "trips_14d", None, desired["spec"]["aggregations"][2]),
        ("spec.aggregations[2]", "trips_7d", trip_stats()["spec"]["aggregations"][2], None),
        (
            "spec.expectations[0]",
            "trips_14d",
            None,
            {"feature": "trips_14d", "notNull": False, "max": 9000.0, "onViolation": "Warn"},
        ),
        (
            "spec.expectations[0]",
            "trips_7d",
            {
                "feature": "trips_7d",
                "notNull": False,
                "min": 0.0,
                "max": 5000.0,
                "onViolation": "Warn",
            },
            None,
        ),
    ]


def test_reordering_named_items_is_a_change_of_order_only() -> None:
    desired = trip_stats()
    desired["spec"]["aggregations"].reverse()

    result = plan([desired], [as_live(trip_stats())])

    (change,) = result.changes
    assert [(f.path, f.kind, f.old, f.new) for f in change.fields] == [
        (
            "spec.aggregations",
            "reordered",
            ["trips_30m", "trips_1d", "trips_7d"],
            ["trips_7d", "trips_1d", "trips_30m"],
        ),
    ]


def test_entities_are_matched_by_name() -> None:
    desired = trip_stats()
    desired["spec"]["entities"].insert(0, {"name": "city_id", "type": "string"})
    desired["spec"]["entities"][1]["type"] = "string"

    result = plan([desired], [as_live(trip_stats())])

    assert fields(result, VIEW) == [
        ("spec.entities[0]", "city_id", None, {"name": "city_id", "type": "string"}),
        ("spec.entities[1].type", "driver_id", "int64", "string"),
    ]


def test_a_service_is_compared_by_view_reference_request_field_and_transformation() -> None:
    desired = eta_model(featureView="driver-trip-stats", features=["trips_30m", "trips_1d"])
    desired["spec"]["features"].insert(0, {"featureView": "rider-profile", "namespace": "riders"})
    desired["spec"]["requestData"].append({"name": "pickup_hour", "type": "int64"})
    desired["spec"]["transformations"][0]["expression"] = "trip_distance_km / (trips_1d + 1)"
    desired["spec"]["server"] = {"replicas": 3}

    result = plan([desired], [as_live(eta_model())])

    assert fields(result, SERVICE) == [
        (
            "spec.features[0]",
            "riders/rider-profile",
            None,
            {"featureView": "rider-profile", "namespace": "riders"},
        ),
        (
            "spec.features[1].features",
            "driver-trip-stats",
            ["trips_30m", "trips_7d"],
            ["trips_30m", "trips_1d"],
        ),
        ("spec.requestData[1]", "pickup_hour", None, {"name": "pickup_hour", "type": "int64"}),
        (
            "spec.transformations[0].expression",
            "km_per_trip",
            "trip_distance_km / nullif(trips_7d, 0)",
            "trip_distance_km / (trips_1d + 1)",
        ),
        ("spec.server.replicas", None, 2, 3),
    ]


def test_an_unnamed_list_is_compared_by_position() -> None:
    changes = diff.diff_fields(
        {"items": [{"a": 1}, {"a": 2}]}, {"items": [{"a": 1}, {"a": 3}, {"a": 4}]}
    )

    assert [(c.path, c.kind, c.old, c.new) for c in changes] == [
        ("items[1].a", "changed", 2, 3),
        ("items[2]", "added", None, {"a": 4}),
    ]


def test_numbers_and_booleans_are_told_apart() -> None:
    assert [c.path for c in diff.diff_fields({"x": 1, "y": 1}, {"x": 1.5, "y": True})] == [
        "x",
        "y",
    ]


# --- labels and annotations --------------------------------------------------------


def test_labels_the_yaml_sets_are_compared_and_others_on_the_live_object_are_not() -> None:
    applied = trip_stats()
    applied["metadata"]["labels"] = {"team": "eta", "tier": "gold"}
    live = as_live(applied)
    live["metadata"]["labels"]["argocd.argoproj.io/instance"] = "features"
    desired = trip_stats()
    desired["metadata"]["labels"] = {"team": "dispatch", "app.kubernetes.io/part-of": "eta"}

    result = plan([desired], [live])

    assert fields(result, VIEW) == [
        ("metadata.labels.team", None, "eta", "dispatch"),
        ('metadata.labels["app.kubernetes.io/part-of"]', None, None, "eta"),
        # Applied before and gone from the YAML: kubectl apply removes it.
        ("metadata.labels.tier", None, "gold", None),
    ]


# --- deletion ----------------------------------------------------------------------


def test_objects_of_a_managed_namespace_missing_from_dir_are_deleted() -> None:
    elsewhere = driver_profile(namespace="dispatch")

    result = plan(
        [trip_stats()],
        [as_live(trip_stats()), as_live(driver_profile()), as_live(elsewhere)],
    )

    assert actions(result) == {
        VIEW: diff.Action.UNCHANGED,
        PROFILE: diff.Action.DELETE,
    }
    assert result.summary() == (
        "Plan: 0 to create, 0 to change, 1 to delete, 1 unchanged; 0 breaking changes."
    )


def test_without_prune_nothing_is_deleted() -> None:
    result = plan([trip_stats()], [as_live(trip_stats()), as_live(driver_profile())], prune=False)

    assert actions(result) == {VIEW: diff.Action.UNCHANGED}
    assert not result.has_changes
    assert not result.prune


# --- breaking changes --------------------------------------------------------------


def test_removing_a_feature_a_service_in_dir_uses_is_breaking() -> None:
    desired = trip_stats()
    del desired["spec"]["aggregations"][2]  # trips_7d
    desired["spec"]["expectations"][0]["feature"] = "trips_1d"

    result = plan([desired, eta_model()], [as_live(trip_stats()), as_live(eta_model())])

    (breaking,) = result.breaking
    assert (breaking.ref, breaking.consumer) == (VIEW, SERVICE)
    assert str(breaking) == (
        "FeatureView rides/driver-trip-stats: feature trips_7d is removed, but "
        "FeatureService rides/eta-model uses it"
    )


def test_removing_a_feature_a_live_service_takes_with_all_features_is_breaking() -> None:
    desired = trip_stats()
    del desired["spec"]["aggregations"][0]  # trips_30m
    consumer = eta_model(featureView="driver-trip-stats")  # every feature of the view

    # Not in DIR and not pruned: the live service stays as it is.
    result = plan([desired], [as_live(trip_stats()), as_live(consumer)], prune=False)

    (breaking,) = result.breaking
    assert breaking.consumer == SERVICE
    assert "feature trips_30m is removed" in breaking.reason
    assert "it takes all of the view's features" in breaking.reason


def test_retyping_a_feature_a_service_uses_is_breaking() -> None:
    desired = driver_profile()
    desired["spec"]["features"][0]["type"] = "string"  # rating

    result = plan([desired, eta_model()], [as_live(driver_profile()), as_live(eta_model())])

    (breaking,) = result.breaking
    assert (breaking.ref, breaking.consumer) == (PROFILE, SERVICE)
    assert "feature rating changes type from float64 to string" in breaking.reason


def test_a_service_that_pins_a_version_is_not_broken_by_an_edit_of_the_view() -> None:
    desired = trip_stats()
    del desired["spec"]["aggregations"][0]  # trips_30m
    pinned = eta_model(featureView="driver-trip-stats", features=["trips_30m"], version=1)

    result = plan([desired], [as_live(trip_stats()), as_live(pinned)], prune=False)

    assert result.breaking == ()


def test_a_consumer_in_another_namespace_is_found() -> None:
    shared = driver_profile()
    shared["spec"]["sharedWith"] = ["ranking"]
    desired = copy.deepcopy(shared)
    del desired["spec"]["features"][1]  # vehicle_type
    ranker = driver_ranker(features=["vehicle_type"])

    result = plan([desired], [as_live(shared), as_live(ranker)])

    (breaking,) = result.breaking
    assert breaking.consumer == ref("FeatureService", "driver-ranker", "ranking")


def test_no_longer_sharing_a_view_a_service_uses_is_breaking() -> None:
    shared = driver_profile()
    shared["spec"]["sharedWith"] = ["ranking"]

    result = plan([driver_profile()], [as_live(shared), as_live(driver_ranker())])

    (breaking,) = result.breaking
    assert breaking.consumer == ref("FeatureService", "driver-ranker", "ranking")
    assert "no longer shared with namespace ranking" in breaking.reason


def test_a_service_changed_in_the_same_apply_to_stop_using_a_feature_is_not_broken() -> None:
    desired = trip_stats()
    del desired["spec"]["aggregations"][2]  # trips_7d
    del desired["spec"]["expectations"]
    service = eta_model(featureView="driver-trip-stats", features=["trips_30m", "trips_1d"])
    service["spec"]["transformations"][0]["expression"] = "trip_distance_km / (trips_1d + 1)"

    result = plan([desired, service], [as_live(trip_stats()), as_live(eta_model())])

    assert actions(result) == {VIEW: diff.Action.CHANGE, SERVICE: diff.Action.CHANGE}
    assert not result.breaking


def test_removing_a_feature_no_service_uses_is_not_breaking() -> None:
    desired = trip_stats()
    del desired["spec"]["aggregations"][1]  # trips_1d: eta-model takes trips_30m and trips_7d

    result = plan([desired, eta_model()], [as_live(trip_stats()), as_live(eta_model())])

    assert actions(result)[VIEW] is diff.Action.CHANGE
    assert not result.breaking


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(MATERIALIZED, id="last-window"),
        pytest.param({"conditions": [{"type": "Materialized", "status": "True"}]}, id="condition"),
    ],
)
def test_changing_an_entity_key_of_a_materialized_view_is_breaking(status: dict[str, Any]) -> None:
    desired = trip_stats()
    desired["spec"]["entities"][0]["type"] = "string"

    result = plan([desired], [as_live(trip_stats(), status)])

    (breaking,) = result.breaking
    assert (breaking.ref, breaking.consumer) == (VIEW, None)
    assert "entity keys change from driver_id (int64) to driver_id (string)" in breaking.reason
    assert "it has been materialized" in breaking.reason


def test_adding_an_entity_key_to_a_materialized_view_is_breaking_and_names_its_users() -> None:
    desired = trip_stats()
    desired["spec"]["entities"].append({"name": "city_id", "type": "string"})

    result = plan(
        [desired, eta_model()], [as_live(trip_stats(), MATERIALIZED), as_live(eta_model())]
    )

    (breaking,) = result.breaking
    assert "to city_id (string), driver_id (int64)" in breaking.reason
    assert "its last window ends 2026-03-01T10:00:00Z" in breaking.reason
    assert "and FeatureService rides/eta-model uses it:" in breaking.reason


def test_changing_an_entity_key_of_a_view_never_materialized_is_not_breaking() -> None:
    desired = trip_stats()
    desired["spec"]["entities"][0]["name"] = "courier_id"
    not_yet = {"conditions": [{"type": "Materialized", "status": "False", "reason": "Pending"}]}

    result = plan([desired], [as_live(trip_stats(), not_yet)])

    assert actions(result) == {VIEW: diff.Action.CHANGE}
    assert not result.breaking


def test_deleting_a_view_a_remaining_service_references_is_breaking() -> None:
    live = [as_live(trip_stats()), as_live(driver_profile()), as_live(eta_model())]

    result = plan([trip_stats(), eta_model()], live)

    assert actions(result)[PROFILE] is diff.Action.DELETE
    (breaking,) = result.breaking
    assert str(breaking) == (
        "FeatureView rides/driver-profile: it is deleted, but FeatureService rides/eta-model, "
        "which stays, references it: the service can no longer serve its features"
    )


def test_deleting_a_view_with_its_only_service_is_not_breaking() -> None:
    live = [as_live(trip_stats()), as_live(driver_profile()), as_live(eta_model())]

    result = plan([trip_stats()], live)

    assert actions(result)[PROFILE] is diff.Action.DELETE
    assert actions(result)[SERVICE] is diff.Action.DELETE
    assert not result.breaking


def test_without_prune_a_view_missing_from_dir_breaks_nothing() -> None:
    live = [as_live(trip_stats()), as_live(driver_profile()), as_live(eta_model())]

    result = plan([trip_stats(), eta_model()], live, prune=False)

    assert PROFILE not in actions(result)
    assert not result.breaking


# --- output ------------------------------------------------------------------------


def breaking_plan() -> diff.Plan:
    desired = trip_stats()
    desired["spec"]["ttl"] = "2d"
    del desired["spec"]["aggregations"][2]  # trips_7d, used by eta-model
    del desired["spec"]["expectations"]
    desired["spec"]["aggregations"].append(
        {"name": "fare_mean_1d", "column": "fare", "function": "mean", "window": "1d"}
    )
    return plan(
        [desired, eta_model()],
        [as_live(trip_stats()), as_live(driver_profile()), as_live(eta_model())],
    )


def test_text_output_reads_like_kubectl_diff() -> None:
    text = diff.render_text(breaking_plan())

    assert text == (
        "- FeatureView rides/driver-profile (delete)\n"
        "~ FeatureView rides/driver-trip-stats (change)\n"
        "    spec.aggregations[2] (fare_mean_1d): added\n"
        "    spec.aggregations[2] (trips_7d): removed\n"
        "    spec.ttl: 1d -> 2d\n"
        "    spec.expectations: removed\n"
        "\n"
        "! breaking: FeatureView rides/driver-profile: it is deleted, but FeatureService "
        "rides/eta-model, which stays, references it: the service can no longer serve its "
        "features\n"
        "! breaking: FeatureView rides/driver-trip-stats: feature trips_7d is removed, but "
        "FeatureService rides/eta-model uses it\n"
        "\n"
        "Plan: 0 to create, 1 to change, 1 to delete, 1 unchanged; 2 breaking changes.\n"
    )


def test_text_output_of_a_created_object_and_quoted_values() -> None:
    desired = trip_stats()
    desired["spec"]["materialization"] = {"schedule": "*/10 * * * *"}
    desired["spec"]["transformation"] = {"sql": "SELECT *\nFROM source\nWHERE fare > 0"}
    live = as_live(trip_stats())
    live["spec"]["transformation"] = {"sql": "SELECT *\nFROM source"}

    text = diff.render_text(plan([desired, driver_profile()], [live]))

    assert text == (
        "+ FeatureView rides/driver-profile (create)\n"
        "~ FeatureView rides/driver-trip-stats (change)\n"
        "    spec.transformation.sql: changed\n"
        "       FROM source\n"
        "      +WHERE fare > 0\n"
        '    spec.materialization.schedule: @hourly -> "*/10 * * * *"\n'
        "\n"
        "Plan: 1 to create, 1 to change, 0 to delete, 0 unchanged; 0 breaking changes.\n"
    )


def test_text_output_of_no_changes_is_the_summary_alone() -> None:
    result = plan([trip_stats()], [as_live(trip_stats())])

    assert diff.render_text(result) == (
        "Plan: 0 to create, 0 to change, 0 to delete, 1 unchanged; 0 breaking changes.\n"
    )


def test_json_output_holds_the_same_data() -> None:
    original = breaking_plan().to_json()
    data: Any = json.loads(json.dumps(original))

    assert data == original
    assert data["namespaces"] == [NS]
    assert data["prune"] is True
    assert data["summary"] == {
        "create": 0,
        "change": 1,
        "unchanged": 1,
        "delete": 1,
        "breaking": 2,
    }
    changes = {c["name"]: c for c in data["changes"]}
    assert changes["driver-trip-stats"]["action"] == "change"
    assert {"path": "spec.ttl", "item": None, "kind": "changed", "old": "1d", "new": "2d"} in (
        changes["driver-trip-stats"]["fields"]
    )
    assert data["breaking"][1] == {
        "object": {"kind": "FeatureView", "namespace": NS, "name": "driver-trip-stats"},
        "consumer": {"kind": "FeatureService", "namespace": NS, "name": "eta-model"},
        "reason": "feature trips_7d is removed, but FeatureService rides/eta-model uses it",
        "message": "FeatureView rides/driver-trip-stats: feature trips_7d is removed, but "
        "FeatureService rides/eta-model uses it",
    }


# --- namespaces and misuse ---------------------------------------------------------


def test_resolve_namespace_fills_in_only_a_missing_namespace() -> None:
    bare = parse(trip_stats(namespace=None))
    placed = parse(trip_stats(namespace="dispatch"))

    assert diff.resolve_namespace(bare, "rides").metadata.namespace == "rides"
    assert diff.resolve_namespace(placed, "rides").metadata.namespace == "dispatch"
    assert bare.metadata.namespace is None


def test_an_object_without_a_namespace_is_refused() -> None:
    with pytest.raises(ValueError, match="resolve_namespace"):
        diff.plan_apply([parse(trip_stats(namespace=None))], [])


def test_an_object_desired_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="driver-trip-stats appears twice"):
        plan([trip_stats(), trip_stats()], [])


def test_refs_print_as_kind_namespace_name() -> None:
    assert str(diff.ObjectRef.of(parse(eta_model()))) == "FeatureService rides/eta-model"
    assert isinstance(parse(eta_model()), v1alpha1.FeatureService)
