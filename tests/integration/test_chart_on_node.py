"""``helm install`` of charts/featurekube on the real node: the whole product in pods.

On the run's platform with a node (``node_platform`` in tests/conftest.py: the
kubelet, containerd, CoreDNS and the Kubeflow Spark Operator, featurekube's images
loaded), the chart is installed as a user would install it. Its operator runs as a pod
of the built operator image under the chart's ServiceAccount; a FeatureView and a
FeatureService applied to it make a SparkApplication that the real Spark Operator runs
as driver and executor pods, and a feature-server Deployment whose pods pass their gRPC
probes behind a Service. A vector is then fetched from another pod by the Service's DNS
name, and from the host through ``kubectl port-forward``.

The tests share one release and run in order: each one waits for what the one before
set going.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from chart_support import Helm
from featurekube._platform import chart, node_config
from featurekube._platform import platform as local
from featurekube_operator import naming
from support import eventually, example_data_generator

# The module's first test waits for the run's node (images built, node started) and
# the install; the materialization runs a Spark driver and executors on 2 busy cores.
pytestmark = pytest.mark.timeout(3600)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "featurekube"
GROUP, VERSION = "featurekube.dev", "v1alpha1"
VIEW, SERVICE = "driver-profile", "eta-model"
GRPC_PORT = 50051
OPERATOR_READY_SECONDS = 600
DRIVER_RUNNING_SECONDS = 900
MATERIALIZED_SECONDS = 1500
SERVER_READY_SECONDS = 600
CLIENT_SECONDS = 300
# A client of the feature server in another pod, from the feature-server image (it has
# featurekube's gRPC client): prints the vector of one driver as JSON.
CLIENT_SCRIPT = """\
import json, sys
from featurekube.online.client import OnlineClient
with OnlineClient(sys.argv[1], timeout=30) as online:
    found = online.get_online_features([{"driver_id": int(sys.argv[2])}])
print(json.dumps(found.to_dict(statuses=True)))
"""


@dataclass
class Release:
    """The chart installed in a namespace of its own, with data to materialize."""

    namespace: str
    name: str
    kubeconfig: Path
    api: Any
    drivers: Any
    """The driver table written to the source path (a pyarrow Table)."""
    installed_to_ready: float


@pytest.fixture(scope="module")
def release(
    node_platform: local.LocalPlatform, helm: Helm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    import boto3
    import kubernetes.client
    import kubernetes.config
    import pyarrow.fs
    import pyarrow.parquet as pq

    found = node_platform.endpoints()
    assert found is not None and found.node == node_config.NODE_NAME
    namespace = f"fk-{uuid.uuid4().hex[:8]}"
    api = kubernetes.config.new_client_from_config(config_file=str(found.kubeconfig))
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    # The namespace's own AWS keys, which its jobs and feature servers take.
    core.create_namespaced_secret(namespace, chart.namespace_aws_secret())
    # Two days of driver exports up to today, so the last ones are within the view's
    # time to live when served.
    gen = example_data_generator()
    today = dt.datetime.now(dt.UTC).date()
    drivers = gen.make_drivers(
        gen.Settings(start=today - dt.timedelta(days=2), days=2, drivers=8, riders=20)
    )
    s3 = pyarrow.fs.S3FileSystem(
        endpoint_override=found.aws_endpoint_url,
        access_key=local.AWS_ACCESS_KEY_ID,
        secret_key=local.AWS_SECRET_ACCESS_KEY,
        region=found.region,
    )
    pq.write_table(drivers, f"featurekube/{namespace}/raw/drivers/part-0.parquet", filesystem=s3)
    boto3.client(
        "s3",
        endpoint_url=found.aws_endpoint_url,
        region_name=found.region,
        aws_access_key_id=local.AWS_ACCESS_KEY_ID,
        aws_secret_access_key=local.AWS_SECRET_ACCESS_KEY,
    ).head_bucket(Bucket="featurekube")
    # The node's values (moto where pods reach it, the whole backfill as one window),
    # looked at every 5 s; plaintext and no token review: the client below has neither
    # a certificate to check nor a token the servers would accept without an access
    # list.
    values = chart.node_values(
        found,
        namespace,
        offline_uri=f"s3://featurekube/{namespace}/offline",
        table_prefix=f"fk-{namespace}.",
        server_auth="none",
        tls_secret="",
        reconcile_seconds=5,
    )
    values_file = tmp_path_factory.mktemp("chart-on-node") / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    name = "fk"
    started = time.monotonic()
    helm_env = ["--kubeconfig", str(found.kubeconfig), "-n", namespace]
    installed = helm.run(
        "install", name, str(CHART), *helm_env, "-f", str(values_file), check=False
    )
    assert installed.returncode == 0, installed.stderr
    apps = kubernetes.client.AppsV1Api(api)
    operator = f"{name}-featurekube-operator"
    try:
        eventually(
            lambda: (
                (apps.read_namespaced_deployment(operator, namespace).status.ready_replicas) == 1
            ),
            OPERATOR_READY_SECONDS,
            f"the operator's Deployment {operator} Ready\n"
            + chart.describe_pods(core, namespace, "app.kubernetes.io/component=operator"),
        )
        ready = time.monotonic() - started
        print(f"helm install -> operator Ready: {ready:.1f} s")
        yield Release(namespace, name, found.kubeconfig, api, drivers, ready)
    finally:
        helm.run(
            "uninstall", name, *helm_env, "--wait", "--timeout", "120s", check=False, timeout=180
        )
        core.delete_namespace(namespace)
        api.close()


def _custom(release: Release) -> Any:
    import kubernetes.client

    return kubernetes.client.CustomObjectsApi(release.api)


def _view_body(namespace: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((REPO / "examples" / "driver-profile.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    body["spec"]["source"]["batch"]["path"] = f"s3://featurekube/{namespace}/raw/drivers/"
    start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=3)
    body["spec"]["materialization"]["startTime"] = f"{start.isoformat()}T00:00:00Z"
    body["spec"].pop("sharedWith", None)
    return body


def test_the_operator_runs_as_a_pod_of_its_image_under_the_charts_service_account(
    release: Release,
) -> None:
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(release.api)
    [pod] = core.list_namespaced_pod(
        release.namespace, label_selector="app.kubernetes.io/component=operator"
    ).items

    assert pod.spec.service_account_name == f"{release.name}-featurekube-operator"
    assert pod.spec.node_name == node_config.NODE_NAME
    assert pod.spec.containers[0].image == "ghcr.io/featurekube/operator:0.1.0"
    assert pod.status.container_statuses[0].ready
    assert pod.status.container_statuses[0].restart_count == 0
    # In-cluster config: the pod's token, the `kubernetes` Service.
    log = core.read_namespaced_pod_log(pod.metadata.name, release.namespace)
    assert "Forbidden" not in log and " 403" not in log, log[-3000:]


def test_a_view_applied_is_materialized_by_the_real_spark_operator(release: Release) -> None:
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(release.api)
    custom = _custom(release)
    ns = release.namespace
    applied = time.monotonic()
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "featureviews", _view_body(ns))

    def driver_running() -> bool:
        pods = core.list_namespaced_pod(ns, label_selector="spark-role=driver").items
        return any(p.status.phase == "Running" for p in pods)

    eventually(
        driver_running,
        DRIVER_RUNNING_SECONDS,
        "the first window's Spark driver Running\n" + chart.describe_pods(core, ns),
    )
    to_driver = time.monotonic() - applied
    print(f"FeatureView apply -> first window's driver pod Running: {to_driver:.1f} s")
    executors: set[str] = set()

    def materialized() -> dict[str, Any] | None:
        executors.update(
            p.metadata.name
            for p in core.list_namespaced_pod(ns, label_selector="spark-role=executor").items
        )
        view = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "featureviews", VIEW)
        window: dict[str, Any] | None = (view.get("status") or {}).get("lastMaterializedWindow")
        return window

    window = eventually(materialized, MATERIALIZED_SECONDS, "the view's first window materialized")
    print(f"FeatureView apply -> window materialized: {time.monotonic() - applied:.1f} s")
    [app] = custom.list_namespaced_custom_object(
        "sparkoperator.k8s.io", "v1beta2", ns, "sparkapplications"
    )["items"]
    assert app["status"]["applicationState"]["state"] == "COMPLETED", app["status"]
    assert app["spec"]["image"] == "ghcr.io/featurekube/spark:0.1.0"
    assert app["spec"]["driver"]["serviceAccount"] == "featurekube-spark"
    # So small a window may be computed in the driver (engine auto): executors are
    # test_spark_operator.py's concern.
    print(f"{len(executors)} executor pod(s) seen")
    assert window["end"]


def test_the_feature_servers_pods_become_ready_behind_their_service(release: Release) -> None:
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(release.api)
    apps = kubernetes.client.AppsV1Api(release.api)
    ns = release.namespace
    applied = time.monotonic()
    _custom(release).create_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "featureservices",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FeatureService",
            "metadata": {"name": SERVICE, "namespace": ns},
            "spec": {"owner": "eta-team", "features": [{"featureView": VIEW}]},
        },
    )

    def ready() -> bool:
        found = apps.list_namespaced_deployment(ns, field_selector=f"metadata.name={SERVICE}")
        return bool(found.items) and (found.items[0].status.ready_replicas or 0) >= 1

    eventually(
        ready,
        SERVER_READY_SECONDS,
        "the feature server's pods Ready\n" + chart.describe_pods(core, ns),
        ignore=(kubernetes.client.ApiException,),
    )
    print(f"FeatureService apply -> server pods Ready: {time.monotonic() - applied:.1f} s")
    endpoints = core.read_namespaced_endpoints(SERVICE, ns)
    ports = {p.port for subset in endpoints.subsets or [] for p in subset.ports or []}
    addresses = [a.ip for subset in endpoints.subsets or [] for a in subset.addresses or []]
    assert GRPC_PORT in ports
    assert addresses, "the Service has no ready endpoint"
    servers = core.list_namespaced_pod(
        ns, label_selector=f"{naming.LABEL_FEATURE_SERVICE}={SERVICE}"
    ).items
    assert servers
    for pod in servers:
        assert pod.spec.containers[0].image == "ghcr.io/featurekube/feature-server:0.1.0"
        assert pod.spec.node_name == node_config.NODE_NAME
    # The Service's endpoints are the feature server's pods (another may become ready
    # meanwhile).
    assert set(addresses) <= {p.status.pod_ip for p in servers}


def _expected(release: Release, driver_id: int, window_end: dt.datetime) -> float:
    """The driver's rating as of the window's end: its latest export (and of that, the
    latest correction) before the end."""
    rows = [
        r
        for r in release.drivers.to_pylist()
        if r["driver_id"] == driver_id
        and not r["is_test_account"]
        and r["event_timestamp"] < window_end
    ]
    latest = max(rows, key=lambda r: (r["event_timestamp"], r["created_timestamp"]))
    rating: float = latest["rating"]
    return rating


def _window_end(release: Release) -> dt.datetime:
    view = _custom(release).get_namespaced_custom_object(
        GROUP, VERSION, release.namespace, "featureviews", VIEW
    )
    return dt.datetime.fromisoformat(view["status"]["lastMaterializedWindow"]["end"])


def _a_rated_driver(release: Release, end: dt.datetime) -> tuple[int, float]:
    """A real driver whose rating as of ``end`` is not null."""
    ids = sorted({r["driver_id"] for r in release.drivers.to_pylist() if not r["is_test_account"]})
    for driver_id in ids:
        rating = _expected(release, driver_id, end)
        if rating is not None:
            return driver_id, rating
    pytest.fail("the generated data has no rated driver")


def _rating(vector: dict[str, Any]) -> tuple[Any, Any]:
    [name] = [k for k in vector if k.endswith("rating")]
    return vector[name][0], vector[f"{name}__status"][0]


def test_a_vector_is_fetched_from_another_pod_by_the_services_dns_name(
    release: Release,
) -> None:
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(release.api)
    ns = release.namespace
    driver_id, rating = _a_rated_driver(release, _window_end(release))
    target = f"{SERVICE}.{ns}.svc.{node_config.CLUSTER_DOMAIN}:{GRPC_PORT}"
    core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "client"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "client",
                        "image": "ghcr.io/featurekube/feature-server:0.1.0",
                        "command": [
                            "/opt/featurekube/venv/bin/python",
                            "-c",
                            CLIENT_SCRIPT,
                            target,
                            str(driver_id),
                        ],
                        "securityContext": {
                            "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        },
    )

    def ended() -> str:
        phase: str = core.read_namespaced_pod("client", ns).status.phase
        return phase if phase in ("Succeeded", "Failed") else ""

    phase = eventually(
        ended, CLIENT_SECONDS, "the client pod ended\n" + chart.describe_pods(core, ns)
    )
    log = core.read_namespaced_pod_log("client", ns)
    assert phase == "Succeeded", log[-3000:]
    vector = json.loads(log.strip().splitlines()[-1])
    assert vector["driver_id"] == [driver_id]
    assert _rating(vector) == (rating, "PRESENT")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_vector_is_fetched_from_the_host_through_port_forward(
    release: Release, node_platform: local.LocalPlatform
) -> None:
    from featurekube.online.client import OnlineClient

    driver_id, rating = _a_rated_driver(release, _window_end(release))
    kubectl = local.resolve_k8s_bin_dir(node_platform.settings) / "kubectl"
    port = _free_port()
    forward = subprocess.Popen(
        [
            str(kubectl),
            f"--kubeconfig={release.kubeconfig}",
            "-n",
            release.namespace,
            "port-forward",
            f"service/{SERVICE}",
            f"{port}:{GRPC_PORT}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert forward.stdout is not None
        first = forward.stdout.readline()
        assert "Forwarding from 127.0.0.1" in first, first
        with OnlineClient(f"127.0.0.1:{port}", timeout=30) as online:
            vector = online.get_online_features([{"driver_id": driver_id}]).to_dict(statuses=True)
    finally:
        forward.terminate()
        forward.wait(timeout=30)

    assert vector["driver_id"] == [driver_id]
    assert _rating(vector) == (rating, "PRESENT")


def _condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [c for c in (body.get("status") or {}).get("conditions") or () if c["type"] == kind]
    return found[0] if found else {}


def _upgrade(release: Release, helm: Helm, *settings: str) -> None:
    """``helm upgrade`` of the release with its values and ``settings`` on top, waiting
    until the operator runs with them."""
    upgraded = helm.run(
        "upgrade",
        release.name,
        str(CHART),
        "--kubeconfig",
        str(release.kubeconfig),
        "-n",
        release.namespace,
        "--reuse-values",
        *(arg for setting in settings for arg in ("--set", setting)),
        "--wait",
        "--timeout",
        f"{OPERATOR_READY_SECONDS}s",
        check=False,
        timeout=OPERATOR_READY_SECONDS + 60,
    )
    assert upgraded.returncode == 0, upgraded.stderr


PULLING = ("ErrImagePull", "ImagePullBackOff")


def test_a_driver_pod_that_cannot_start_shows_in_the_views_status(
    release: Release, helm: Helm
) -> None:
    """A Spark image missing from the node (and from any registry it could reach): the
    new view's driver pod waits for it for ever; the view's status names the pod and
    the kubelet's reason."""
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(release.api)
    custom = _custom(release)
    ns = release.namespace
    _upgrade(release, helm, "spark.image.tag=missing")
    view = _view_body(ns)
    view["metadata"]["name"] = "driver-profile-missing"
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "featureviews", view)

    def degraded() -> dict[str, Any]:
        body = custom.get_namespaced_custom_object(
            GROUP, VERSION, ns, "featureviews", "driver-profile-missing"
        )
        found = _condition(body, "Degraded")
        return found if found.get("reason") in PULLING else {}

    condition = eventually(
        degraded,
        DRIVER_RUNNING_SECONDS,
        "the view Degraded by its driver's missing image\n" + chart.describe_pods(core, ns),
    )
    assert condition["status"] == "True"
    assert "a window's pod cannot start: pod driver-profile-missing-" in condition["message"]
    assert "ghcr.io/featurekube/spark:missing" in condition["message"]

    # Its driver pod holds a CPU of the node's two: gone with the view (its owner).
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, ns, "featureviews", "driver-profile-missing"
    )
    eventually(
        lambda: (
            not core.list_namespaced_pod(
                ns, label_selector=f"{naming.LABEL_FEATURE_VIEW}=driver-profile-missing"
            ).items
        ),
        SERVER_READY_SECONDS,
        "the missing view's pods gone",
    )


def test_server_pods_that_cannot_start_show_in_the_services_status(
    release: Release, helm: Helm
) -> None:
    """A feature-server image missing from the node: a new service's server pods never
    start, and its status says why; a serving one goes on serving from its old pods,
    and says that its new ones cannot start."""
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(release.api)
    custom = _custom(release)
    ns = release.namespace
    _upgrade(release, helm, "featureServer.image.tag=missing")
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "featureservices",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FeatureService",
            "metadata": {"name": "eta-model-missing", "namespace": ns},
            "spec": {"owner": "eta-team", "features": [{"featureView": VIEW}]},
        },
    )

    def not_ready() -> dict[str, Any]:
        body = custom.get_namespaced_custom_object(
            GROUP, VERSION, ns, "featureservices", "eta-model-missing"
        )
        found = _condition(body, "Ready")
        return found if found.get("reason") in PULLING else {}

    condition = eventually(
        not_ready,
        SERVER_READY_SECONDS,
        "the service not Ready for its server's missing image\n" + chart.describe_pods(core, ns),
    )
    assert condition["status"] == "False"
    assert condition["message"].startswith(
        "the feature server cannot start: pod eta-model-missing-"
    )
    assert "ghcr.io/featurekube/feature-server:missing" in condition["message"]

    def still_serving() -> dict[str, Any]:
        body = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "featureservices", SERVICE)
        found = _condition(body, "Ready")
        return found if "new pods cannot start" in found.get("message", "") else {}

    condition = eventually(still_serving, SERVER_READY_SECONDS, "the old server still serving")
    assert condition["status"] == "True"
