"""The whole system on the local platform: the real operator (a separate process), the
local runtime running each window with spark-submit and each feature server as a
process, the SDK, and the example feature repo with its generated data.

One backfill serves every test of this module: apply -> materialize -> serve -> query.
The operator is set up as the chart sets it: feature servers take TLS only (a
certificate from the namespace's TLS Secret) and ServiceAccount tokens, which they have
the API server review as their own ServiceAccount (bound to system:auth-delegator);
the test calls them with the CA and a token of a ServiceAccount of the namespace.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from featurekube._platform import components, pki, processes
from featurekube._platform.platform import Endpoints
from featurekube._platform.runtime import Runtime
from featurekube.online.client import FeatureServerError, OnlineClient
from featurekube.store import FeatureStore
from support import eventually

_eventually = functools.partial(eventually, interval=1.0)
REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "examples"
VIEWS = ("driver-trip-stats", "driver-profile", "driver-location-live")
TIMEOUT = 900.0
TLS_SECRET = "featurekube-serving-tls"
SERVER_ACCOUNTS = ("featurekube-feature-server", "eta-feature-server")
"""The chart's ServiceAccount of feature servers, and the one the example's
spec.server.serviceAccountName names."""
CALLER_ACCOUNT = "eta-model-client"
# pytest-timeout's limit must not cut the waits inside a test short: the first test
# also pays for the module fixture's wait, and a test may then wait TIMEOUT itself.
pytestmark = pytest.mark.timeout(2 * TIMEOUT + 120)


def _ready(body: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (body.get("status") or {}).get("conditions") or []
    )


class System:
    """The namespace under test, its operator process and its runtime thread."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str, root: Path) -> None:
        self.api, self.namespace, self.root = api, namespace, root
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.runtime = Runtime(api, root / "runtime", namespaces=frozenset({namespace}))
        (root / "runtime").mkdir(parents=True, exist_ok=True)
        self.operator: subprocess.Popen[bytes] | None = None
        self.ca_file = self.token_file = root / "unset"
        self.binding = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_runtime, daemon=True)
        self._thread.start()

    def _run_runtime(self) -> None:
        while not self._stop.is_set():
            try:
                self.runtime.step()
            except Exception as exc:  # keep serving the test; the next round retries
                print(f"runtime: {exc}", file=sys.stderr)
            self._stop.wait(0.5)

    def secure(self) -> None:
        """What the chart and the platform team set up for feature servers in a
        workload namespace, and a caller: the TLS Secret, the servers' ServiceAccounts
        allowed to review tokens, and a token of a ServiceAccount of the namespace
        (which spec.access, unset, lets read and push)."""
        core = kubernetes.client.CoreV1Api(self.api)
        now = dt.datetime.now(dt.UTC)
        ca = pki.new_authority("featurekube-e2e-serving-ca", now)
        hosts = (f"*.{self.namespace}.svc", f"*.{self.namespace}.svc.cluster.local")
        pair = pki.issue_certificate(
            ca, hosts[0], now, hosts=(*hosts, "localhost", "127.0.0.1"), server=True
        )
        core.create_namespaced_secret(
            self.namespace,
            {
                "metadata": {"name": TLS_SECRET},
                "type": "kubernetes.io/tls",
                "stringData": {
                    "tls.crt": pair.cert_pem.decode(),
                    "tls.key": pair.key_pem.decode(),
                    "ca.crt": ca.pair.cert_pem.decode(),
                },
            },
        )
        self.ca_file = self.root / "ca.crt"
        self.ca_file.write_bytes(ca.pair.cert_pem)
        for account in (*SERVER_ACCOUNTS, CALLER_ACCOUNT):
            core.create_namespaced_service_account(self.namespace, {"metadata": {"name": account}})
        self.binding = f"{self.namespace}-feature-server-auth-delegator"
        kubernetes.client.RbacAuthorizationV1Api(self.api).create_cluster_role_binding(
            {
                "metadata": {"name": self.binding},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:auth-delegator",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": account, "namespace": self.namespace}
                    for account in SERVER_ACCOUNTS
                ],
            }
        )
        request = {"spec": {"expirationSeconds": 2 * 3600}}
        answer = core.create_namespaced_service_account_token(
            CALLER_ACCOUNT, self.namespace, request
        )
        self.token_file = self.root / "caller.token"
        self.token_file.write_text(answer.status.token)

    def client(self, service: str = "eta-model", *, token: bool = True) -> OnlineClient:
        """A client of ``service``'s server, over TLS, with the caller's token or none."""
        return OnlineClient(
            self.endpoint(service),
            ca_file=self.ca_file,
            token_file=self.token_file if token else None,
        )

    def start_operator(self, offline_uri: str, table_prefix: str) -> None:
        env = {
            **os.environ,
            **components.operator_environment(offline_uri, 0),
            "FEATUREKUBE_TABLE_PREFIX": table_prefix,
            "FEATUREKUBE_RECONCILE_INTERVAL_SECONDS": "2",
            "FEATUREKUBE_SERVER_TLS_SECRET": TLS_SECRET,
            "FEATUREKUBE_SERVER_AUTH": "tokenreview",
        }
        argv = [*components.operator_command(Path(sys.executable)), "--namespace", self.namespace]
        log = (self.root / "operator.log").open("ab")
        self.operator = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill_operator(self) -> None:
        assert self.operator is not None
        self.operator.kill()
        self.operator.wait()

    def stop(self) -> None:
        if self.operator is not None and self.operator.poll() is None:
            self.operator.terminate()
            self.operator.wait(timeout=30)
        self._stop.set()
        self._thread.join(timeout=30)
        self.runtime.stop()
        if self.binding:
            kubernetes.client.RbacAuthorizationV1Api(self.api).delete_cluster_role_binding(
                self.binding
            )

    def apply(self, body: dict[str, Any]) -> None:
        plural = "featureviews" if body["kind"] == "FeatureView" else "featureservices"
        name = body["metadata"]["name"]
        try:
            self.custom.create_namespaced_custom_object(
                "featurekube.dev", "v1alpha1", self.namespace, plural, body
            )
        except kubernetes.client.exceptions.ApiException as exc:
            if exc.status != 409:
                raise
            live = self.get(plural, name)
            body = {
                **body,
                "metadata": {
                    **body["metadata"],
                    "resourceVersion": live["metadata"]["resourceVersion"],
                },
            }
            self.custom.replace_namespaced_custom_object(
                "featurekube.dev", "v1alpha1", self.namespace, plural, name, body
            )

    def get(self, plural: str, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", self.namespace, plural, name
        )
        return body

    def endpoint(self, service: str) -> str:
        servers = json.loads((self.root / "runtime" / "endpoints.json").read_text())
        return str(servers[f"{self.namespace}/{service}"])


def _example(name: str, namespace: str, raw: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    batch = body["spec"].get("source", {}).get("batch")
    if batch:
        batch["path"] = batch["path"].replace("s3://featurekube-demo/raw/", raw)
    return body


@pytest.fixture(scope="module")
def system(
    platform: Endpoints,
    kube_api: kubernetes.client.ApiClient,
    test_bucket: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    namespace = f"e2e-{int(time.time()) % 100000}"
    kubernetes.client.CoreV1Api(kube_api).create_namespace({"metadata": {"name": namespace}})
    root = tmp_path_factory.mktemp("e2e")
    raw = f"s3://{test_bucket}/{namespace}/raw/"
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).date().isoformat()
    generate = [sys.executable, str(EXAMPLES / "generate_data.py"), "--out", raw, "--start", start]
    subprocess.run(
        [*generate, "--days", "2", "--drivers", "25", "--riders", "100", "--seed", "11"], check=True
    )
    running = System(kube_api, namespace, root)
    running.secure()
    running.start_operator(f"s3://{test_bucket}/{namespace}/offline", f"fk-{namespace}.")
    try:
        for name in (*VIEWS, "eta-model"):
            running.apply(_example(name, namespace, raw))
        _eventually(
            lambda: (
                all(_ready(running.get("featureviews", v)) for v in VIEWS)
                and _ready(running.get("featureservices", "eta-model"))
            ),
            TIMEOUT,
            "the views materialize and the eta-model server serves",
        )
        yield running
    finally:
        running.stop()
        print((root / "operator.log").read_text()[-5000:])


def test_online_vectors_equal_the_training_frame_at_the_same_time(system: System) -> None:
    """Parity: after materializing up to the end of the last window, the online value of
    every entity equals the SDK's point-in-time value just before that end."""
    drivers = list(range(1001, 1026))
    service = system.get("featureservices", "eta-model")
    served = {f["name"]: f for f in service["status"]["resolvedFeatures"] if f.get("featureView")}
    with system.client() as client:
        online = client.get_online_features(
            columns={"driver_id": drivers},
            features=[n for n in served if served[n]["featureView"] != "driver-location-live"],
        ).to_dict(statuses=True)
    store = FeatureStore.from_cluster(system.namespace)
    compared = 0
    for view in ("driver-trip-stats", "driver-profile"):
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
    assert compared >= 200


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
        lambda: _ready(system.get("featureservices", "eta-model-canary")), 180, "the canary serves"
    )
    (server,) = [s for key, s in system.runtime._servers.items() if key[1] == "eta-model-canary"]

    system.custom.delete_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", system.namespace, "featureservices", "eta-model-canary"
    )

    _eventually(lambda: not processes.is_running(server.pid), 120, "its server stops")


def test_a_failing_source_is_reported_on_the_view(system: System) -> None:
    broken = _example(
        "driver-profile", system.namespace, f"s3://featurekube-test/{system.namespace}/nowhere/"
    )
    broken["metadata"]["name"] = "driver-profile-broken"
    system.apply(broken)

    def degraded() -> str | None:
        status = system.get("featureviews", "driver-profile-broken").get("status") or {}
        for condition in status.get("conditions") or []:
            if condition["type"] == "Degraded" and condition["status"] == "True":
                return str(condition["message"])
        return None

    message = _eventually(degraded, 300, "the view reports its failed window")
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

    _eventually(apps, 120, "the backfill starts")
    system.kill_operator()
    offline_uri = f"s3://featurekube-test/{system.namespace}/offline"
    system.start_operator(offline_uri, f"fk-{system.namespace}.")

    _eventually(
        lambda: _ready(system.get("featureviews", "rider-features-restart")),
        TIMEOUT,
        "Ready after the restart",
    )
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
