"""Fixtures shared by the test tiers; the folder decides a test's tier.

- ``tests/unit``: no network, cluster or JVM; a short timeout each.
- ``tests/integration`` and ``tests/e2e``: the local platform (a real kube-apiserver,
  etcd and kube-controller-manager with featurekube's generated CRDs from ``crds/``,
  moto's S3 and DynamoDB), started once per run by
  the session fixture :func:`platform`, and one shared local-mode SparkSession. Each
  test gets its own namespace, S3 prefix and DynamoDB table prefix. The platform runs
  Kafka too when a test of the run asks for :func:`kafka_bootstrap_servers` (one JVM
  less for the runs that need none).

Tests of the data plane use :func:`node_platform` instead: one platform with a real
node (the kubelet, containerd, kube-proxy, CoreDNS) and the Kubeflow Spark Operator,
with featurekube's images built and loaded, started once per run. A machine holds one
node at a time, so those tests run last (after ``tests/integration/test_node.py``,
which starts and stops a node of its own).

The end-to-end modules share one install of the chart on that node
(:func:`node_system`), so they run after the other tests of the node; the node runs
Kafka too (listening where its pods reach the machine) when a test of the run asks for
:func:`node_kafka_bootstrap_servers`.

A platform that cannot start fails the tests that need it, loudly: there is no skip.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from chart_support import Helm, helm_binary

if TYPE_CHECKING:
    import kubernetes.client
    from pyspark.sql import SparkSession

    from featurekube._platform.platform import Endpoints, LocalPlatform
    from node_system import System

TESTS = Path(__file__).parent
REPO = TESTS.parent
UNIT_TIMEOUT_SECONDS = 10
TEST_BUCKET = "featurekube-test"
NODE_FIXTURE = "node_platform"
CHART_FIXTURE = "node_system"
NODE_KAFKA_FIXTURE = "node_kafka_bootstrap_servers"
FREE_NODE_WAIT_SECONDS = 300
# Built cold, the Spark image alone took 10 minutes on a loaded machine.
IMAGE_BUILD_SECONDS = 2400


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (TESTS / "unit") in item.path.parents:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT_SECONDS))

    # The run's node lives until the session ends: its users go last, in their order,
    # and of them the users of its one install of the chart, which lives as long.
    def order(item: pytest.Item) -> tuple[bool, bool]:
        names = getattr(item, "fixturenames", ())
        return NODE_FIXTURE in names, CHART_FIXTURE in names

    items.sort(key=order)


def _unique(request: pytest.FixtureRequest, limit: int) -> str:
    """A DNS-label-safe name for the requesting test, unique within the run."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    suffix = uuid.uuid4().hex[:6]
    return f"{name[: limit - len(suffix) - 1].rstrip('-')}-{suffix}"


@pytest.fixture(scope="session")
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Endpoints]:
    """The local platform, started once per test run, its environment exported."""
    from featurekube._platform import platform as local

    if (TESTS / "unit") in request.node.path.parents:
        pytest.fail("unit tests must not use the local platform: move the test to integration/")
    # Tests play the Spark Operator and the kubelet themselves, or run a runtime of
    # their own limited to their namespace.
    kafka = any(
        "kafka_bootstrap_servers" in getattr(item, "fixturenames", ())
        for item in request.session.items
    )
    settings = local.PlatformSettings(
        state_dir=tmp_path_factory.mktemp("platform"),
        crd_dirs=(REPO / "crds",),
        runtime=False,
        kafka=kafka,
    )
    running = local.LocalPlatform(settings)
    endpoints = running.start()
    try:
        # Held while the tests run: a `featurekube dev down` of this state directory
        # from elsewhere refuses rather than pull the platform from under them.
        with running.hold(), pytest.MonkeyPatch.context() as env:
            for key, value in endpoints.environment().items():
                env.setenv(key, value)
            yield endpoints
    finally:
        running.stop()


@pytest.fixture(scope="session")
def node_images() -> dict[str, Path]:
    """featurekube's images and the Spark Operator's, built (or found built) by
    ``hack/images/build.py``: image name -> OCI archive."""
    names = ("operator", "feature-server", "spark", "spark-operator")
    built = subprocess.run(
        [sys.executable, str(REPO / "hack" / "images" / "build.py"), *names],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        timeout=IMAGE_BUILD_SECONDS,
    )
    return dict(zip(names, (Path(line) for line in built.stdout.split()), strict=True))


@pytest.fixture(scope="session")
def node_platform(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    node_images: dict[str, Path],
) -> Iterator[LocalPlatform]:
    """A platform with a real node, started once per run after the images are built, as
    ``featurekube dev up --node`` starts it: the Spark Operator installed with the Spark
    image, and featurekube's operator and feature-server images loaded too. No local
    runtime (the node runs everything), Kafka only if a test of the run asks for it
    (:func:`node_kafka_bootstrap_servers`), and none of featurekube's CRDs (a test
    installs them, with the chart)."""
    from featurekube._platform import node_config, processes
    from featurekube._platform import platform as local

    if (TESTS / "unit") in request.node.path.parents:
        pytest.fail("unit tests must not use the node: move the test to integration/")
    # Another run's node (or test_node.py's, if this run's order was changed) first.
    processes.wait_until(
        lambda: not (Path("/sys/class/net") / node_config.HOST_LINK).exists(),
        FREE_NODE_WAIT_SECONDS,
        interval=2,
    )
    kafka = any(
        NODE_KAFKA_FIXTURE in getattr(item, "fixturenames", ()) for item in request.session.items
    )
    settings = local.PlatformSettings(
        state_dir=tmp_path_factory.mktemp("node-platform"),
        node=True,
        runtime=False,
        kafka=kafka,
        image_dir=node_images["spark-operator"].parent,
    )
    running = local.LocalPlatform(settings)
    endpoints = running.start()
    try:
        assert endpoints.spark_operator, "the Spark Operator was not installed"
        running.load_images([node_images["operator"], node_images["feature-server"]])
        with running.hold():
            yield running
    finally:
        running.stop(force=True)


@pytest.fixture(scope="session")
def node_system(
    node_platform: LocalPlatform, helm: Helm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """featurekube's chart installed on the run's node, in a namespace of its own, once
    for every end-to-end module (:mod:`node_system`); the SDK, boto3 and deltalake of
    this process pointed at the node's platform while it lives."""
    import node_system

    with node_system.installed(node_platform, helm, tmp_path_factory.mktemp("e2e")) as system:
        yield system


@pytest.fixture(scope="session")
def node_kafka_bootstrap_servers(node_platform: LocalPlatform) -> str:
    """The node platform's Kafka as the machine's clients reach it (loopback); its
    pods reach it at ``kafka_pods_bootstrap_servers``, which the chart is given."""
    found = node_platform.endpoints()
    if found is None or not found.kafka_pods_bootstrap_servers:
        pytest.fail("the node platform of this run was started without Kafka")
    return found.kafka_bootstrap_servers


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm for the chart's tests (:mod:`chart_support`), its caches the run's own."""
    return Helm(helm_binary(), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def kafka_bootstrap_servers(platform: Endpoints) -> str:
    """The platform's Kafka (``host:port``), also ``$FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS``."""
    if not platform.kafka_bootstrap_servers:
        pytest.fail("the local platform of this run was started without Kafka")
    return platform.kafka_bootstrap_servers


@pytest.fixture
def kafka_topic(kafka_bootstrap_servers: str, request: pytest.FixtureRequest) -> str:
    """A topic of the test's own (one partition), made before the test starts."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    name = _unique(request, 100)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap_servers})
    for future in admin.create_topics([NewTopic(name, num_partitions=1)]).values():
        future.result(timeout=30)
    return name


@pytest.fixture(scope="session")
def kube_api(platform: Endpoints) -> Iterator[kubernetes.client.ApiClient]:
    """A Kubernetes API client with admin rights on the platform."""
    import kubernetes.config

    client = kubernetes.config.new_client_from_config(config_file=str(platform.kubeconfig))
    with client:
        yield client


@pytest.fixture
def namespace(
    kube_api: kubernetes.client.ApiClient, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards (without waiting)."""
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(kube_api)
    name = _unique(request, 63)
    core.create_namespace({"metadata": {"name": name, "labels": {"featurekube.dev/test": "true"}}})
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def test_bucket(platform: Endpoints) -> str:
    """One S3 bucket for the run; tests keep to their own :func:`s3_prefix` in it."""
    import boto3

    boto3.client("s3").create_bucket(Bucket=TEST_BUCKET)
    return TEST_BUCKET


@pytest.fixture
def s3_prefix(test_bucket: str, request: pytest.FixtureRequest) -> str:
    """``s3://<bucket>/<unique>/``: the test's own corner of S3."""
    return f"s3://{test_bucket}/{_unique(request, 60)}/"


@pytest.fixture
def table_prefix(platform: Endpoints, request: pytest.FixtureRequest) -> str:
    """A DynamoDB table-name prefix of the test's own."""
    return f"fk-{_unique(request, 40)}-"


@pytest.fixture(scope="session")
def spark(platform: Endpoints) -> Iterator[SparkSession]:
    """The run's one local-mode SparkSession, reaching the platform's S3."""
    from featurekube import spark_session

    session = spark_session.create_session(
        spark_session.SparkSettings(app_name="featurekube-tests")
    )
    yield session
    # py4j logs its shutdown after pytest has closed the captured streams.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    session.stop()
