"""The parity check against the real parts: a FeatureService reconciled on the real API
server, a view materialized by the python engine into moto's DynamoDB and a Delta
table on moto's S3, the real feature server (in-process, over DynamoDB) answering over
gRPC with TLS and ServiceAccount tokens the real kube-apiserver reviews, and the SDK's
DuckDB pull. A correct system reports no mismatch; a value corrupted in DynamoDB is
reported, naming feature and entity; a window published while the check runs makes no
false mismatch; a checker the service's spec.access.read does not list is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import kubernetes.client
import kubernetes.config
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
import yaml
from kopf.testing import KopfRunner

import support
from featurekube._platform import pki, processes
from featurekube.materialize import python_job
from featurekube.online import client, keys, layout
from featurekube.spec import v1alpha1
from featurekube.spec.v1alpha1.monitoring import ParityStatus
from featurekube.writer import OfflineWriter, OnlineWriteSettings
from featurekube_operator import naming, parity, reconcile
from featurekube_operator.dynamo import OnlineTables
from featurekube_operator.kube import Kube
from featurekube_operator.metrics import Metrics
from featurekube_operator.settings import OperatorSettings
from featurekube_server import auth, plan, server
from featurekube_server.stores import dynamodb
from support import eventually

UTC = dt.UTC
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
# Two days back: every value is older than the check's settle time.
T0 = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - 3 * DAY
W1 = (T0, T0 + DAY)
W2 = (T0 + DAY, T0 + 2 * DAY)
DRIVERS = 40
# Drivers 0 to 9 change in the second window.
RAW = [(d, T0 + HOUR, 4.0 + d / 8, d * 3, f"v{d % 3}") for d in range(DRIVERS)] + [
    (d, T0 + DAY + HOUR, 1.0 + d / 3, d * 5, "late") for d in range(10)
]


def _view(source: str) -> dict[str, Any]:
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": {"name": "driver-stats"},
        "spec": {
            "owner": "eta-team",
            "entities": [{"name": "driver_id", "type": "int64"}],
            "source": {"batch": {"path": source, "timestampField": "ts"}},
            "features": [
                {"name": "rating", "type": "float64"},
                {"name": "trips", "type": "int64"},
                {"name": "vehicle", "type": "string"},
            ],
            "ttl": "30d",
        },
    }


SERVICE: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureService",
    "metadata": {"name": "eta-model"},
    "spec": {
        "owner": "eta-team",
        "features": [{"featureView": "driver-stats", "prefix": "driver_"}],
        "monitoring": {"parity": {"sampleSize": 100, "interval": "1h"}},
    },
}
CHECKER = "featurekube-operator"
"""The ServiceAccount the check calls as (the operator's, in a cluster)."""


class Served:
    """The service as reconciled and materialized, and its feature server."""

    def __init__(
        self, kube_api: kubernetes.client.ApiClient, namespace: str, settings: OperatorSettings
    ) -> None:
        self.kube_api = kube_api
        self.namespace = namespace
        self.settings = settings
        self.view: v1alpha1.FeatureView | None = None
        self.port = 0
        self.ca_file = self.token_file = Path("unset")
        self.online_table = naming.online_table(settings, namespace, "driver-stats", 1)
        self.offline_table = naming.offline_uri(settings, namespace, "driver-stats", 1)

    def materialize(self, window: tuple[dt.datetime, dt.datetime]) -> None:
        assert self.view is not None
        python_job.run(
            self.view,
            *window,
            offline_uri=self.offline_table,
            online_table=self.online_table,
            settings=python_job.PythonSettings(online=OnlineWriteSettings(settle_seconds=0.1)),
        )

    def service(self) -> dict[str, Any]:
        body: dict[str, Any] = kubernetes.client.CustomObjectsApi(
            self.kube_api
        ).get_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", self.namespace, "featureservices", "eta-model"
        )
        return body

    def check(
        self,
        wrap: Callable[[client.OnlineClient], Any] = lambda c: c,
        token_file: Path | None = None,
    ) -> parity.CheckResult:
        """One check, calling the server as the checker's ServiceAccount does."""

        def connect(endpoint: str) -> Any:
            # The Service's name does not resolve here: the server listens on loopback.
            assert endpoint == f"eta-model.{self.namespace}.svc:50051"
            return wrap(
                client.OnlineClient(
                    f"127.0.0.1:{self.port}",
                    ca_file=self.ca_file,
                    token_file=token_file or self.token_file,
                )
            )

        checker = parity.ParityCheck(self.settings, Kube(self.kube_api), connect=connect)
        return checker.run(self.service())


def _write_source(prefix: str) -> str:
    source = f"{prefix}raw/drivers/"
    filesystem, path = pyarrow.fs.FileSystem.from_uri(source)
    table = pa.table(
        {
            "driver_id": pa.array([r[0] for r in RAW], pa.int64()),
            "ts": pa.array([r[1] for r in RAW], pa.timestamp("us", tz="UTC")),
            "rating": pa.array([r[2] for r in RAW], pa.float64()),
            "trips": pa.array([r[3] for r in RAW], pa.int64()),
            "vehicle": pa.array([r[4] for r in RAW]),
        }
    )
    pq.write_table(table, f"{path.rstrip('/')}/part-0.parquet", filesystem=filesystem)
    return source


@pytest.fixture
def reviewer(
    kube_api: kubernetes.client.ApiClient, namespace: str, platform: Any, tmp_path: Path
) -> Iterator[kubernetes.client.ApiClient]:
    """An API client as the feature server's ServiceAccount, which may only review
    tokens (system:auth-delegator, as the chart binds it)."""
    with support.token_reviewer(kube_api, namespace, platform.kubeconfig, tmp_path) as api:
        yield api


@pytest.fixture
def served(
    kube_api: kubernetes.client.ApiClient,
    reviewer: kubernetes.client.ApiClient,
    namespace: str,
    s3_prefix: str,
    table_prefix: str,
    tmp_path: Path,
) -> Iterator[Served]:
    settings = OperatorSettings(
        table_prefix=table_prefix,
        offline_uri=f"{s3_prefix}offline",
        server_image="featurekube/server:test",
        server_tls_secret="featurekube-serving-tls",
        server_auth="tokenreview",
        # The windows are written just before each check: no Push waits to commit here.
        parity_settle_seconds=0.0,
    )
    ctx = reconcile.Context(
        settings, Kube(kube_api), OnlineTables(boto3.client("dynamodb")), Metrics()
    )
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    group = ("featurekube.dev", "v1alpha1", namespace)
    custom.create_namespaced_custom_object(*group, "featureviews", _view(_write_source(s3_prefix)))
    view_body = custom.get_namespaced_custom_object(*group, "featureviews", "driver-stats")
    reconcile.reconcile_feature_view(ctx, view_body)  # its snapshot and online table
    custom.patch_namespaced_custom_object_status(
        *group,
        "featureviews",
        "driver-stats",
        {"status": {"version": 1, "conditions": [{"type": "Ready", "status": "True"}]}},
    )
    service = {
        **SERVICE,
        "spec": {**SERVICE["spec"], "access": {"read": [f"{namespace}/{CHECKER}"]}},
    }
    custom.create_namespaced_custom_object(*group, "featureservices", service)
    outcome = reconcile.reconcile_feature_service(
        ctx, custom.get_namespaced_custom_object(*group, "featureservices", "eta-model")
    )
    custom.patch_namespaced_custom_object_status(
        *group, "featureservices", "eta-model", {"status": outcome.status}
    )
    found = Served(kube_api, namespace, settings)
    found.view = v1alpha1.FeatureView.model_validate(view_body)
    found.materialize(W1)
    plan_text = (
        kubernetes.client.CoreV1Api(kube_api)
        .read_namespaced_config_map("eta-model-plan", namespace)
        .data["plan.yaml"]
    )
    serving = plan.parse_plan(yaml.safe_load(plan_text))
    now = dt.datetime.now(UTC)
    ca = pki.new_authority("parity-test-ca", now)
    pair = pki.issue_certificate(
        ca, "eta-model", now, hosts=(f"*.{namespace}.svc", "127.0.0.1"), server=True
    )
    tls = server.TlsFiles(tmp_path / "tls.crt", tmp_path / "tls.key")
    tls.cert.write_bytes(pair.cert_pem)
    tls.key.write_bytes(pair.key_pem)
    found.ca_file = tmp_path / "ca.crt"
    found.ca_file.write_bytes(ca.pair.cert_pem)
    core = kubernetes.client.CoreV1Api(kube_api)
    for account in (CHECKER, "stranger"):
        (tmp_path / f"{account}.token").write_text(
            support.service_account_token(core, namespace, account)
        )
    found.token_file = tmp_path / f"{CHECKER}.token"
    authenticator = auth.Authenticator(auth.KubernetesReviewer(reviewer), ttl=30)
    ready = threading.Event()
    stop = threading.Event()

    async def serve() -> None:
        async with dynamodb.DynamoDBStore() as store:
            feature_server = server.FeatureServer(
                serving, store, health_interval=0.1, tls=tls, authenticator=authenticator
            )
            found.port = await feature_server.start("127.0.0.1:0")
            try:
                await asyncio.wait_for(feature_server.ready.wait(), 30)
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.05)
            finally:
                await feature_server.stop(0)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(60), "the feature server did not become ready"
    try:
        yield found
    finally:
        stop.set()
        thread.join(30)


def test_a_correct_system_reports_no_mismatch_over_a_real_sample(served: Served) -> None:
    result = served.check()

    status = ParityStatus.model_validate(result.status)
    assert status.entities == DRIVERS, (result.skipped_by, "every served entity sampled")
    assert status.values == DRIVERS * 3
    assert (status.mismatches, status.mismatch_rate, status.examples) == (0, 0.0, None)
    assert result.skipped == 0


def test_a_value_corrupted_in_dynamodb_is_reported_naming_feature_and_entity(
    served: Served,
) -> None:
    key = keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": 17})
    boto3.client("dynamodb").update_item(
        TableName=served.online_table,
        Key={layout.ENTITY_KEY: {"S": key}},
        UpdateExpression="SET rating = :wrong",
        ExpressionAttributeValues={":wrong": {"N": "99.5"}},
    )

    result = served.check()

    status = ParityStatus.model_validate(result.status)
    assert (status.entities, status.values, status.mismatches) == (DRIVERS, DRIVERS * 3, 1)
    assert status.mismatch_rate == pytest.approx(1 / (DRIVERS * 3))
    assert [e.model_dump(exclude_none=True) for e in status.examples or ()] == [
        {
            "feature": "driver_rating",
            "entity": '{"driver_id": 17}',
            "online": "99.5",
            "offline": str(4.0 + 17 / 8),
        }
    ]


class _PublishingDuringTheRead:
    """An online client that, right after the server answers, lets the second window
    publish: between the online read and the offline pull."""

    def __init__(self, inner: client.OnlineClient, publish: Callable[[], None]) -> None:
        self.inner = inner
        self.publish = publish

    def __enter__(self) -> _PublishingDuringTheRead:
        return self

    def __exit__(self, *_: object) -> None:
        self.inner.close()

    def get_online_features(self, *args: Any, **kwargs: Any) -> client.OnlineFeatures:
        answer = self.inner.get_online_features(*args, **kwargs)
        self.publish()
        return answer


def test_a_window_published_during_the_check_makes_no_false_mismatch(served: Served) -> None:
    result = served.check(lambda c: _PublishingDuringTheRead(c, lambda: served.materialize(W2)))

    status = ParityStatus.model_validate(result.status)
    assert status.mismatches == 0, status.examples
    assert result.skipped_by.get("changed") == 10, "the ten drivers the window rewrote"
    assert status.entities == DRIVERS - 10
    # Once published, everything agrees again.
    after = ParityStatus.model_validate(served.check().status)
    assert (after.entities, after.mismatches) == (DRIVERS, 0)


def test_a_checker_the_service_does_not_let_read_is_refused_naming_the_list(
    served: Served, tmp_path: Path
) -> None:
    with pytest.raises(client.FeatureServerError) as refused:
        served.check(token_file=tmp_path / "stranger.token")

    assert refused.value.code == "PERMISSION_DENIED"
    assert "spec.access.read" in str(refused.value)


def test_the_operator_checks_on_its_timer_and_reports_in_status_events_and_metrics(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom = kubernetes.client.CustomObjectsApi(served.kube_api)
    group = ("featurekube.dev", "v1alpha1", served.namespace)
    custom.patch_namespaced_custom_object(
        *group,
        "featureservices",
        "eta-model",
        {"spec": {"monitoring": {"parity": {"sampleSize": 100, "interval": "5s"}}}},
    )
    # The Service's name does not resolve here: the operator's client goes to loopback,
    # as the checker's ServiceAccount, with the CA it would be given.
    monkeypatch.setattr(
        parity.ParityCheck,
        "_default_connect",
        lambda self, endpoint: client.OnlineClient(
            f"127.0.0.1:{served.port}", ca_file=served.ca_file, token_file=served.token_file
        ),
    )
    port = processes.free_port()
    settings = served.settings
    env = {
        "FEATUREKUBE_TABLE_PREFIX": settings.table_prefix,
        "FEATUREKUBE_OFFLINE_URI": settings.offline_uri,
        "FEATUREKUBE_SERVER_TLS_SECRET": settings.server_tls_secret,
        "FEATUREKUBE_SERVER_AUTH": settings.server_auth,
        "FEATUREKUBE_PARITY_SETTLE_SECONDS": "0",
        "FEATUREKUBE_METRICS_PORT": str(port),
        # Read when the handlers are first imported (by this test, unless another
        # imported them before: then the default tick, 60 s, and a slower test).
        "FEATUREKUBE_PARITY_TICK_SECONDS": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def parity_status() -> dict[str, Any] | None:
        found: dict[str, Any] | None = (served.service().get("status") or {}).get("parity")
        return found

    args = ["run", "--standalone", "--namespace", served.namespace]
    with KopfRunner([*args, "-m", "featurekube_operator.handlers"], timeout=120) as runner:
        first = eventually(parity_status, 150, "a check writes status.parity")
        assert (first["entities"], first["mismatches"]) == (DRIVERS, 0)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        labels = f'{{feature_service="eta-model",namespace="{served.namespace}"}}'
        assert f"featurekube_parity_mismatch_rate{labels} 0.0" in metrics.decode()

        key = keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": 5})
        boto3.client("dynamodb").update_item(
            TableName=served.online_table,
            Key={layout.ENTITY_KEY: {"S": key}},
            UpdateExpression="SET vehicle = :wrong",
            ExpressionAttributeValues={":wrong": {"S": "rocket"}},
        )
        later = eventually(
            lambda: (s := parity_status()) and s["mismatches"] and s,
            150,
            "a later check finds the corrupted value",
        )
        assert later["examples"][0]["feature"] == "driver_vehicle"
        events = kubernetes.client.CoreV1Api(served.kube_api).list_namespaced_event(
            served.namespace
        )
        (warning,) = [e for e in events.items if e.reason == "ParityMismatch"]
        assert warning.type == "Warning"
        assert '{"driver_id": 5}' in warning.message
    assert runner.exception is None


class _CommittingAfterThePull(parity.ParityCheck):
    """A check during whose first pull a Push's offline commit lands: its online write
    came before the check, its commit just after the pull read the table."""

    def __init__(self, commit: Callable[[], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit: Callable[[], None] | None = commit
        self.pulls = 0

    def _pull(self, *args: Any, **kwargs: Any) -> dict[str, list[Any]]:
        pulled = super()._pull(*args, **kwargs)
        self.pulls += 1
        if self.commit is not None:
            self.commit()
            self.commit = None
        return pulled


def test_a_commit_after_the_pull_is_checked_again_not_reported(served: Served) -> None:
    assert served.view is not None
    moment = T0 + 2 * DAY + HOUR
    micros = int(moment.timestamp() * 1_000_000)
    key = keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": 3})
    boto3.client("dynamodb").put_item(
        TableName=served.online_table,
        Item={
            layout.ENTITY_KEY: {"S": key},
            layout.EVENT_TIME: {"N": str(micros)},
            layout.CREATED_TIME: {"N": str(int(dt.datetime.now(UTC).timestamp() * 1e6))},
            layout.EXPIRES_AT: {"N": str(micros // 1_000_000 + 30 * 86400)},
            "rating": {"N": "2.5"},
            "trips": {"N": "77"},
            "vehicle": {"S": "pushed"},
        },
    )
    row = {"driver_id": 3, "event_timestamp": moment, "rating": 2.5, "trips": 77}
    offline = OfflineWriter(served.offline_table, served.view)
    checker = _CommittingAfterThePull(
        lambda: offline.append([{**row, "vehicle": "pushed"}]),
        served.settings,
        Kube(served.kube_api),
        connect=lambda _: client.OnlineClient(
            f"127.0.0.1:{served.port}", ca_file=served.ca_file, token_file=served.token_file
        ),
    )

    result = checker.run(served.service())

    status = ParityStatus.model_validate(result.status)
    assert checker.pulls == 2, "the table moved while a value differed: checked once more"
    assert (status.entities, status.mismatches, result.skipped) == (DRIVERS, 0, 0)
