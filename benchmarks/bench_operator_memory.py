"""The operator's memory with 200 hourly views, each with 10, then 1,000 windows of
history behind it.

On a local platform of its own, each view is given the state the operator leaves
after materializing its history: a status whose progress record says it is caught up
(``materializedUntil`` at the last hourly tick), its version's snapshot, and the last
SparkApplications the history limit keeps, completed. The operator then runs as a
separate process and reconciles every view a few times (resume, then its timer), and
its peak resident memory is read with :mod:`benchmarks._memory`. The history sets
only the record's times: the record, and the objects the operator watches, do not
grow with it, and the figures at 10 and at 1,000 windows say whether memory does.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import kubernetes.client
import kubernetes.config

from benchmarks import _harness, _memory, _views
from benchmarks.bench_operator import _reconciles
from featurekube._platform import platform, processes
from featurekube.spec import v1alpha1
from featurekube_operator import desired
from featurekube_operator.settings import OperatorSettings
from featurekube_operator.windows import Window

VIEWS = int(os.environ.get("FEATUREKUBE_BENCH_VIEWS", "200"))
HISTORIES = (10, 1000)
KEPT = OperatorSettings().succeeded_history_limit
ROUNDS = 3
"""Reconciles of every view watched, after the first."""
INTERVAL = 10
TIMEOUT = 900.0
H = dt.timedelta(hours=1)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _view(namespace: str, i: int, start: dt.datetime) -> dict[str, Any]:
    return _views.feature_view(
        f"view-{i:03d}",
        namespace,
        f"s3://featurekube-bench/raw/view-{i:03d}/",
        {"schedule": "@hourly", "startTime": _iso(start), "engine": "spark"},
    )


def _seed(
    api: kubernetes.client.ApiClient, namespace: str, i: int, start: dt.datetime, end: dt.datetime
) -> None:
    """One view as the operator leaves it once its history is materialized."""
    custom, core = kubernetes.client.CustomObjectsApi(api), kubernetes.client.CoreV1Api(api)
    settings = OperatorSettings(table_prefix="bench.")
    body = cast(
        dict[str, Any],
        custom.create_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureviews", _view(namespace, i, start)
        ),
    )
    view = v1alpha1.FeatureView.model_validate(body)
    # The client sends a dict as it is.
    snapshot = desired.render_snapshot(view, 1, settings, body)
    core.create_namespaced_config_map(namespace, cast(kubernetes.client.V1ConfigMap, snapshot))
    last = {"start": _iso(end - H), "end": _iso(end), "state": "Succeeded", "attempt": 1}
    last |= {"finishedAt": _iso(end), "rows": {"read": 1200, "offline": 1180, "online": 200}}
    status = {
        "version": 1,
        "latestVersion": 1,
        "progress": [
            {
                "version": 1,
                "materializedUntil": _iso(end),
                "plannedUntil": _iso(end),
                "windows": [],
                "backfills": [],
                "lastWindow": {**last, "engine": "spark"},
            }
        ],
        "lastMaterializedWindow": {"start": _iso(start), "end": _iso(end)},
    }
    custom.patch_namespaced_custom_object_status(
        "featurekube.dev",
        "v1alpha1",
        namespace,
        "featureviews",
        view.metadata.name,
        {"status": status},
    )
    for k in range(KEPT):
        window = Window(end - (k + 1) * H, end - k * H)
        app = desired.render_spark_application(view, 1, window, settings, body)
        custom.create_namespaced_custom_object(
            "sparkoperator.k8s.io", "v1beta2", namespace, "sparkapplications", app
        )
        custom.patch_namespaced_custom_object_status(
            "sparkoperator.k8s.io",
            "v1beta2",
            namespace,
            "sparkapplications",
            app["metadata"]["name"],
            {
                "status": {
                    "applicationState": {"state": "COMPLETED"},
                    "driverInfo": {},
                    "terminationTime": _iso(window.end),
                }
            },
        )


def run() -> _harness.Report:
    report = _harness.Report(
        name="operator_memory",
        description=f"operator memory with {VIEWS} hourly views of 10 and 1,000 windows' history",
    )
    with _harness.scratch_platform() as (endpoints, tmp):
        for windows in HISTORIES:
            _measure(report, endpoints, tmp, windows)
    return report


def _measure(
    report: _harness.Report, endpoints: platform.Endpoints, tmp: Path, windows: int
) -> None:
    api = kubernetes.config.new_client_from_config(str(endpoints.kubeconfig))
    namespace = f"history-{windows}"
    kubernetes.client.CoreV1Api(api).create_namespace(
        kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=namespace))
    )
    # Caught up to the last tick: the operator has nothing to start until the next one.
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    start = end - windows * H
    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: _seed(api, namespace, i, start, end), range(VIEWS)))
    seeded = time.perf_counter() - began
    metrics_port = processes.free_port()
    env = {
        **os.environ,
        **endpoints.environment(),
        "KUBECONFIG": str(endpoints.kubeconfig),
        "FEATUREKUBE_TABLE_PREFIX": "bench.",
        "FEATUREKUBE_RECONCILE_INTERVAL_SECONDS": str(INTERVAL),
        "FEATUREKUBE_METRICS_PORT": str(metrics_port),
    }
    argv = [sys.executable, "-m", "featurekube_operator", "--standalone", "--namespace", namespace]
    argv += ["--liveness", "", "--log-format", "plain"]
    with (tmp / f"operator-{windows}.log").open("wb") as log:
        operator = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    memory = _memory.TreeWatch(operator.pid).start()
    try:
        processes.wait_until(
            lambda: processes.http_ok(f"http://127.0.0.1:{metrics_port}/metrics"), 60
        )
        began = time.perf_counter()
        while _reconciles(metrics_port) < VIEWS * (1 + ROUNDS):
            if time.perf_counter() - began > TIMEOUT:
                raise RuntimeError(f"fewer than {VIEWS * (1 + ROUNDS)} reconciles in {TIMEOUT} s")
            time.sleep(1)
        memory.stop()  # read while the operator still runs
        peak = memory.total_mib()
        reconciles = _reconciles(metrics_port)
    finally:
        memory.stop()
        operator.terminate()
        operator.wait(timeout=30)
    listed = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
        "sparkoperator.k8s.io", "v1beta2", namespace, "sparkapplications"
    )
    apps = cast(dict[str, Any], listed)["items"]
    report.add("featurekube operator", f"peak memory, {windows} windows", "MiB", [peak])
    report.add(
        "featurekube operator",
        f"SparkApplications per view, {windows} windows",
        "objects",
        [len(apps) / VIEWS],
    )
    report.notes[f"{windows} windows: reconciles watched"] = f"{reconciles:.0f}"
    report.notes[f"{windows} windows: seconds to seed {VIEWS} views"] = f"{seeded:.0f}"
