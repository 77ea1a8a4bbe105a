"""The operator under load: 200 FeatureViews and 20 FeatureServices applied at once.

Measured on a local platform of its own, with the operator as a separate process
running under its least-privilege ClusterRole: the time until every object is Ready
(this benchmark completes SparkApplications and readies pods, as the Spark Operator
and the kubelet would), the operator's peak memory, and its API requests per reconcile
(from the API server's audit log). The peer is the API server alone: the time to
create the same 220 objects, the floor any operator's Ready time stands on.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, cast

import kubernetes.client
import kubernetes.config
import yaml

from benchmarks import _harness, _memory, _views
from featurekube._platform import platform, processes, runtime

REPO = Path(__file__).parents[1]
VIEWS = int(os.environ.get("FEATUREKUBE_BENCH_VIEWS", "200"))
SERVICES = int(os.environ.get("FEATUREKUBE_BENCH_SERVICES", "20"))
NAMESPACE = "bench"
OPERATOR_USER = "featurekube-dev-unprivileged"
TIMEOUT = 900.0
REPORT = json.dumps({"published": True, "rows": {"read": 1200, "offline": 1180, "online": 200}})


def _view(i: int) -> dict[str, Any]:
    # The benchmark plays the Spark Operator: keep every window a SparkApplication
    # (auto would send small later windows to Jobs, which it does not complete).
    return _views.feature_view(
        f"view-{i:03d}",
        NAMESPACE,
        f"s3://featurekube-bench/raw/view-{i:03d}/",
        {"schedule": "@daily", "startTime": "2026-01-01T00:00:00Z", "engine": "spark"},
    )


def _service(i: int) -> dict[str, Any]:
    per = max(VIEWS // SERVICES, 1)
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureService",
        "metadata": {"name": f"model-{i:02d}", "namespace": NAMESPACE},
        "spec": {
            "owner": "bench",
            "features": [
                {"featureView": f"view-{v:03d}", "prefix": f"v{v}_"}
                for v in range(i * per, min((i + 1) * per, VIEWS))
            ],
            "server": {"replicas": 1},
        },
    }


def _ready(body: dict[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _items(found: object) -> list[dict[str, Any]]:
    """The ``items`` of a custom-object list, which the client types as ``object``."""
    items: list[dict[str, Any]] = cast(dict[str, Any], found)["items"]
    return items


def _act_as_spark_operator_and_kubelet(api: kubernetes.client.ApiClient) -> None:
    custom, core = kubernetes.client.CustomObjectsApi(api), kubernetes.client.CoreV1Api(api)
    apps = _items(
        custom.list_namespaced_custom_object(
            "sparkoperator.k8s.io", "v1beta2", NAMESPACE, "sparkapplications"
        )
    )
    for app in apps:
        if not (app.get("status") or {}).get("applicationState"):
            name = app["metadata"]["name"]
            # The driver leaves its report as its pod's termination message.
            runtime.record_driver_pod(api, app, 0, REPORT)
            custom.patch_namespaced_custom_object_status(
                "sparkoperator.k8s.io",
                "v1beta2",
                NAMESPACE,
                "sparkapplications",
                name,
                {
                    "status": {
                        "applicationState": {"state": "COMPLETED"},
                        "driverInfo": {"podName": f"{name}-driver"},
                    }
                },
            )
    now = dt.datetime.now(dt.UTC).isoformat()
    for pod in core.list_namespaced_pod(NAMESPACE).items:
        if pod.metadata is None or pod.metadata.name is None:
            continue
        if pod.status is None or pod.status.phase in (None, "Pending"):
            core.patch_namespaced_pod_status(
                pod.metadata.name,
                NAMESPACE,
                {
                    "status": {
                        "phase": "Running",
                        "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": now}
                        ],
                    }
                },
            )


def _count_ready(api: kubernetes.client.ApiClient) -> int:
    custom = kubernetes.client.CustomObjectsApi(api)
    total = 0
    for plural in ("featureviews", "featureservices"):
        items = _items(
            custom.list_namespaced_custom_object("featurekube.dev", "v1alpha1", NAMESPACE, plural)
        )
        total += sum(_ready(item) for item in items)
    return total


def _reconciles(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("featurekube_reconciles_total{")
    )


def _operator_requests(audit_log: Path) -> int:
    count = 0
    with audit_log.open() as lines:
        for line in lines:
            event = json.loads(line)
            if event.get("user", {}).get("username") == OPERATOR_USER:
                count += 1
    return count


def run() -> _harness.Report:
    report = _harness.Report(
        name="operator",
        description=f"{VIEWS} FeatureViews + {SERVICES} FeatureServices applied at once",
        baseline="API server alone",
    )
    # No local runtime: this benchmark plays the Spark Operator and the kubelet, and
    # a runtime would race it to run the (sourceless) windows with spark-submit.
    with _harness.scratch_platform(audit=True) as (endpoints, tmp):
        _measure(report, endpoints, tmp)
    return report


def _measure(report: _harness.Report, endpoints: platform.Endpoints, tmp: Path) -> None:
    api = kubernetes.config.new_client_from_config(str(endpoints.kubeconfig))
    core, rbac = kubernetes.client.CoreV1Api(api), kubernetes.client.RbacAuthorizationV1Api(api)
    core.create_namespace(
        kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE))
    )
    role = yaml.safe_load((REPO / "operator" / "manifests" / "rbac.yaml").read_text())
    rbac.create_cluster_role(role)
    rbac.create_cluster_role_binding(
        kubernetes.client.V1ClusterRoleBinding(
            metadata=kubernetes.client.V1ObjectMeta(name="featurekube-operator"),
            role_ref=kubernetes.client.V1RoleRef(
                api_group="rbac.authorization.k8s.io",
                kind="ClusterRole",
                name=role["metadata"]["name"],
            ),
            subjects=[kubernetes.client.RbacV1Subject(kind="User", name=OPERATOR_USER)],
        )
    )
    metrics_port = processes.free_port()
    env = {
        **os.environ,
        **endpoints.environment(),
        "KUBECONFIG": str(endpoints.kubeconfig_unprivileged),
        "FEATUREKUBE_TABLE_PREFIX": "bench.",
        "FEATUREKUBE_RECONCILE_INTERVAL_SECONDS": "10",
        "FEATUREKUBE_BACKFILL_WINDOW_SECONDS": str(400 * 86400),
        "FEATUREKUBE_METRICS_PORT": str(metrics_port),
    }
    argv = [sys.executable, "-m", "featurekube_operator", "--standalone", "--namespace", NAMESPACE]
    argv += ["--liveness", "", "--log-format", "plain"]
    with (tmp / "operator.log").open("wb") as log:
        operator = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    memory = _memory.TreeWatch(operator.pid).start()
    try:
        processes.wait_until(
            lambda: processes.http_ok(f"http://127.0.0.1:{metrics_port}/metrics"), 60
        )
        custom = kubernetes.client.CustomObjectsApi(api)
        objects = [_view(i) for i in range(VIEWS)] + [_service(i) for i in range(SERVICES)]

        def create(body: dict[str, Any]) -> None:
            plural = "featureviews" if body["kind"] == "FeatureView" else "featureservices"
            custom.create_namespaced_custom_object(
                "featurekube.dev", "v1alpha1", NAMESPACE, plural, body
            )

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(create, objects))
        applied = time.perf_counter() - started
        while (ready := _count_ready(api)) < len(objects):
            if time.perf_counter() - started > TIMEOUT:
                raise RuntimeError(f"only {ready} of {len(objects)} Ready after {TIMEOUT:.0f} s")
            _act_as_spark_operator_and_kubelet(api)
            time.sleep(1)
        all_ready = time.perf_counter() - started
        views = _items(
            custom.list_namespaced_custom_object(
                "featurekube.dev", "v1alpha1", NAMESPACE, "featureviews"
            )
        )
        with_rows = sum(bool((v.get("status") or {}).get("rows")) for v in views)
        memory.stop()  # read while the operator still runs
        peak = memory.total_mib()
        reconciles = _reconciles(metrics_port)
    finally:
        memory.stop()
        operator.terminate()
        operator.wait(timeout=30)
    requests = _operator_requests(endpoints.log_dir / "audit.log")
    report.add("featurekube operator", "time to all Ready", "s", [all_ready])
    report.add("API server alone", "time to all Ready", "s", [applied])
    report.add("featurekube operator", "peak memory", "MiB", [peak])
    report.add(
        "featurekube operator", "API requests per reconcile", "req", [requests / max(reconciles, 1)]
    )
    report.notes.update(
        {
            "objects": str(len(objects)),
            "reconciles": f"{reconciles:.0f}",
            "operator API requests": str(requests),
            "reconcile interval": "10 s",
            "views whose status has the rows of their last window (when all Ready)": str(with_rows),
        }
    )
