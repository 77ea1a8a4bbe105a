"""The whole system on the real node: featurekube's chart installed by helm (the
operator a pod of its image under the chart's ServiceAccount), each window run by the
Kubeflow Spark Operator as a driver and executor pods, each feature server a Deployment
of pods behind a Service, the SDK, and the example feature repo with its generated data.

One backfill serves every test of this module: apply -> materialize -> serve -> query,
in the namespace of the run's one install of the chart (``node_system`` in
tests/conftest.py, :mod:`node_system`), which the stream's module on the node shares.
The chart sets the feature servers up for TLS only (a certificate from the namespace's
TLS Secret) and ServiceAccount tokens, which they have the API server review as their
own ServiceAccount (bound to system:auth-delegator); the test reaches them from the
machine through ``kubectl port-forward`` and calls them with the CA and a token of a
ServiceAccount of the namespace.

The faults are real ones: a Spark executor pod killed while its window runs (during the
module's backfill), a feature-server pod killed, and the operator's pod killed
mid-backfill; each test then checks the data, not only the status.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from conftest import IMAGE_BUILD_SECONDS
from featurekube import errors
from featurekube._platform import chart
from featurekube.online.client import FeatureServerError
from featurekube.store import FeatureStore
from featurekube_operator import naming
from node_system import POD_SECONDS, System, pod_ready
from node_system import ready as _ready
from support import eventually

_eventually = functools.partial(eventually, interval=1.0)
REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "examples"
VIEWS = ("driver-trip-stats", "driver-profile", "driver-location-live")
EXECUTOR_VIEW = "driver-trip-stats"
"""The view of the backfill whose Spark executor is killed while its window runs."""
TIMEOUT = 900.0
NODE_START_SECONDS = 900.0
"""The node's start and the image imports, on a busy machine (warm: a few minutes)."""
# pytest-timeout's limit must not cut the waits inside a test short: the module's first
# test may pay for building the images and starting the node, then for the module
# fixture's wait, and a test may then wait TIMEOUT itself.
pytestmark = pytest.mark.timeout(IMAGE_BUILD_SECONDS + NODE_START_SECONDS + 2 * TIMEOUT + 300)


@dataclasses.dataclass
class ExecutorKill:
    """A Spark executor pod killed while its window's driver ran."""

    pod: str
    application: str
    uid: str
    """The application's uid: a retried window is a new object of the same name."""
    killed_at: float
    completed_after: float | None = None
    """Seconds from the kill to the window's SparkApplication COMPLETED."""
    state: str = ""


@dataclasses.dataclass
class Backfill:
    """The module's backfill on the shared install, and the executor it killed."""

    system: System
    executor_kill: ExecutorKill | None = None

    def kill_an_executor_mid_window(self) -> None:
        """Once: kill a running executor of :data:`EXECUTOR_VIEW`'s window while its
        driver runs; afterwards, note when that window's application completes."""
        if self.executor_kill is not None:
            if self.executor_kill.completed_after is None:
                apps = {
                    a["metadata"]["name"]: a for a in self.system.spark_applications(EXECUTOR_VIEW)
                }
                app = apps.get(self.executor_kill.application) or {}
                state = (app.get("status") or {}).get("applicationState", {})
                self.executor_kill.state = state.get("state", "")
                if app.get("metadata", {}).get("uid") != self.executor_kill.uid:
                    # The window failed, and the operator runs it again.
                    self.executor_kill.state = "RETRIED"
                if self.executor_kill.state in ("COMPLETED", "FAILED", "RETRIED"):
                    self.executor_kill.completed_after = (
                        time.monotonic() - self.executor_kill.killed_at
                    )
            return
        view = f"{naming.LABEL_FEATURE_VIEW}={EXECUTOR_VIEW}"
        drivers = self.system.pods(f"spark-role=driver,{view}")
        executors = self.system.pods(f"spark-role=executor,{view}")
        running = [p for p in executors if p.status.phase == "Running"]
        if not running or not any(d.status.phase == "Running" for d in drivers):
            return
        pod = running[0]
        uids = {
            a["metadata"]["name"]: a["metadata"]["uid"]
            for a in self.system.spark_applications(EXECUTOR_VIEW)
        }
        application = (pod.metadata.labels or {}).get("sparkoperator.k8s.io/app-name", "")
        if application not in uids:
            # Without the Spark Operator's label: the view's newest application.
            application = list(uids)[-1] if uids else ""
        self.system.kill_pod(pod.metadata.name)
        self.executor_kill = ExecutorKill(
            pod.metadata.name, application, uids.get(application, ""), time.monotonic()
        )
        print(f"killed executor pod {pod.metadata.name} of {application} mid-window")


def _example(name: str, namespace: str, raw: str) -> dict[str, Any]:
    """The example ``name`` in ``namespace``, reading raw data under ``raw``."""
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    batch = body["spec"].get("source", {}).get("batch")
    if batch:
        batch["path"] = batch["path"].replace("s3://featurekube-demo/raw/", raw)
    # The node has two cores, which the Spark jobs need too.
    return chart.fit_to_node(body)


@pytest.fixture(scope="module")
def backfill(node_system: System) -> Backfill:
    """The example views and the eta-model service applied on the shared install, the
    views backfilled (an executor of one killed mid-window) and the service serving."""
    running = Backfill(node_system)
    namespace = node_system.namespace
    raw = f"s3://featurekube/{namespace}/raw/"
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).date().isoformat()
    generate = [sys.executable, str(EXAMPLES / "generate_data.py"), "--out", raw, "--start", start]
    subprocess.run(
        [*generate, "--days", "2", "--drivers", "25", "--riders", "100", "--seed", "11"],
        check=True,
        env=dict(os.environ),
    )
    for name in (*VIEWS, "eta-model"):
        body = _example(name, namespace, raw)
        if name == EXECUTOR_VIEW:
            # On Spark's executors, whatever the window's size (auto would compute so
            # small a window in the driver's Python).
            body["spec"]["materialization"]["engine"] = "spark"
        node_system.apply(body)

    def materialized() -> bool:
        running.kill_an_executor_mid_window()
        return all(_ready(node_system.get("featureviews", v)) for v in VIEWS) and _ready(
            node_system.get("featureservices", "eta-model")
        )

    _eventually(
        materialized,
        TIMEOUT,
        "the views materialize and the eta-model server serves\n"
        + chart.describe_pods(node_system.core, namespace),
    )

    def executor_window_ended() -> bool:
        # The view may be Ready before the killed executor's application says COMPLETED.
        running.kill_an_executor_mid_window()
        kill = running.executor_kill
        return kill is None or kill.completed_after is not None

    _eventually(executor_window_ended, POD_SECONDS, "the killed executor's window ends")
    return running


@pytest.fixture
def system(backfill: Backfill) -> System:
    return backfill.system


def test_online_vectors_equal_the_training_frame_at_the_same_time(system: System) -> None:
    """Parity: after materializing up to the end of the last window, the online value of
    every entity equals the SDK's point-in-time value just before that end."""
    compared = _compare_online_with_offline(system, ("driver-trip-stats", "driver-profile"))
    assert compared >= 200


DRIVERS = list(range(1001, 1026))


def _served(system: System) -> dict[str, dict[str, Any]]:
    service = system.get("featureservices", "eta-model")
    return {f["name"]: f for f in service["status"]["resolvedFeatures"] if f.get("featureView")}


def _online(system: System, views: tuple[str, ...]) -> dict[str, list[Any]]:
    """Every driver's online values of ``views``' features, from the eta-model server."""
    served = _served(system)
    with system.client() as client:
        vector: dict[str, list[Any]] = client.get_online_features(
            columns={"driver_id": DRIVERS},
            features=[n for n in served if served[n]["featureView"] in views],
        ).to_dict(statuses=True)
    return vector


def _compare_online_with_offline(system: System, views: tuple[str, ...]) -> int:
    """Check that each driver's online value of each feature of ``views`` equals the
    SDK's point-in-time value just before the end of the view's last window; return
    how many values were compared."""
    drivers = DRIVERS
    served = _served(system)
    online = _online(system, views)
    store = FeatureStore.from_cluster(system.namespace)
    compared = 0
    for view in views:
        status = system.get("featureviews", view)["status"]
        end = status["lastMaterializedWindow"]["end"]
        # The last window's report, from its driver's (or Job's pod's) termination
        # message, with the engine that computed it.
        assert set(status["rows"]) == {"read", "offline", "online", "engine"}
        assert status["rows"]["engine"] in ("python", "spark"), status["rows"]
        # Counts only: the last window may lie past the sample data's end, and a tiled
        # window reads just its own span, so any of them may be 0 (docs/semantics.md).
        counts = [status["rows"][key] for key in ("read", "offline", "online")]
        assert all(isinstance(n, int) and n >= 0 for n in counts), status["rows"]
        t = dt.datetime.fromisoformat(end.replace("Z", "+00:00")) - dt.timedelta(microseconds=1)
        names = [n for n, f in served.items() if f["featureView"] == view]
        import pandas as pd

        entity_df = pd.DataFrame({"driver_id": drivers, "event_timestamp": [t] * len(drivers)})
        offline = store.get_historical_features(
            entity_df, [f"{view}:{n}" for n in names]
        ).to_pandas()
        for name in names:
            for row, driver in enumerate(drivers):
                want, got = offline[name].iloc[row], online[name][row]
                if _missing(want):
                    assert _missing(got), (
                        f"{view}.{name} of driver {driver}: online {got!r}, offline null"
                    )
                else:
                    assert got == want or (
                        isinstance(got, float) and math.isclose(got, want, rel_tol=0, abs_tol=0)
                    ), f"{view}.{name} of driver {driver}: online {got!r} != offline {want!r}"
                compared += 1
    return compared


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def test_a_pushed_value_is_served_and_a_transformation_computed(system: System) -> None:
    now = dt.datetime.now(dt.UTC)
    with system.client() as client:
        client.push(
            "driver-location-live",
            {
                "driver_id": [1001],
                "current_zone_id": [42],
                "current_speed_kmh": [30.0],
                "event_timestamp": [now],
            },
        )
        vector = client.get_online_features(
            columns={"driver_id": [1001, 999999]},
            feature_service="eta-model",
            request_data={"trip_distance_km": [5.0, 5.0], "pickup_hour": [8, 12]},
        ).to_dict(statuses=True)

    assert vector["current_zone_id"] == [42, None]
    assert vector["current_zone_id__status"][1] == "NOT_FOUND"
    assert vector["is_rush_hour"] == [True, False]


def test_a_call_without_a_token_is_unauthenticated(system: System) -> None:
    with system.client(token=False) as client, pytest.raises(FeatureServerError) as refused:
        client.get_online_features(columns={"driver_id": [1001]}, feature_service="eta-model")

    assert refused.value.code == "UNAUTHENTICATED"
    assert "no token" in str(refused.value)


def test_a_feature_service_deleted_stops_its_server(system: System) -> None:
    extra = _example("eta-model", system.namespace, "")
    extra["metadata"]["name"] = "eta-model-canary"
    extra["spec"]["server"] = {"replicas": 1}
    system.apply(extra)
    _eventually(
        lambda: _ready(system.get("featureservices", "eta-model-canary")),
        POD_SECONDS,
        "the canary serves",
    )
    selector = f"{naming.LABEL_FEATURE_SERVICE}=eta-model-canary"
    assert system.pods(selector), "the canary serves from no pod"
    apps = kubernetes.client.AppsV1Api(system.api)

    system.custom.delete_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", system.namespace, "featureservices", "eta-model-canary"
    )

    _eventually(
        lambda: (
            not system.pods(selector)
            and not apps.list_namespaced_deployment(
                system.namespace, field_selector="metadata.name=eta-model-canary"
            ).items
        ),
        POD_SECONDS,
        "its Deployment and pods gone",
    )


def test_a_killed_feature_server_pod_is_replaced_and_serves_the_same_values(
    system: System,
) -> None:
    views = ("driver-trip-stats", "driver-profile")
    before = _online(system, views)
    selector = f"{naming.LABEL_FEATURE_SERVICE}=eta-model"
    [pod] = system.pods(selector)

    system.kill_pod(pod.metadata.name)
    killed = time.monotonic()

    def replaced() -> bool:
        pods = [p for p in system.pods(selector) if p.metadata.name != pod.metadata.name]
        return any(pod_ready(p) for p in pods)

    _eventually(replaced, POD_SECONDS, "a new server pod Ready")
    after = _eventually(
        lambda: _online(system, views),
        POD_SECONDS,
        "the new pod serves",
        ignore=(FeatureServerError, errors.PlatformError),
    )
    print(f"feature-server pod killed -> vectors served again: {time.monotonic() - killed:.1f} s")
    assert after == before
    assert sum(s == "PRESENT" for k, v in after.items() if k.endswith("__status") for s in v)


def test_a_spark_executor_killed_mid_window_the_window_completes_without_duplicates_or_gaps(
    backfill: Backfill,
) -> None:
    system = backfill.system
    kill = backfill.executor_kill
    assert kill is not None, f"no executor of {EXECUTOR_VIEW} ran while its driver did"
    # Completed on its first attempt: Spark ran the lost executor's tasks again.
    assert kill.state == "COMPLETED", kill
    print(f"executor pod killed -> its window COMPLETED: {kill.completed_after:.1f} s")
    status = system.get("featureviews", EXECUTOR_VIEW)["status"]
    import deltalake

    rows = deltalake.DeltaTable(status["offlineUri"]).to_pyarrow_table(
        columns=["driver_id", "event_timestamp"]
    )
    keys = list(
        zip(
            rows.column("driver_id").to_pylist(),
            rows.column("event_timestamp").to_pylist(),
            strict=True,
        )
    )
    assert keys and len(keys) == len(set(keys)), "duplicate offline rows"
    # No gap online: every driver's value is the offline store's at the window's end.
    assert _compare_online_with_offline(system, (EXECUTOR_VIEW,)) >= 25


def test_a_failing_source_is_reported_on_the_view(system: System) -> None:
    broken = _example(
        "driver-profile", system.namespace, f"s3://featurekube/{system.namespace}/nowhere/"
    )
    broken["metadata"]["name"] = "driver-profile-broken"
    system.apply(broken)

    def degraded() -> str | None:
        status = system.get("featureviews", "driver-profile-broken").get("status") or {}
        for condition in status.get("conditions") or []:
            if condition["type"] == "Degraded" and condition["status"] == "True":
                return str(condition["message"])
        return None

    message = _eventually(degraded, TIMEOUT, "the view reports its failed window")
    assert "failed" in message and "attempt 1" in message


def test_a_data_change_is_served_as_a_new_version(system: System) -> None:
    body = _example("driver-profile", system.namespace, "")
    body["spec"] = system.get("featureviews", "driver-profile")["spec"]
    # A different set of rows is different data: a new version, backfilled anew.
    sql = body["spec"]["transformation"]["sql"]
    body["spec"]["transformation"]["sql"] = sql.replace(
        "WHERE NOT is_test_account", "WHERE NOT is_test_account AND rating IS NOT NULL"
    )
    system.apply(body)

    def serving_v2() -> bool:
        view = system.get("featureviews", "driver-profile")
        return (view.get("status") or {}).get("version") == 2 and _ready(view)

    _eventually(serving_v2, TIMEOUT, "version 2 serves")
    status = system.get("featureviews", "driver-profile")["status"]
    assert status["onlineTable"].endswith(".v2") and status["offlineUri"].endswith("/v2")


def test_an_operator_killed_mid_backfill_resumes_without_duplicates_or_gaps(system: System) -> None:
    body = _example("rider-features", system.namespace, "")
    body["metadata"]["name"] = "rider-features-restart"
    raw = system.get("featureviews", "driver-profile")["spec"]["source"]["batch"]["path"]
    body["spec"]["source"]["batch"]["path"] = raw.replace("/drivers/", "/riders/")
    system.apply(body)
    custom = system.custom

    def apps() -> list[dict[str, Any]]:
        """The view's SparkApplications and Jobs (windows on the python engine)."""
        items = custom.list_namespaced_custom_object(
            "sparkoperator.k8s.io", "v1beta2", system.namespace, "sparkapplications"
        )["items"]
        jobs = kubernetes.client.BatchV1Api(system.api).list_namespaced_job(system.namespace)
        items += system.api.sanitize_for_serialization(jobs)["items"]
        return [
            a
            for a in items
            if (a["metadata"].get("labels") or {}).get("featurekube.dev/feature-view")
            == body["metadata"]["name"]
        ]

    _eventually(apps, TIMEOUT, "the backfill starts")
    old = system.operator_pod()
    assert old is not None
    system.kill_pod(old.metadata.name)
    killed = time.monotonic()

    def restarted() -> bool:
        pod = system.operator_pod()
        return pod is not None and pod.metadata.uid != old.metadata.uid and pod_ready(pod)

    _eventually(restarted, POD_SECONDS, "the Deployment's new operator pod Ready")
    print(f"operator pod killed -> new operator pod Ready: {time.monotonic() - killed:.1f} s")
    _eventually(
        lambda: _ready(system.get("featureviews", "rider-features-restart")),
        TIMEOUT,
        "Ready after the restart",
    )
    print(f"operator pod killed -> the view Ready: {time.monotonic() - killed:.1f} s")
    windows = sorted(
        (
            a["metadata"]["annotations"]["featurekube.dev/window-start"],
            a["metadata"]["annotations"]["featurekube.dev/window-end"],
        )
        for a in apps()
    )
    assert len(windows) == len(set(windows)), "a window ran twice"
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows)), "a gap between windows"
    status = system.get("featureviews", "rider-features-restart")["status"]
    assert status["lastMaterializedWindow"]["end"] == windows[-1][1].replace("+00:00", "Z")
    import deltalake

    rows = deltalake.DeltaTable(status["offlineUri"]).to_pyarrow_table(
        columns=["rider_id", "event_timestamp"]
    )
    keys = list(
        zip(
            rows.column("rider_id").to_pylist(),
            rows.column("event_timestamp").to_pylist(),
            strict=True,
        )
    )
    assert keys and len(keys) == len(set(keys)), "duplicate offline rows"
