"""The real Kubeflow Spark Operator on the local platform's node runs the
SparkApplications featurekube's operator renders, as driver and executor pods.

The module runs on the test run's platform with a node (``node_platform`` in
tests/conftest.py), which builds the images and installs the operator as
``featurekube dev up --node`` does.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from featurekube._platform import node_config, processes, spark_operator
from featurekube._platform import platform as local
from featurekube.online import layout
from featurekube.spec import v1alpha1
from featurekube_operator import desired, jobspec, naming
from featurekube_operator.credentials import Credentials
from featurekube_operator.settings import OperatorSettings
from featurekube_operator.windows import Window
from support import example_data_generator

# Building the images cold takes most of this; a run with them cached takes minutes.
pytestmark = pytest.mark.timeout(3000)

REPO = Path(__file__).resolve().parents[2]
SPARK_SERVICE_ACCOUNT = OperatorSettings().spark_service_account
GROUP, VERSION, PLURAL = "sparkoperator.k8s.io", "v1beta2", "sparkapplications"
ENDED = ("COMPLETED", "FAILED", "SUBMISSION_FAILED")
DRIVER_WAIT_SECONDS = 600
RUN_WAIT_SECONDS = 900
WINDOW = Window(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
# A trivial PySpark job: a range counted on the executors. It lives in the view's job
# ConfigMap, which only the operator's webhook mounts into the driver, and it checks
# the other pod settings only the webhook applies (env list, security context).
COUNT_SCRIPT = """\
import os, sys
from pyspark.sql import SparkSession
assert os.environ.get("AWS_REGION"), "the SparkApplication's env list is missing"
assert os.getuid() != 0, "the driver runs as root"
assert "--spec" in sys.argv, sys.argv
spark = SparkSession.builder.getOrCreate()
executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
print(f"featurekube-count={spark.range(0, 100000, numPartitions=4).count()}")
print(f"featurekube-executors={executors}")
spark.stop()
"""
VIEW_DOC: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "trip-counts", "generation": 1},
    "spec": {
        "owner": "platform",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube/raw/trips/"}},
        "aggregations": [
            {"name": "trips_1d", "column": "trip_id", "function": "count", "window": "1d"}
        ],
        "aggregationInterval": "1h",
    },
}


@pytest.fixture(scope="module")
def platform(node_platform: local.LocalPlatform) -> local.LocalPlatform:
    """The run's platform with a node, without the local runtime: the real operator
    runs the SparkApplications, and nothing else may."""
    return node_platform


@pytest.fixture(scope="module")
def api(platform: local.LocalPlatform) -> Iterator[Any]:
    import kubernetes.config

    found = platform.endpoints()
    assert found is not None and found.node == node_config.NODE_NAME
    client = kubernetes.config.new_client_from_config(config_file=str(found.kubeconfig))
    with client:
        yield client


@pytest.fixture(scope="module")
def installed(platform: local.LocalPlatform, api: Any) -> None:
    """The Spark Operator installed and ready by the platform's start, with the Spark
    image (the drivers' and executors') loaded."""
    import kubernetes.client

    found = platform.endpoints()
    assert found is not None and found.spark_operator == spark_operator.VERSION
    apps = kubernetes.client.AppsV1Api(api)
    for name in (spark_operator.WEBHOOK, spark_operator.CONTROLLER):
        deployment = apps.read_namespaced_deployment(name, spark_operator.NAMESPACE)
        assert deployment.status.ready_replicas == 1, deployment.status


def _apply(api: Any, body: dict[str, Any]) -> None:
    import kubernetes.dynamic

    client = kubernetes.dynamic.DynamicClient(api)
    resource = client.resources.get(api_version=body["apiVersion"], kind=body["kind"])
    resource.create(body=body, namespace=body["metadata"].get("namespace"))


def _pods(api: Any, namespace: str, role: str) -> list[Any]:
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(api)
    found: list[Any] = core.list_namespaced_pod(
        namespace, label_selector=f"spark-role={role}"
    ).items
    return found


@dataclass
class Run:
    """What the operator made of one SparkApplication."""

    state: str
    status: dict[str, Any]
    driver: Any
    driver_log: str
    executors: set[str]
    to_driver_running: float
    to_done: float


def _run(api: Any, app: dict[str, Any]) -> Run:
    """Create ``app`` and follow it to its end: its state, its driver pod and log, the
    executor pods seen on the way, and how long it took."""
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    namespace, name = app["metadata"]["namespace"], app["metadata"]["name"]
    created = time.monotonic()
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, app)

    def status() -> dict[str, Any]:
        got = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        found: dict[str, Any] = got.get("status") or {}
        return found

    def state() -> str:
        found: str = status().get("applicationState", {}).get("state", "")
        return found

    def driver_running() -> bool:
        return any(p.status.phase == "Running" for p in _pods(api, namespace, "driver"))

    processes.wait_until(
        lambda: driver_running() or state() in ENDED, DRIVER_WAIT_SECONDS, interval=0.5
    )
    to_driver = time.monotonic() - created
    executors: set[str] = set()

    def ended() -> bool:
        executors.update(p.metadata.name for p in _pods(api, namespace, "executor"))
        return state() in ENDED

    processes.wait_until(ended, RUN_WAIT_SECONDS, interval=1)
    to_done = time.monotonic() - created
    drivers = _pods(api, namespace, "driver")
    log = core.read_namespaced_pod_log(drivers[0].metadata.name, namespace) if drivers else ""
    run = Run(
        state(), status(), drivers[0] if drivers else None, log, executors, to_driver, to_done
    )
    print(
        f"{name}: create -> driver Running {run.to_driver_running:.1f} s, "
        f"-> {run.state} {run.to_done:.1f} s, {len(executors)} executor pod(s)"
    )
    return run


@pytest.fixture
def namespace(api: Any) -> Iterator[str]:
    """A namespace of the test's own, with the drivers' ServiceAccount and its rights."""
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(api)
    name = f"spark-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        for body in spark_operator.spark_job_access(name, SPARK_SERVICE_ACCOUNT):
            _apply(api, body)
        yield name
    finally:
        core.delete_namespace(name)


def _owner(api: Any, namespace: str) -> dict[str, Any]:
    """A real object as the runs' owner, so that the garbage collector keeps them."""
    import kubernetes.client

    made = kubernetes.client.CoreV1Api(api).create_namespaced_config_map(
        namespace, {"metadata": {"name": "view-owner"}}
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": made.metadata.name, "uid": made.metadata.uid},
    }


def _job_spec(
    api: Any,
    view: v1alpha1.FeatureView,
    settings: OperatorSettings,
    owner: dict[str, Any],
    extra: dict[str, str] | None = None,
) -> None:
    """The version's job ConfigMap, as the operator renders it (plus ``extra`` keys)."""
    snapshot = desired.render_snapshot(view, 1, settings, owner)
    frozen = jobspec.read_snapshot_spec(snapshot)
    assert frozen is not None
    body = jobspec.render_job_spec(view, 1, frozen, settings, owner)
    body["data"].update(extra or {})
    _apply(api, body)


def test_the_operator_runs_a_rendered_spark_application_with_driver_and_executor_pods(
    installed: None, api: Any, namespace: str
) -> None:
    owner = _owner(api, namespace)
    view = v1alpha1.FeatureView.model_validate(
        {**VIEW_DOC, "metadata": {**VIEW_DOC["metadata"], "namespace": namespace}}
    )
    settings = OperatorSettings(
        spark_main_file=f"local://{desired.SPEC_MOUNT}/count.py",
        aws_endpoint_url=f"http://{node_config.HOST_IP}:4566",
    )
    _job_spec(api, view, settings, owner, {"count.py": COUNT_SCRIPT})
    app = desired.render_spark_application(view, 1, WINDOW, settings, owner)

    run = _run(api, app)

    assert run.state == "COMPLETED", f"{run.status}\n{run.driver_log[-4000:]}"
    assert "featurekube-count=100000" in run.driver_log
    assert run.executors, "no executor pod ran"
    assert "featurekube-executors=0" not in run.driver_log
    # What only the webhook applies reached the driver pod as rendered.
    pod = run.driver
    assert pod.spec.service_account_name == SPARK_SERVICE_ACCOUNT
    assert pod.spec.security_context.run_as_non_root is True
    container = pod.spec.containers[0]
    assert container.security_context.capabilities.drop == ["ALL"]
    env = {e.name: e.value for e in container.env}
    assert env["AWS_REGION"] == settings.aws_region
    assert pod.metadata.labels[naming.LABEL_FEATURE_VIEW] == "trip-counts"
    assert desired.SPEC_MOUNT in {m.mount_path for m in container.volume_mounts}


def test_featurekubes_job_materializes_a_window_through_the_operator_into_s3_and_dynamodb(
    installed: None, api: Any, namespace: str, platform: local.LocalPlatform
) -> None:
    import boto3
    import deltalake
    import kubernetes.client
    import pyarrow.fs
    import pyarrow.parquet as pq

    found = platform.endpoints()
    assert found is not None
    aws = {
        "endpoint_url": found.aws_endpoint_url,
        "region_name": found.region,
        "aws_access_key_id": local.AWS_ACCESS_KEY_ID,
        "aws_secret_access_key": local.AWS_SECRET_ACCESS_KEY,
    }
    kubernetes.client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "featurekube-aws"},
            "stringData": {
                "AWS_ACCESS_KEY_ID": local.AWS_ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": local.AWS_SECRET_ACCESS_KEY,
            },
        },
    )
    gen = example_data_generator()
    drivers = gen.make_drivers(gen.Settings(days=2, drivers=8, riders=20))
    s3 = pyarrow.fs.S3FileSystem(
        endpoint_override=found.aws_endpoint_url,
        access_key=local.AWS_ACCESS_KEY_ID,
        secret_key=local.AWS_SECRET_ACCESS_KEY,
        region=found.region,
    )
    pq.write_table(drivers, f"featurekube/{namespace}/raw/drivers/part-0.parquet", filesystem=s3)
    body = yaml.safe_load((REPO / "examples" / "driver-profile.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    body["spec"]["source"]["batch"]["path"] = f"s3://featurekube/{namespace}/raw/drivers/"
    # On Spark whatever its size: `auto` would compute so small a window in the driver.
    body["spec"].setdefault("materialization", {})["engine"] = "spark"
    view = v1alpha1.FeatureView.model_validate(body)
    settings = OperatorSettings(
        offline_uri=f"s3://featurekube/{namespace}/offline",
        table_prefix=f"fk-{namespace}.",
        aws_region=found.region,
        aws_endpoint_url=found.aws_endpoint_url,
    )
    table = naming.online_table(settings, namespace, view.metadata.name, 1)
    dynamodb = boto3.client("dynamodb", **aws)
    dynamodb.create_table(**layout.table_definition(table, {}))
    dynamodb.get_waiter("table_exists").wait(TableName=table)
    owner = _owner(api, namespace)
    _job_spec(api, view, settings, owner)
    app = desired.render_spark_application(
        view, 1, WINDOW, settings, owner, access=Credentials(secret="featurekube-aws")
    )

    run = _run(api, app)

    assert run.state == "COMPLETED", f"{run.status}\n{run.driver_log[-6000:]}"
    assert run.executors, "no executor pod ran"
    offline = deltalake.DeltaTable(
        naming.offline_uri(settings, namespace, view.metadata.name, 1),
        storage_options={
            "AWS_ENDPOINT_URL": found.aws_endpoint_url,
            "AWS_REGION": found.region,
            "AWS_ACCESS_KEY_ID": local.AWS_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": local.AWS_SECRET_ACCESS_KEY,
            "AWS_ALLOW_HTTP": "true",
        },
    ).to_pyarrow_table()
    in_window = {
        r["driver_id"]
        for r in drivers.to_pylist()
        if not r["is_test_account"] and WINDOW.start <= r["event_timestamp"] < WINDOW.end
    }
    assert set(offline.column("driver_id").to_pylist()) == in_window
    items = dynamodb.scan(TableName=table)["Items"]
    entities = {i[layout.ENTITY_KEY]["S"] for i in items} - {
        i[layout.ENTITY_KEY]["S"] for i in items if i[layout.ENTITY_KEY]["S"].startswith("#")
    }
    assert entities == {f"driver_id:i:{d}" for d in in_window}
