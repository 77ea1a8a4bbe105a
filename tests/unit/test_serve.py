"""`featurekube serve`: the plan it renders from YAML, the references it refuses, and
the rows an in-memory server starts with."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from featurekube import errors, serving_plan
from featurekube.cli import main as cli
from featurekube.cli import serve
from featurekube.spec import v1alpha1
from featurekube.store import FeatureStore
from featurekube_server import plan as server_plan
from featurekube_server.stores import memory, memory_data

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _examples() -> FeatureStore:
    return FeatureStore.from_directory(REPO / "examples")


def _plan(name: str = "eta-model") -> dict[str, object]:
    store = _examples()
    return serve.render_plan(
        store.list_feature_views("*"),
        store.get_feature_service(name, "rides"),
        "featurekube.",
        "s3://lake/offline",
    )


def test_the_plan_names_tables_as_materialize_does_and_the_server_accepts_it() -> None:
    rendered = _plan()

    parsed = server_plan.parse_plan(rendered)

    assert [v.online_table for v in parsed.feature_views] == [
        "featurekube.rides.driver-trip-stats.v1",
        "featurekube.rides.driver-profile.v1",
        "featurekube.rides.driver-location-live.v1",
    ]
    live = parsed.view("driver-location-live")
    assert live is not None and live.push is not None
    assert live.push.offline_uri == "s3://lake/offline/rides/driver-location-live/v1"


def test_print_plan_prints_it_as_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(
        ["serve", str(REPO / "examples"), "--feature-service", "rides/eta-model", "--print-plan"]
    )

    assert status == 0
    assert capsys.readouterr().out.startswith("featureService: eta-model\nnamespace: rides\n")


def test_a_directory_of_several_services_needs_one_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["serve", str(REPO / "examples"), "--print-plan"]) == 1

    assert capsys.readouterr().err == (
        f"featurekube: error: {REPO / 'examples'} holds 2 FeatureServices (rides/driver-ranking, "
        "rides/eta-model): choose one with --feature-service NAMESPACE/NAME\n"
    )


def test_a_reference_to_a_missing_view_or_feature_is_named() -> None:
    store = _examples()
    service = store.get_feature_service("eta-model", "rides")
    views = {
        (v.metadata.namespace or "default", v.metadata.name): v
        for v in store.list_feature_views("*")
        if v.metadata.name != "driver-profile"
    }

    with pytest.raises(errors.DefinitionsError) as raised:
        serving_plan.resolve_references(service, views, lambda ns, n: n)

    assert str(raised.value) == (
        "FeatureService rides/eta-model: spec.features[1]: FeatureView rides/driver-profile is "
        "not among the definitions: add its YAML to the directory, or fix the reference"
    )


def test_a_view_of_another_namespace_must_be_shared() -> None:
    store = _examples()
    body = store.get_feature_service("eta-model", "rides").model_dump(by_alias=True)
    body["metadata"]["namespace"] = "pricing"
    for ref in body["spec"]["features"]:
        ref["namespace"] = "rides"
    service = v1alpha1.FeatureService.model_validate(body)
    views = {
        (v.metadata.namespace or "default", v.metadata.name): v
        for v in store.list_feature_views("*")
    }

    with pytest.raises(errors.DefinitionsError, match="is not shared with namespace pricing"):
        serving_plan.resolve_references(service, views, lambda ns, n: n)


def test_rows_are_checked_and_relative_times_count_from_the_start() -> None:
    parsed = server_plan.parse_plan(_plan())
    documents = [
        {
            "featureView": "driver-trip-stats",
            "rows": [{"driver_id": 1001, "event_timestamp": "now-10m", "trips_30m": 3}],
        }
    ]

    rows = memory_data.parse_rows(documents, parsed, "rows.yaml", NOW)
    store = memory.MemoryStore()

    assert memory_data.fill(store, parsed, rows) == 1
    assert rows[0].event_time == NOW - dt.timedelta(minutes=10)
    assert rows[0].features["trips_30m"] == 3
    assert set(store.tables) == {v.online_table for v in parsed.feature_views}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"event_timestamp": "now"}, "rows.yaml: document 1: rows[0]: missing driver_id"),
        (
            {"driver_id": 1, "event_timestamp": "now", "trips_9m": 1},
            "rows.yaml: document 1: rows[0]: driver-trip-stats serves no feature trips_9m: ",
        ),
        (
            {"driver_id": 1, "event_timestamp": "yesterday"},
            "rows.yaml: document 1: rows[0]: event_timestamp: 'yesterday' is not an ISO 8601",
        ),
    ],
)
def test_a_bad_row_is_named_by_document_and_position(row: dict[str, object], message: str) -> None:
    parsed = server_plan.parse_plan(_plan())

    with pytest.raises(errors.ServingPlanError) as raised:
        memory_data.parse_rows(
            [{"featureView": "driver-trip-stats", "rows": [row]}], parsed, "rows.yaml", NOW
        )

    assert str(raised.value).startswith(message)
