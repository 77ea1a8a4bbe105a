"""The real Kubeflow Spark Operator on the local platform's node runs the
SparkApplications featurekube's operator renders, as driver and executor pods.

The module starts one platform with a node and without the local runtime (a machine
holds one node at a time, so while another run's node is up this module waits for it),
builds and loads the Spark image and the Spark Operator's (``hack/images/build.py spark
spark-operator``), installs the operator as the platform's add-on, and stops the
platform at the end.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from featurekube._platform import node_config, processes, spark_operator
from featurekube._platform import platform as local
from featurekube.spec import v1alpha1
from featurekube_operator import desired, jobspec, naming
from featurekube_operator.settings import OperatorSettings
from featurekube_operator.windows import Window

# Building the images cold takes most of this; a run with them cached takes minutes.
pytestmark = pytest.mark.timeout(3000)

FREE_NODE_WAIT_SECONDS = 300
REPO = Path(__file__).resolve().parents[2]
SPARK_SERVICE_ACCOUNT = OperatorSettings().spark_service_account
GROUP, VERSION, PLURAL = "sparkoperator.k8s.io", "v1beta2", "sparkapplications"
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
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local.LocalPlatform]:
    """A platform with a node, without the local runtime: the real operator runs the
    SparkApplications, and nothing else may."""
    processes.wait_until(
        lambda: not (Path("/sys/class/net") / node_config.HOST_LINK).exists(),
        FREE_NODE_WAIT_SECONDS,
        interval=2,
    )
    state_dir = tmp_path_factory.mktemp("spark-operator-platform")
    started = local.LocalPlatform(
        local.PlatformSettings(state_dir=state_dir, node=True, runtime=False)
    )
    started.start()
    try:
        yield started
    finally:
        started.stop(force=True)


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
    """The Spark image (the drivers' and executors') and the operator's built and
    loaded, and the operator installed and ready."""
    started = time.monotonic()
    built = subprocess.run(
        [sys.executable, str(REPO / "hack" / "images" / "build.py"), "spark", "spark-operator"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        timeout=2400,
    )
    archives = [Path(line) for line in built.stdout.split()]
    sizes = ", ".join(f"{a.name} {a.stat().st_size / 2**20:.0f} MiB" for a in archives)
    print(f"images ready in {time.monotonic() - started:.0f} s: {sizes}")
    started = time.monotonic()
    platform.load_images(archives)
    print(f"images loaded in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    kubectl = local.resolve_k8s_bin_dir(platform.settings) / "kubectl"
    spark_operator.install(
        kubectl, platform.layout.kubeconfig, platform.layout.root / "spark-operator.yaml"
    )
    print(f"operator installed and ready in {time.monotonic() - started:.1f} s")


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


def test_the_operator_runs_a_rendered_spark_application_with_driver_and_executor_pods(
    installed: None, api: Any
) -> None:
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    namespace = f"spark-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        for body in spark_operator.spark_job_access(namespace, SPARK_SERVICE_ACCOUNT):
            _apply(api, body)
        # A real object as the owner, so the garbage collector keeps what it owns.
        owner = core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "trip-counts-owner"}}
        )
        owner_body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": owner.metadata.name, "uid": owner.metadata.uid},
        }
        view = v1alpha1.FeatureView.model_validate(
            {**VIEW_DOC, "metadata": {**VIEW_DOC["metadata"], "namespace": namespace}}
        )
        settings = OperatorSettings(
            spark_main_file=f"local://{desired.SPEC_MOUNT}/count.py",
            aws_endpoint_url=f"http://{node_config.HOST_IP}:4566",
        )
        snapshot = desired.render_snapshot(view, 1, settings, owner_body)
        frozen = jobspec.read_snapshot_spec(snapshot)
        assert frozen is not None
        job_spec = jobspec.render_job_spec(view, 1, frozen, settings, owner_body)
        job_spec["data"]["count.py"] = COUNT_SCRIPT
        _apply(api, job_spec)
        window = Window(
            dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
        )
        app = desired.render_spark_application(view, 1, window, settings, owner_body)
        name = app["metadata"]["name"]

        created = time.monotonic()
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, app)

        def state() -> str:
            got = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            found: str = (got.get("status") or {}).get("applicationState", {}).get("state", "")
            return found

        def driver_running() -> bool:
            return any(p.status.phase == "Running" for p in _pods(api, namespace, "driver"))

        assert processes.wait_until(
            lambda: driver_running() or state() in ("COMPLETED", "FAILED", "SUBMISSION_FAILED"),
            600,
            interval=0.5,
        ), f"no driver pod ran: {state()}"
        to_driver = time.monotonic() - created
        executors: set[str] = set()

        def finished() -> bool:
            executors.update(p.metadata.name for p in _pods(api, namespace, "executor"))
            return state() in ("COMPLETED", "FAILED", "SUBMISSION_FAILED")

        assert processes.wait_until(finished, 900, interval=1), f"still {state()}"
        to_done = time.monotonic() - created
        print(
            f"SparkApplication create -> driver Running {to_driver:.1f} s, "
            f"-> {state()} {to_done:.1f} s"
        )
        drivers = _pods(api, namespace, "driver")
        log = core.read_namespaced_pod_log(drivers[0].metadata.name, namespace) if drivers else ""
        got = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        assert state() == "COMPLETED", f"{got.get('status')}\n{log[-4000:]}"
        assert "featurekube-count=100000" in log
        assert executors, "no executor pod ran"
        assert "featurekube-executors=0" not in log

        # What only the webhook applies reached the driver pod as rendered.
        pod = drivers[0]
        assert pod.spec.service_account_name == SPARK_SERVICE_ACCOUNT
        assert pod.spec.security_context.run_as_non_root is True
        container = pod.spec.containers[0]
        assert container.security_context.capabilities.drop == ["ALL"]
        env = {e.name: e.value for e in container.env}
        assert env["AWS_REGION"] == settings.aws_region
        assert pod.metadata.labels[naming.LABEL_FEATURE_VIEW] == "trip-counts"
        mounts = {m.mount_path for m in container.volume_mounts}
        assert desired.SPEC_MOUNT in mounts
    finally:
        core.delete_namespace(namespace)
