"""What the parity check costs: one check of a 100-entity sample, as the operator runs
it once an hour by default, beside the plain lookup and pull of 100 entities it is
built on.

One FeatureView of 10,000 drivers with 5 features (float64, int64, string) is
materialized by the python engine in three daily windows (three Delta commits) into
moto's DynamoDB and S3, on a local platform of its own (the real kube-apiserver holds
the view, its version snapshot, the FeatureService and its serving plan). The feature
server (plaintext, no token checking) runs in a process of its own over DynamoDB.
The checker runs in this process. Both reach moto through a counting proxy
(benchmarks/_counting_proxy.py, a process of its own), which counts their S3 and
DynamoDB requests and the bytes returned: the server's reads for the check's lookup
count, as they are part of what the check costs.

Per check: wall time, CPU seconds of this process (the check, DuckDB's threads
included; not the server's), requests by store and operation, bytes from S3, and
DynamoDB read units, reckoned by DynamoDB's rules from the items read (a Scan: the
sizes of the items it evaluated, eventually consistent, half a unit per 4 KB of each
page; a strongly consistent read: one unit per 4 KB of each item; the server's
lookup: half a unit for each item and for the windows item).

The peer, "lookup + pull, no guards", asks the same server for 100 random drivers
once and pulls them once from the offline tables with the same DuckDB join: the
check's own work less its race guards (the Scan, the items' times read before and
after, the pending windows and the Delta versions read before and after).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import random
import resource
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import kubernetes.client
import kubernetes.config
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq

from benchmarks import _harness
from featurekube._platform import platform, processes
from featurekube.materialize import python_job
from featurekube.online import client
from featurekube.spec import v1alpha1
from featurekube.writer import OnlineWriteSettings
from featurekube_operator import naming, parity, reconcile
from featurekube_operator.dynamo import OnlineTables
from featurekube_operator.kube import Kube
from featurekube_operator.metrics import Metrics
from featurekube_operator.settings import OperatorSettings

REPO = Path(__file__).parents[1]
NAMESPACE = "bench"
BUCKET = "featurekube-bench"
DRIVERS = 10_000
SAMPLE = 100
CHECKS = 7
UTC = dt.UTC
DAY = dt.timedelta(days=1)
T0 = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - 4 * DAY
CHECK = "parity check (100 entities)"
PEER = "lookup + pull, no guards"


def _source(prefix: str) -> str:
    source = f"{prefix}raw/drivers/"
    filesystem, path = pyarrow.fs.FileSystem.from_uri(source)
    rng = random.Random(7)
    rows = [
        (d, T0 + day * DAY + dt.timedelta(hours=1 + d % 20))
        for day in range(3)
        for d in range(DRIVERS)
        if day == 0 or d % 3 == day
    ]
    table = pa.table(
        {
            "driver_id": pa.array([r[0] for r in rows], pa.int64()),
            "ts": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "rating": pa.array([rng.random() * 5 for _ in rows]),
            "speed": pa.array([rng.gauss(40, 10) for _ in rows]),
            "trips": pa.array([rng.randrange(1000) for _ in rows], pa.int64()),
            "acceptance": pa.array([rng.random() for _ in rows]),
            "vehicle": pa.array([rng.choice(["sedan", "van", "bike"]) for _ in rows]),
        }
    )
    pq.write_table(table, f"{path.rstrip('/')}/part-0.parquet", filesystem=filesystem)
    return source


def _view(source: str) -> dict[str, Any]:
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": {"name": "driver-stats", "namespace": NAMESPACE},
        "spec": {
            "owner": "bench",
            "entities": [{"name": "driver_id", "type": "int64"}],
            "source": {"batch": {"path": source, "timestampField": "ts"}},
            "features": [
                {"name": "rating", "type": "float64"},
                {"name": "speed", "type": "float64"},
                {"name": "trips", "type": "int64"},
                {"name": "acceptance", "type": "float64"},
                {"name": "vehicle", "type": "string"},
            ],
            "ttl": "30d",
        },
    }


SERVICE: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureService",
    "metadata": {"name": "eta-model", "namespace": NAMESPACE},
    "spec": {
        "owner": "bench",
        "features": [{"featureView": "driver-stats"}],
        "monitoring": {"parity": {"sampleSize": SAMPLE, "interval": "1h"}},
    },
}


def _attribute_size(value: dict[str, Any]) -> int:
    """An attribute value's size by DynamoDB's rules (numbers: about a byte per two
    digits, plus one)."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        return math.ceil(len(raw.lstrip("-").replace(".", "")) / 2) + 1
    if kind == "B":
        return len(raw)
    return 1


def _item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + _attribute_size(value) for name, value in item.items())


class _ReadUnits:
    """DynamoDB read units of one client's calls, reckoned from what they read."""

    def __init__(self, dynamodb: Any, item_bytes: int) -> None:
        self.units = 0.0
        self.item_bytes = item_bytes
        dynamodb.meta.events.register("after-call.dynamodb.Scan", self._scan)
        dynamodb.meta.events.register("after-call.dynamodb.BatchGetItem", self._batch)
        dynamodb.meta.events.register("after-call.dynamodb.GetItem", self._get)

    def _scan(self, parsed: dict[str, Any], **_: Any) -> None:
        evaluated = int(parsed.get("ScannedCount") or 0)
        self.units += 0.5 * max(1, math.ceil(evaluated * self.item_bytes / 4096))

    def _batch(self, parsed: dict[str, Any], **_: Any) -> None:
        for items in (parsed.get("Responses") or {}).values():
            self.units += len(items) * max(1, math.ceil(self.item_bytes / 4096))

    def _get(self, **_: Any) -> None:
        self.units += 1


def _counts(proxy: str, method: str = "GET") -> dict[str, Any]:
    request = urllib.request.Request(f"{proxy}/__counts", method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        found: dict[str, Any] = json.loads(answer.read())
        return found


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run() -> _harness.Report:
    report = _harness.Report(
        name="parity",
        description=f"one parity check of {SAMPLE} entities of a {DRIVERS:,}-driver view "
        "(5 features, 3 Delta commits), DynamoDB and S3 on moto; once an hour by default",
        baseline=PEER,
    )
    with (
        _harness.scratch_platform() as (endpoints, tmp),
        mock.patch.dict(os.environ, endpoints.environment()),
    ):
        _measure(report, endpoints, tmp)
    return report


def _measure(report: _harness.Report, endpoints: platform.Endpoints, tmp: Path) -> None:
    api = kubernetes.config.new_client_from_config(str(endpoints.kubeconfig))
    moto = os.environ["AWS_ENDPOINT_URL"]
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    settings = OperatorSettings(
        table_prefix="bench.", offline_uri=f"s3://{BUCKET}/offline", parity_settle_seconds=0.0
    )
    ctx = reconcile.Context(settings, Kube(api), OnlineTables(boto3.client("dynamodb")), Metrics())
    custom = kubernetes.client.CustomObjectsApi(api)
    kubernetes.client.CoreV1Api(api).create_namespace(
        kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE))
    )
    group = ("featurekube.dev", "v1alpha1", NAMESPACE)
    custom.create_namespaced_custom_object(
        *group, "featureviews", _view(_source(f"s3://{BUCKET}/"))
    )
    view_body: dict[str, Any] = custom.get_namespaced_custom_object(
        *group, "featureviews", "driver-stats"
    )  # type: ignore[assignment]
    reconcile.reconcile_feature_view(ctx, view_body)
    custom.patch_namespaced_custom_object_status(
        *group, "featureviews", "driver-stats", {"status": {"version": 1}}
    )
    custom.create_namespaced_custom_object(*group, "featureservices", SERVICE)
    service: dict[str, Any] = custom.get_namespaced_custom_object(
        *group, "featureservices", "eta-model"
    )  # type: ignore[assignment]
    outcome = reconcile.reconcile_feature_service(ctx, service)
    custom.patch_namespaced_custom_object_status(
        *group, "featureservices", "eta-model", {"status": outcome.status}
    )
    view = v1alpha1.FeatureView.model_validate(view_body)
    online_table = naming.online_table(settings, NAMESPACE, "driver-stats", 1)
    offline_table = naming.offline_uri(settings, NAMESPACE, "driver-stats", 1)
    for day in range(3):
        python_job.run(
            view,
            T0 + day * DAY,
            T0 + (day + 1) * DAY,
            offline_uri=offline_table,
            online_table=online_table,
            settings=python_job.PythonSettings(online=OnlineWriteSettings(settle_seconds=0.1)),
        )
    plan_path = tmp / "plan.yaml"
    plan_path.write_text(
        kubernetes.client.CoreV1Api(api)
        .read_namespaced_config_map("eta-model-plan", NAMESPACE)
        .data["plan.yaml"]  # type: ignore[index]
    )
    scanned = boto3.client("dynamodb").scan(TableName=online_table, Limit=10)["Items"]
    sample_item = next(i for i in scanned if not i["entity_key"]["S"].startswith("#"))
    item_bytes = _item_size(sample_item)

    server_port, proxy_port = processes.free_port(), processes.free_port()
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    server_log, proxy_log = (tmp / "server.log").open("w"), (tmp / "proxy.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "featurekube_server",
            "--plan",
            str(plan_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(server_port),
            "--metrics-port",
            "0",
        ],
        stdout=server_log,
        stderr=server_log,
        # The server's own reads count too: a check's lookup is one like any other.
        env={**os.environ, "AWS_ENDPOINT_URL": proxy_url},
    )
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks._counting_proxy",
            "--target",
            moto,
            "--port",
            str(proxy_port),
        ],
        stdout=proxy_log,
        stderr=proxy_log,
        cwd=REPO,
    )
    try:
        processes.wait_until(lambda: processes.http_ok(f"{proxy_url}/__counts"), 60)
        target = f"127.0.0.1:{server_port}"
        with client.OnlineClient(target) as warm:
            processes.wait_until(lambda: _answers(warm), 60)
        os.environ["AWS_ENDPOINT_URL"] = proxy_url
        dynamodb = boto3.client("dynamodb")
        units = _ReadUnits(dynamodb, item_bytes)
        checker = parity.ParityCheck(
            settings, Kube(api), dynamodb=dynamodb, connect=lambda _: client.OnlineClient(target)
        )
        service = custom.get_namespaced_custom_object(*group, "featureservices", "eta-model")  # type: ignore[assignment]
        (served,) = checker.served_views(v1alpha1.FeatureService.model_validate(service))

        def check() -> dict[str, Any]:
            result = checker.run(service)
            assert result.status["mismatches"] == 0, result.status
            return result.status

        def peer() -> dict[str, Any]:
            drivers = random.sample(range(DRIVERS), SAMPLE)
            with client.OnlineClient(target) as online:
                online.get_online_features(
                    columns={"driver_id": drivers}, features=list(served.types)
                )
            at = int(time.time() * 1_000_000)
            checker._pull([served], served.keys, [{"driver_id": d} for d in drivers], at)
            return {"entities": SAMPLE}

        check(), peer()  # warm: imports, DuckDB's extensions, connections
        for subject, action in ((CHECK, check), (PEER, peer)):
            walls, cpus, unit_samples = [], [], []
            requests: Counter[str] = Counter()
            received: Counter[str] = Counter()
            entities = []
            for _ in range(CHECKS):
                _counts(proxy_url, "DELETE")
                units.units = 0.0
                cpu, began = _cpu(), time.perf_counter()
                status = action()
                walls.append(time.perf_counter() - began)
                cpus.append(_cpu() - cpu)
                # The server's lookup: each item and the windows item, eventually
                # consistent, each under 4 KB.
                unit_samples.append(units.units + 0.5 * (status["entities"] + 1))
                entities.append(status["entities"])
                counted = _counts(proxy_url)
                requests.update(counted["requests"])
                received.update(counted["bytes"])
            report.add(subject, "wall time per check", "s", walls)
            report.add(subject, "CPU per check", "s", cpus)
            report.add(subject, "DynamoDB read units per check", "RRU", unit_samples)
            dynamo = sum(v for k, v in requests.items() if k.startswith("dynamodb"))
            s3_requests = sum(v for k, v in requests.items() if k.startswith("s3"))
            s3_bytes = sum(v for k, v in received.items() if k.startswith("s3"))
            report.add(subject, "DynamoDB requests per check", "req", [dynamo / CHECKS])
            report.add(subject, "S3 requests per check", "req", [s3_requests / CHECKS])
            report.add(subject, "S3 bytes per check", "KiB", [s3_bytes / CHECKS / 1024])
            report.notes[f"{subject}: requests per check by operation"] = ", ".join(
                f"{k} {v / CHECKS:g}" for k, v in sorted(requests.items())
            )
            report.notes[f"{subject}: entities compared per check"] = str(sorted(entities))
        report.notes["item size (bytes, by DynamoDB's rules)"] = str(item_bytes)
        report.notes["per hour"] = (
            "one check per FeatureService at the default interval (1h): the per-check "
            "figures are the hourly cost"
        )
    finally:
        os.environ["AWS_ENDPOINT_URL"] = moto
        for process in (server, proxy):
            process.terminate()
            process.wait(30)
        server_log.close()
        proxy_log.close()


def _answers(online: client.OnlineClient) -> bool:
    try:
        online.get_online_features(columns={"driver_id": [1]}, features=["rating"], timeout=2)
    except client.FeatureServerError:
        return False
    return True
