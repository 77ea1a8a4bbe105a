"""Per-namespace data access, for real: a moto server that enforces IAM policies (see
``tests/moto_iam.py``) holds two teams' buckets and tables, each team's access key may
reach only its own, and a materialization job the operator runs in a namespace takes
that namespace's key from its Secret, so it cannot read another team's source."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import kubernetes.client
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

import moto_iam
from featurekube._platform import processes
from featurekube._platform.runtime import Runtime
from featurekube_operator import reconcile
from featurekube_operator.dynamo import OnlineTables
from featurekube_operator.kube import Kube
from featurekube_operator.metrics import Metrics
from featurekube_operator.settings import OperatorSettings
from support import eventually

TABLE_PREFIX = "featurekube."
BUCKET = {"team-a": "team-a-data", "team-b": "team-b-data"}
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _parquet(rows: int) -> bytes:
    table = pa.table(
        {
            "driver_id": pa.array(range(rows), pa.int64()),
            "rating": pa.array([4.5] * rows, pa.float64()),
            "event_timestamp": pa.array(
                [T0 + dt.timedelta(hours=1)] * rows, pa.timestamp("us", tz="UTC")
            ),
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


class Aws:
    """The enforcing moto: its endpoint, an administrator's key, and the teams'."""

    def __init__(self, endpoint: str, admin: moto_iam.Keys) -> None:
        self.endpoint = endpoint
        self.admin = admin
        self.iam = admin.client("iam", endpoint)
        self.teams: dict[str, moto_iam.Keys] = {}

    def client(self, service: str, keys: moto_iam.Keys | None = None) -> Any:
        return (keys or self.admin).client(service, self.endpoint)

    def tenant(self, name: str, bucket: str, table_prefix: str) -> moto_iam.Keys:
        return moto_iam.user(self.iam, name, moto_iam.tenant_statements([bucket], table_prefix))


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    """The enforcing moto with team-a's and team-b's buckets (a parquet file each) and
    online tables, and an IAM user per team allowed only its own."""
    log = tmp_path_factory.mktemp("moto-iam") / "moto.log"
    with moto_iam.running(processes.free_port(), log) as endpoint:
        anyone = moto_iam.Keys("setup", "setup", "setup")
        admin = moto_iam.user(anyone.client("iam", endpoint), "platform-admin", moto_iam.ADMIN)
        moto_iam.enforce(endpoint)
        found = Aws(endpoint, admin)
        s3, dynamodb = found.client("s3"), found.client("dynamodb")
        for team, bucket in BUCKET.items():
            s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key="trips/part-0.parquet", Body=_parquet(3))
            dynamodb.create_table(
                TableName=f"{TABLE_PREFIX}{team}.trips.v1",
                KeySchema=[{"AttributeName": "entity_key", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "entity_key", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            found.teams[team] = found.tenant(team, bucket, f"{TABLE_PREFIX}{team}.")
        yield found


def _refused(call: Any, code: str, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as refused:
        call(**kwargs)
    error = refused.value.response["Error"]
    status = refused.value.response["ResponseMetadata"]["HTTPStatusCode"]
    # moto answers DynamoDB's refusals in XML, which botocore reads as code "403".
    assert status == 403 and code in (error["Code"] + error.get("Message", "")), error
    return str(refused.value)


def test_a_team_key_reaches_its_own_bucket_and_table_and_not_the_other_team(aws: Aws) -> None:
    for team, other in (("team-a", "team-b"), ("team-b", "team-a")):
        s3 = aws.client("s3", aws.teams[team])
        dynamodb = aws.client("dynamodb", aws.teams[team])
        # Its own: read, list and write.
        assert s3.get_object(Bucket=BUCKET[team], Key="trips/part-0.parquet")["Body"].read()
        assert s3.list_objects_v2(Bucket=BUCKET[team])["KeyCount"] == 1
        s3.put_object(Bucket=BUCKET[team], Key="out/x", Body=b"x")
        own_table = f"{TABLE_PREFIX}{team}.trips.v1"
        dynamodb.put_item(TableName=own_table, Item={"entity_key": {"S": "1"}})
        assert dynamodb.get_item(TableName=own_table, Key={"entity_key": {"S": "1"}})["Item"]
        # The other team's: refused, every way.
        _refused(s3.get_object, "AccessDenied", Bucket=BUCKET[other], Key="trips/part-0.parquet")
        _refused(s3.list_objects_v2, "AccessDenied", Bucket=BUCKET[other])
        _refused(s3.put_object, "AccessDenied", Bucket=BUCKET[other], Key="x", Body=b"x")
        other_table = f"{TABLE_PREFIX}{other}.trips.v1"
        _refused(
            dynamodb.get_item,
            "AccessDenied",
            TableName=other_table,
            Key={"entity_key": {"S": "1"}},
        )
        _refused(
            dynamodb.put_item,
            "AccessDenied",
            TableName=other_table,
            Item={"entity_key": {"S": "2"}},
        )
    # A key the server does not know is refused too: enforcement is on.
    stranger = moto_iam.Keys("stranger", "AKIASTRANGER0000000", "nothing")
    _refused(
        aws.client("s3", stranger).get_object,
        "InvalidAccessKeyId",
        Bucket=BUCKET["team-a"],
        Key="trips/part-0.parquet",
    )


VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "trips"},
    "spec": {
        "owner": "team-a",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": f"s3://{BUCKET['team-b']}/trips/"}},
        "features": [{"name": "rating", "type": "float64"}],
        "materialization": {
            "schedule": "@daily",
            "startTime": "2026-01-01T00:00:00Z",
            "engine": "python",
            "offline": False,
        },
    },
}


def _custom(kube_api: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube_api)


def _step(ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str) -> Any:
    """One reconcile of the view, its status written back as kopf would."""
    api = _custom(kube_api)
    body: dict[str, Any] = api.get_namespaced_custom_object(  # type: ignore[assignment]
        "featurekube.dev", "v1alpha1", namespace, "featureviews", "trips"
    )
    outcome = reconcile.reconcile_feature_view(ctx, body)
    api.patch_namespaced_custom_object_status(
        "featurekube.dev",
        "v1alpha1",
        namespace,
        "featureviews",
        "trips",
        {"status": outcome.status},
    )
    after: dict[str, Any] = api.get_namespaced_custom_object(  # type: ignore[assignment]
        "featurekube.dev", "v1alpha1", namespace, "featureviews", "trips"
    )
    return after["status"]


def _service_step(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> dict[str, Any]:
    """One reconcile of a FeatureService ``eta`` reading the view (created at the first
    call); returns its Ready condition."""
    api = _custom(kube_api)
    plural = ("featurekube.dev", "v1alpha1", namespace, "featureservices")
    try:
        body: dict[str, Any] = api.get_namespaced_custom_object(*plural, "eta")  # type: ignore[assignment]
    except kubernetes.client.exceptions.ApiException:
        body = api.create_namespaced_custom_object(*plural, SERVICE)  # type: ignore[assignment]
    outcome = reconcile.reconcile_feature_service(ctx, body)
    return _conditions(outcome.status)["Ready"]


SERVICE: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureService",
    "metadata": {"name": "eta"},
    "spec": {"owner": "team-a", "features": [{"featureView": "trips"}]},
}


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def _run_until(
    ctx: reconcile.Context,
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    runtime: Runtime,
    done: Any,
    what: str,
) -> dict[str, Any]:
    seen: list[dict[str, Any]] = [{}]

    def check() -> dict[str, Any] | None:
        runtime.step()
        seen[0] = _step(ctx, kube_api, namespace)
        return seen[0] if done(seen[0]) else None

    try:
        found: dict[str, Any] = eventually(check, 180, what, interval=1.0)
    except BaseException:
        print(json.dumps(seen[0], indent=1))  # the view's status, shown with the failure
        raise
    return found


def test_a_job_runs_with_its_namespace_key_and_cannot_read_another_team_source(
    aws: Aws,
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    """The operator, in mode ``namespace``, runs the view's job with the key in the
    namespace's Secret (team-a's), not its own (an administrator's): reading team-b's
    source is refused by the store, the job fails naming the path, and the same job
    reading team-a's source completes and writes the namespace's table."""
    core = kubernetes.client.CoreV1Api(kube_api)
    keys = aws.tenant(namespace, BUCKET["team-a"], f"{TABLE_PREFIX}{namespace}.")
    settings = OperatorSettings(
        aws_credentials="namespace",
        aws_endpoint_url=aws.endpoint,
        table_prefix=TABLE_PREFIX,
        offline_uri="s3://lake/offline",
    )
    ctx = reconcile.Context(
        settings,
        Kube(kube_api),
        OnlineTables(aws.client("dynamodb")),
        Metrics(),
        lambda: T0 + dt.timedelta(days=1, minutes=5),
    )
    _custom(kube_api).create_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", VIEW
    )

    # No Secret, no IRSA role: nothing runs, and the view says why.
    status = _step(ctx, kube_api, namespace)
    ready = _conditions(status)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "CredentialsMissing")
    assert "create the Secret featurekube-aws" in ready["message"]
    assert not kubernetes.client.BatchV1Api(kube_api).list_namespaced_job(namespace).items
    assert _service_step(ctx, kube_api, namespace)["reason"] == "CredentialsMissing"
    apps = kubernetes.client.AppsV1Api(kube_api)
    assert not apps.list_namespaced_deployment(namespace).items

    secret: Any = {  # the client takes a dict where it declares a V1Secret
        "metadata": {"name": "featurekube-aws"},
        "stringData": {
            "AWS_ACCESS_KEY_ID": keys.access_key_id,
            "AWS_SECRET_ACCESS_KEY": keys.secret_access_key,
        },
    }
    core.create_namespaced_secret(namespace, secret)
    # The feature server takes the same keys, by reference.
    assert _service_step(ctx, kube_api, namespace)["reason"] != "CredentialsMissing"
    deployment = apps.read_namespaced_deployment("eta", namespace).to_dict()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    refs = {
        e["name"]: e["value_from"]["secret_key_ref"]["name"]
        for e in container["env"]
        if e.get("value_from")
    }
    assert refs == dict.fromkeys(
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"), "featurekube-aws"
    )
    runtime = Runtime(kube_api, tmp_path / "runtime", namespaces=frozenset({namespace}))
    (tmp_path / "runtime").mkdir()
    try:
        status = _run_until(
            ctx,
            kube_api,
            namespace,
            runtime,
            _failed,
            "the job reading team-b's source failed",
        )
        failure = _failed(status)
        assert "AccessDenied" in failure or "ACCESS_DENIED" in failure, failure
        assert f"s3://{BUCKET['team-b']}/trips/" in failure, failure

        # The same namespace and key, its own team's source: done, its table written.
        _patch_source(kube_api, namespace, f"s3://{BUCKET['team-a']}/trips/")
        _run_until(
            ctx,
            kube_api,
            namespace,
            runtime,
            lambda s: (
                s.get("latestVersion") == 2
                and _conditions(s).get("Ready", {}).get("status") == "True"
            ),
            "the job reading team-a's source completed",
        )
    finally:
        runtime.stop()
    # With the namespace's key, its table holds the three drivers' features (beside the
    # windows' bookkeeping items).
    items = aws.client("dynamodb", keys).scan(TableName=f"{TABLE_PREFIX}{namespace}.trips.v2")
    drivers = {i["entity_key"]["S"] for i in items["Items"] if "rating" in i}
    assert len(drivers) == 3, items["Items"]


def _failed(status: dict[str, Any], version: int = 1) -> str:
    """The reason a window of ``version`` failed, as the view's status records it; ''
    while none has."""
    for item in status.get("progress") or ():
        if item.get("version") == version:
            for window in item.get("windows") or ():
                if window.get("state") == "Failed":
                    return str(window.get("reason") or "")
    return ""


def _patch_source(kube_api: kubernetes.client.ApiClient, namespace: str, path: str) -> None:
    _custom(kube_api).patch_namespaced_custom_object(
        "featurekube.dev",
        "v1alpha1",
        namespace,
        "featureviews",
        "trips",
        {"spec": {"source": {"batch": {"path": path}}}},
    )


def test_the_operator_refuses_a_view_outside_its_namespace_prefixes(
    kube_api: kubernetes.client.ApiClient, namespace: str, table_prefix: str
) -> None:
    """Confined to team-a's bucket, a view naming team-b's is InvalidSpec, with the path
    and the prefixes named, and nothing is made for it: no snapshot, no table, no job."""
    settings = OperatorSettings(
        table_prefix=table_prefix,
        offline_uri="s3://lake/offline",
        allowed_prefixes=json.dumps({namespace: [f"s3://{BUCKET['team-a']}/"]}),
    )
    ctx = reconcile.Context(
        settings,
        Kube(kube_api),
        OnlineTables(boto3.client("dynamodb")),
        Metrics(),
        lambda: T0 + dt.timedelta(days=1, minutes=5),
    )
    _custom(kube_api).create_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", VIEW
    )
    ready = _conditions(_step(ctx, kube_api, namespace))["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith(
        f"spec.source.batch.path: s3://{BUCKET['team-b']}/trips/ is outside the S3 prefixes "
        f"namespace {namespace} may use (s3://{BUCKET['team-a']}/, "
        f"s3://lake/offline/{namespace}/)"
    ), ready["message"]
    core = kubernetes.client.CoreV1Api(kube_api)
    assert not core.list_namespaced_config_map(
        namespace, label_selector="featurekube.dev/feature-view"
    ).items
    assert not kubernetes.client.BatchV1Api(kube_api).list_namespaced_job(namespace).items
    tables = boto3.client("dynamodb").list_tables()["TableNames"]
    assert not [t for t in tables if t.startswith(table_prefix)]
