"""Training pulls from a cluster read each view as the version they read has it: the
serving version's features and types while a newer one backfills, or the version a
FeatureService pins. Against the real API server and moto's S3, with the snapshots
the operator writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import deltalake
import kubernetes.client
import pandas as pd
import pyarrow as pa
import pytest

from featurekube.joins import plan
from featurekube.offline import layout
from featurekube.spec import v1alpha1
from featurekube.store import FeatureStore
from featurekube_operator import desired, naming
from featurekube_operator.settings import OperatorSettings

T0 = dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)
NAME = "driver-profile"
WRITE_OPTIONS = {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}


def _view(namespace: str, features: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "owner": "tests",
            "entities": [{"name": "driver_id", "type": "int64"}],
            "source": {"batch": {"path": "s3://raw/rows/"}},
            "features": [{"name": n, "type": t} for n, t in features.items()],
            "ttl": "7d",
        },
    }


def _write(uri: str, columns: dict[str, pa.Array]) -> None:
    time = pa.array([T0 - dt.timedelta(hours=1)], pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "driver_id": pa.array([4], pa.int64()),
            **columns,
            layout.EVENT_TIMESTAMP: time,
            layout.CREATED_TIMESTAMP: time,
            layout.INGESTION_TIMESTAMP: time,
            layout.EVENT_DATE: pa.array([T0.date()], pa.date32()),
        }
    )
    deltalake.write_deltalake(
        uri, table, partition_by=[layout.EVENT_DATE], storage_options=WRITE_OPTIONS
    )


@pytest.fixture
def backfilling(kube_api: kubernetes.client.ApiClient, namespace: str, s3_prefix: str) -> str:
    """driver-profile serving version 1 (rating float64) while version 2 (rating
    retyped to string, trips added) backfills, its snapshots as the operator writes
    them, and each version's Delta table holding one row."""
    settings = OperatorSettings(offline_uri=f"{s3_prefix}offline")
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    v1 = v1alpha1.FeatureView.model_validate(_view(namespace, {"rating": "float64"}))
    live = _view(namespace, {"rating": "string", "trips": "int64"})
    owner = custom.create_namespaced_custom_object(
        v1alpha1.GROUP, v1alpha1.VERSION, namespace, "featureviews", live
    )
    core = kubernetes.client.CoreV1Api(kube_api)
    for version, view in ((1, v1), (2, v1alpha1.FeatureView.model_validate(live))):
        core.create_namespaced_config_map(
            namespace, desired.render_snapshot(view, version, settings, owner)
        )
    _write(
        naming.offline_uri(settings, namespace, NAME, 1), {"rating": pa.array([4.5], pa.float64())}
    )
    _write(
        naming.offline_uri(settings, namespace, NAME, 2),
        {"rating": pa.array(["good"], pa.string()), "trips": pa.array([12], pa.int64())},
    )
    custom.patch_namespaced_custom_object_status(
        v1alpha1.GROUP,
        v1alpha1.VERSION,
        namespace,
        "featureviews",
        NAME,
        {
            "status": {
                "version": 1,
                "latestVersion": 2,
                "offlineUri": naming.offline_uri(settings, namespace, NAME, 1),
            }
        },
    )
    return namespace


ENTITIES = pd.DataFrame({"driver_id": [4], "event_timestamp": pd.to_datetime([T0], utc=True)})


def test_a_pull_reads_the_serving_versions_schema_while_a_new_version_backfills(
    backfilling: str,
) -> None:
    store = FeatureStore.from_cluster(backfilling)

    result = store.get_historical_features(ENTITIES, [f"{NAME}:rating"]).to_arrow()

    assert result.column("rating").type == pa.float64()
    assert result.column("rating").to_pylist() == [4.5]
    with pytest.raises(
        plan.FeatureNotFoundError, match=r"'trips' of FeatureView .* arrives with version 2"
    ):
        store.get_historical_features(ENTITIES, [f"{NAME}:trips"])


def test_a_service_that_pins_the_backfilling_version_pulls_its_table_and_types(
    backfilling: str, kube_api: kubernetes.client.ApiClient
) -> None:
    service = {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureService",
        "metadata": {"name": "eta-model", "namespace": backfilling},
        "spec": {"owner": "tests", "features": [{"featureView": NAME, "version": 2}]},
    }
    kubernetes.client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        v1alpha1.GROUP, v1alpha1.VERSION, backfilling, "featureservices", service
    )
    store = FeatureStore.from_cluster(backfilling)

    result = store.get_historical_features(ENTITIES, feature_service="eta-model").to_arrow()

    assert result.column("rating").to_pylist() == ["good"]
    assert result.column("trips").to_pylist() == [12]
