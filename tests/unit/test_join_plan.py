"""Planning point-in-time joins: references, checks of the entity rows, time bounds."""

from __future__ import annotations

import datetime as dt

import pytest

from featurekube.joins import plan
from featurekube.spec import v1alpha1

UTC = dt.UTC


def _view(
    name: str,
    features: dict[str, str],
    *,
    namespace: str = "rides",
    entities: dict[str, str] | None = None,
    ttl: str | None = None,
    offline: bool = True,
) -> v1alpha1.FeatureView:
    spec: dict[str, object] = {
        "owner": "team",
        "entities": [
            {"name": n, "type": t} for n, t in (entities or {"driver_id": "int64"}).items()
        ],
        "source": {"batch": {"path": "s3://raw/data/"}},
        "features": [{"name": n, "type": t} for n, t in features.items()],
        "materialization": {"offline": offline},
    }
    if ttl:
        spec["ttl"] = ttl
    return v1alpha1.FeatureView.model_validate(
        {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
    )


PROFILE = _view("driver-profile", {"rating": "float64", "vehicle_type": "string"}, ttl="3d")
STATS = _view("driver-stats", {"trips_7d": "int64", "rating": "float64"})
RIDERS = _view(
    "rider-features", {"lifetime_trips": "int64"}, entities={"rider_id": "int64"}, ttl="1d"
)
SHARED = _view("zones", {"demand": "float64"}, namespace="geo", entities={"zone": "string"})
VIEWS = {(v.metadata.namespace or "", v.metadata.name): v for v in (PROFILE, STATS, RIDERS, SHARED)}
TABLES = {key: f"s3://lake/offline/{key[0]}/{key[1]}/v1" for key in VIEWS}


def _frame(
    columns: dict[str, plan.ColumnKind],
    earliest: dt.datetime | None = dt.datetime(2026, 1, 10, 12, tzinfo=UTC),
    latest: dt.datetime | None = dt.datetime(2026, 1, 12, 8, tzinfo=UTC),
) -> plan.EntityFrame:
    return plan.EntityFrame(
        tuple(plan.EntityColumn(n, k, k) for n, k in columns.items()), earliest, latest
    )


ENTITY = _frame({"driver_id": "integer", "rider_id": "integer", "event_timestamp": "timestamp"})


def _service(**spec: object) -> v1alpha1.FeatureService:
    return v1alpha1.FeatureService.model_validate(
        {"metadata": {"name": "eta-model", "namespace": "rides"}, "spec": {"owner": "ml", **spec}}
    )


# --- references ---------------------------------------------------------------------


def test_a_reference_names_a_view_and_a_feature_and_maybe_a_namespace() -> None:
    assert plan.FeatureReference.parse("geo/zones:demand") == plan.FeatureReference(
        "geo", "zones", "demand"
    )
    assert str(plan.FeatureReference.parse("zones:demand")) == "zones:demand"


@pytest.mark.parametrize("text", ["rating", "driver-profile:", ":rating", "/v:f", "a:b:c"])
def test_a_malformed_reference_says_how_to_write_one(text: str) -> None:
    with pytest.raises(plan.FeatureReferenceError, match="FEATURE_VIEW:FEATURE"):
        plan.FeatureReference.parse(text)


def test_references_group_by_view_in_order_of_first_mention() -> None:
    selections = plan.resolve_references(
        [
            "driver-stats:trips_7d",
            "driver-profile:rating",
            "driver-stats:rating",
            "geo/zones:demand",
        ],
        VIEWS,
        "rides",
    )

    assert [(s.key, s.features) for s in selections] == [
        (("rides", "driver-stats"), ("trips_7d", "rating")),
        (("rides", "driver-profile"), ("rating",)),
        (("geo", "zones"), ("demand",)),
    ]


def test_an_unknown_view_is_named_with_a_suggestion() -> None:
    with pytest.raises(plan.FeatureViewNotFoundError, match="did you mean 'driver-profile'"):
        plan.resolve_references(["driver-profil:rating"], VIEWS, "rides")


def test_an_unknown_feature_lists_the_views_features() -> None:
    with pytest.raises(plan.FeatureNotFoundError, match=r"did you mean 'rating'.*vehicle_type"):
        plan.resolve_references(["driver-profile:ratings"], VIEWS, "rides")


def test_a_feature_asked_for_twice_is_refused() -> None:
    with pytest.raises(plan.FeatureReferenceError, match="asked for twice"):
        plan.resolve_references(
            ["driver-profile:rating", "rides/driver-profile:rating"], VIEWS, "rides"
        )


def test_no_features_at_all_is_refused() -> None:
    with pytest.raises(plan.FeatureReferenceError, match="no features asked for"):
        plan.resolve_references([], VIEWS, "rides")


def test_a_service_takes_all_features_when_it_names_none_and_keeps_prefixes() -> None:
    service = _service(
        features=[
            {"featureView": "driver-profile", "prefix": "driver_"},
            {"featureView": "zones", "namespace": "geo", "features": ["demand"]},
        ]
    )

    selections = plan.resolve_service(service, VIEWS)

    assert [(s.key, s.features, s.prefix) for s in selections] == [
        (("rides", "driver-profile"), ("rating", "vehicle_type"), "driver_"),
        (("geo", "zones"), ("demand",), ""),
    ]


def test_a_service_naming_an_unknown_feature_points_at_its_field() -> None:
    service = _service(features=[{"featureView": "driver-profile", "features": ["speed"]}])

    with pytest.raises(plan.FeatureNotFoundError, match=r"spec.features\[0\].*no feature 'speed'"):
        plan.resolve_service(service, VIEWS)


# --- the plan -----------------------------------------------------------------------


def test_the_plan_reads_only_the_needed_columns_and_event_times() -> None:
    selections = plan.resolve_references(
        ["driver-profile:rating", "driver-stats:trips_7d"], VIEWS, "rides"
    )

    joined = plan.plan_join(selections, ENTITY, TABLES)

    profile, stats = joined.views
    assert profile.table_uri == "s3://lake/offline/rides/driver-profile/v1"
    assert profile.columns == ("driver_id", "event_timestamp", "created_timestamp", "rating")
    assert profile.ttl == dt.timedelta(days=3)
    # With a TTL, nothing older than the earliest T minus the TTL can be joined.
    assert profile.earliest == dt.datetime(2026, 1, 7, 12, tzinfo=UTC)
    assert profile.latest == dt.datetime(2026, 1, 12, 8, tzinfo=UTC)
    assert profile.partitions == (dt.date(2026, 1, 7), dt.date(2026, 1, 12))
    # Without one, any older row may still be the latest.
    assert stats.ttl is None
    assert stats.partitions == (None, dt.date(2026, 1, 12))
    assert joined.output_columns == (
        "driver_id",
        "rider_id",
        "event_timestamp",
        "rating",
        "trips_7d",
    )


def test_entity_rows_without_times_need_no_rows_at_all() -> None:
    selections = plan.resolve_references(["driver-profile:rating"], VIEWS, "rides")
    empty = _frame({"driver_id": "integer", "event_timestamp": "timestamp"}, None, None)

    (view,) = plan.plan_join(selections, empty, TABLES).views

    assert view.latest is None and view.earliest is None


def test_a_missing_join_key_is_named_with_the_view_that_needs_it() -> None:
    selections = plan.resolve_references(["rider-features:lifetime_trips"], VIEWS, "rides")
    entity = _frame({"driver_id": "integer", "event_timestamp": "timestamp"})

    with pytest.raises(plan.EntityFrameError, match=r"no column 'rider_id'.*rides/rider-features"):
        plan.plan_join(selections, entity, TABLES)


def test_a_join_key_of_the_wrong_type_says_how_to_convert_it() -> None:
    selections = plan.resolve_references(["driver-profile:rating"], VIEWS, "rides")
    entity = _frame({"driver_id": "string", "event_timestamp": "timestamp"})

    with pytest.raises(plan.EntityFrameError, match=r"is string.*as int64.*astype\('int64'\)"):
        plan.plan_join(selections, entity, TABLES)


def test_a_string_key_given_as_numbers_is_refused_too() -> None:
    selections = plan.resolve_references(["geo/zones:demand"], VIEWS, "rides")
    entity = _frame({"zone": "integer", "event_timestamp": "timestamp"})

    with pytest.raises(plan.EntityFrameError, match=r"as string.*astype\(str\)"):
        plan.plan_join(selections, entity, TABLES)


def test_a_missing_timestamp_column_suggests_naming_another() -> None:
    selections = plan.resolve_references(["driver-profile:rating"], VIEWS, "rides")
    entity = _frame({"driver_id": "integer", "ts": "timestamp"})

    with pytest.raises(plan.EntityFrameError, match="timestamp_column="):
        plan.plan_join(selections, entity, TABLES)

    assert (
        plan.plan_join(selections, entity, TABLES, timestamp_column="ts").timestamp_column == "ts"
    )


def test_a_timestamp_column_that_is_not_one_says_how_to_convert_it() -> None:
    selections = plan.resolve_references(["driver-profile:rating"], VIEWS, "rides")
    entity = _frame({"driver_id": "integer", "event_timestamp": "string"})

    with pytest.raises(plan.EntityFrameError, match=r"pd\.to_datetime"):
        plan.plan_join(selections, entity, TABLES)


def test_a_feature_may_not_hide_an_entity_column() -> None:
    selections = plan.resolve_references(["driver-profile:rating"], VIEWS, "rides")
    entity = _frame({"driver_id": "integer", "event_timestamp": "timestamp", "rating": "other"})

    with pytest.raises(plan.FeatureReferenceError, match=r"'rating'.*entity column 'rating'"):
        plan.plan_join(selections, entity, TABLES)


def test_two_features_of_one_name_need_a_prefix() -> None:
    selections = plan.resolve_references(
        ["driver-profile:rating", "driver-stats:rating"], VIEWS, "rides"
    )

    with pytest.raises(plan.FeatureReferenceError, match="prefix"):
        plan.plan_join(selections, ENTITY, TABLES)


def test_prefixes_tell_equal_names_apart() -> None:
    service = _service(
        features=[
            {"featureView": "driver-profile", "features": ["rating"], "prefix": "profile_"},
            {"featureView": "driver-stats", "features": ["rating"], "prefix": "stats_"},
        ]
    )

    joined = plan.plan_join(plan.resolve_service(service, VIEWS), ENTITY, TABLES)

    assert [f.output for f in joined.feature_columns] == ["profile_rating", "stats_rating"]
    assert [f.name for f in joined.feature_columns] == ["rating", "rating"]


def test_a_view_without_offline_history_cannot_be_pulled() -> None:
    live = _view("live", {"speed": "float64"}, offline=False)
    selections = plan.resolve_references(["live:speed"], {("rides", "live"): live}, "rides")

    with pytest.raises(plan.OfflineStoreError, match=r"materialization\.offline is false"):
        plan.plan_join(selections, ENTITY, {("rides", "live"): "s3://x/y"})


def test_a_view_without_a_table_is_reported() -> None:
    selections = plan.resolve_references(["driver-profile:rating"], VIEWS, "rides")

    with pytest.raises(plan.OfflineStoreError, match="not been materialized"):
        plan.plan_join(selections, ENTITY, {})


def test_transformations_need_their_request_fields_and_are_compiled_by_ondemand() -> None:
    service = _service(
        features=[{"featureView": "driver-profile", "features": ["rating"]}],
        requestData=[{"name": "distance_km", "type": "float64"}],
        transformations=[
            {"name": "score", "type": "float64", "expression": "distance_km * rating"}
        ],
    )
    selections = plan.resolve_service(service, VIEWS)
    request = service.spec.request_data or ()
    transformations = service.spec.transformations or ()

    with pytest.raises(plan.EntityFrameError, match="'distance_km', request data"):
        plan.plan_join(
            selections, ENTITY, TABLES, request_fields=request, transformations=transformations
        )

    entity = _frame(
        {"driver_id": "integer", "event_timestamp": "timestamp", "distance_km": "other"}
    )
    joined = plan.plan_join(
        selections, entity, TABLES, request_fields=request, transformations=transformations
    )
    assert joined.output_columns[-2:] == ("rating", "score")
    assert joined.transformation_inputs() == {"distance_km": "float64", "rating": "float64"}
    compiled = plan.compile_transformations(joined)
    assert compiled is not None and compiled.names == ("score",)


def test_a_plan_without_transformations_compiles_to_nothing() -> None:
    selections = plan.resolve_references(["driver-profile:rating"], VIEWS, "rides")

    assert plan.compile_transformations(plan.plan_join(selections, ENTITY, TABLES)) is None


def test_microseconds_since_the_epoch_are_utc() -> None:
    assert plan.utc_from_micros(-1) == dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


# --- versions -----------------------------------------------------------------------


def _versioned(serving: int, latest: int) -> v1alpha1.FeatureView:
    """driver-profile as edited for version ``latest``: rating retyped, trips added;
    ``serving`` still serves."""
    live = _view("driver-profile", {"rating": "string", "trips": "int64"})
    status = v1alpha1.FeatureViewStatus(version=serving, latest_version=latest)
    return live.model_copy(update={"status": status})


def _snapshot(version: int, features: dict[str, str]) -> dict[str, object]:
    spec = _view("driver-profile", features).spec.to_yaml_dict()
    uri = f"s3://lake/offline/rides/driver-profile/v{version}"
    return {"spec": spec, "resolved": {"version": version, "offlineUri": uri}}


SNAPSHOTS = {
    ("rides", "driver-profile", 1): _snapshot(1, {"rating": "float64"}),
    ("rides", "driver-profile", 2): _snapshot(2, {"rating": "string", "trips": "int64"}),
}


def test_a_pull_reads_the_serving_versions_types_and_table_while_a_new_one_backfills() -> None:
    views = {("rides", "driver-profile"): _versioned(1, 2)}

    (selection,) = plan.resolve_references(
        ["driver-profile:rating"], views, "rides", snapshots=SNAPSHOTS
    )
    joined = plan.plan_join((selection,), ENTITY, {})

    assert selection.version == 1
    assert selection.view.spec.feature_types() == {"rating": "float64"}
    assert selection.table_uri == "s3://lake/offline/rides/driver-profile/v1"
    assert [(f.name, f.type) for f in joined.views[0].features] == [("rating", "float64")]


def test_a_feature_only_the_backfilling_version_has_is_refused_naming_both_versions() -> None:
    views = {("rides", "driver-profile"): _versioned(1, 2)}

    with pytest.raises(plan.FeatureNotFoundError) as caught:
        plan.resolve_references(["driver-profile:trips"], views, "rides", snapshots=SNAPSHOTS)

    message = str(caught.value)
    assert "feature 'trips' of FeatureView rides/driver-profile arrives with version 2" in message
    assert "version 1 serves now and has rating" in message


def test_a_service_that_pins_a_version_reads_that_version() -> None:
    views = {("rides", "driver-profile"): _versioned(1, 2)}
    service = _service(features=[{"featureView": "driver-profile", "version": 2}])

    (selection,) = plan.resolve_service(service, views, snapshots=SNAPSHOTS)

    assert (selection.version, selection.features) == (2, ("rating", "trips"))
    assert selection.view.spec.feature_types()["rating"] == "string"
    assert selection.table_uri == "s3://lake/offline/rides/driver-profile/v2"


def test_a_pin_of_a_version_that_does_not_exist_is_refused() -> None:
    views = {("rides", "driver-profile"): _versioned(1, 2)}
    service = _service(features=[{"featureView": "driver-profile", "version": 7}])

    with pytest.raises(
        plan.FeatureReferenceError, match=r"has no version 7 \(its versions: 1, 2\)"
    ):
        plan.resolve_service(service, views, snapshots=SNAPSHOTS)


def test_a_serving_version_whose_schema_cannot_be_read_is_refused_not_guessed() -> None:
    views = {("rides", "driver-profile"): _versioned(1, 2)}

    with pytest.raises(plan.OfflineStoreError, match="ConfigMap rides/driver-profile-v1-spec"):
        plan.resolve_references(["driver-profile:rating"], views, "rides", snapshots={})


def test_without_a_backfill_the_live_spec_is_the_serving_versions() -> None:
    views = {("rides", "driver-profile"): _versioned(2, 2)}

    (selection,) = plan.resolve_references(["driver-profile:trips"], views, "rides", snapshots={})

    assert selection.version == 2 and selection.table_uri is None
