"""The web catalog end to end: ``featurekube ui`` run as a command against the local
platform's real API server, driven by Debian's chromium through Playwright.

The examples are applied in a namespace of the module's own, with the status the
operator would write (conditions, windows, a Warn expectation, drift, freshness,
parity) written through the status subresource; a feature server pod's metrics are a
real Prometheus endpoint on the loopback. One browser serves the whole module;
screenshots are kept under build/test-artifacts/catalog/.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from featurekube._platform import processes
from featurekube._platform.platform import Endpoints
from featurekube.spec import v1alpha1
from support import eventually

pytest.importorskip("playwright.sync_api", reason="playwright comes with featurekube[dev]")
from benchmarks._browser import CHROMIUM, headless_chromium
from playwright.sync_api import BrowserContext, Page, expect

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "examples"
ARTIFACTS = REPO / "build" / "test-artifacts" / "catalog"
HOSTILE = '<script>window.__owned = 1</script><img src=x onerror="window.__owned = 2">'
WINDOW = "2026-03-01T10:00:00Z"
TIMEOUT_MS = 20_000
TEST_BUCKET = "featurekube-test"


def _write_statistics(offline_uri: str) -> None:
    """Three hourly windows of two features' statistics, written as the materialization
    job writes them, into the view version's _stats table on the platform's S3."""
    from featurekube.monitoring import stats, stats_store

    store = stats_store.StatsStore(offline_uri)
    start = dt.datetime(2026, 3, 1, 8, tzinfo=dt.UTC)
    for hour in range(3):
        window = start + dt.timedelta(hours=hour)
        features = [
            stats.FeatureStatistics(
                feature="avg_trip_speed_kmh_7d",
                type="float64",
                count=200,
                nulls=2,
                min=5.0,
                max=90.0,
                mean=30.0 + hour * 5,
                stddev=8.0,
                quantiles=[5.0 + 4 * q for q in range(21)],
                psi=0.05 + hour * 0.13,
            ),
            stats.FeatureStatistics(
                feature="last_dropoff_zone_id_30m", type="int64", count=200, nulls=0,
                min=1.0, max=40.0, mean=17.5, stddev=9.0,
                quantiles=[1.0 + 2 * q for q in range(21)],
            ),
        ]  # fmt: skip
        table = stats.statistics_table(
            window, window + dt.timedelta(hours=1), features, engine="python", written_at=window
        )
        store.replace_window(table, window)


def _example(name: str, namespace: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    body["metadata"].pop("annotations", None)
    return body


def _create(api: kubernetes.client.ApiClient, body: dict[str, Any]) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    plural = "featureviews" if body["kind"] == "FeatureView" else "featureservices"
    namespace = body["metadata"]["namespace"]
    custom.create_namespaced_custom_object(
        v1alpha1.GROUP, v1alpha1.VERSION, namespace, plural, body
    )
    if "status" in body:
        custom.patch_namespaced_custom_object_status(
            v1alpha1.GROUP,
            v1alpha1.VERSION,
            namespace,
            plural,
            body["metadata"]["name"],
            {"status": body["status"]},
        )


def _view_status(namespace: str) -> dict[str, Any]:
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Materialized",
                "message": "materialized until 2026-03-01T11:00:00Z",
                "lastTransitionTime": "2026-03-01T11:04:00Z",
            }
        ],
        "version": 2,
        "offlineUri": f"s3://{TEST_BUCKET}/catalog/{namespace}/driver-trip-stats/v2",
        "lastMaterializedWindow": {"start": WINDOW, "end": "2026-03-01T11:00:00Z"},
        "servingVersions": [2],
        "progress": [
            {
                "version": 2,
                "materializedUntil": "2026-03-01T11:00:00Z",
                "windows": [
                    {
                        "start": WINDOW,
                        "end": "2026-03-01T11:00:00Z",
                        "state": "Succeeded",
                        "finishedAt": "2026-03-01T11:04:00Z",
                        "rows": {"read": 1200, "offline": 1180, "online": 200},
                        "engine": "python",
                    }
                ],
            }
        ],
        "retiredVersions": [{"version": 1, "since": "2026-02-20T00:00:00Z"}],
        "expectations": [
            {
                "feature": "avg_trip_speed_kmh_30m",
                "check": "max",
                "onViolation": "Warn",
                "rows": 3,
                "message": "3 rows above 200 km/h",
                "windowStart": WINDOW,
            },
            {
                "feature": "trips_1d",
                "check": "min",
                "onViolation": "Fail",
                "rows": 0,
                "windowStart": WINDOW,
            },
        ],
        "freshness": {"objective": "20m", "met": False, "since": "2026-03-01T11:20:00Z"},
        "drift": [
            {
                "feature": "avg_trip_speed_kmh_7d",
                "psi": 0.31,
                "drifted": True,
                "windowStart": WINDOW,
            }
        ],
    }


@pytest.fixture(scope="module")
def namespaces(
    kube_api: kubernetes.client.ApiClient, test_bucket: str
) -> Iterator[tuple[str, str]]:
    """Two namespaces: the examples with status in the first, one view in the second."""
    core = kubernetes.client.CoreV1Api(kube_api)
    suffix = uuid.uuid4().hex[:6]
    names = (f"catalog-{suffix}", f"catalog-hidden-{suffix}")
    for name in names:
        core.create_namespace(
            {"metadata": {"name": name, "labels": {"featurekube.dev/test": "true"}}}
        )
    shown, hidden = names
    trip_stats = _example("driver-trip-stats", shown)
    trip_stats["spec"]["expectations"] = [
        {"feature": "trips_1d", "min": 0, "onViolation": "Fail"},
        {"feature": "avg_trip_speed_kmh_30m", "max": 200, "onViolation": "Warn"},
    ]
    trip_stats["spec"]["monitoring"] = {
        "drift": {"reference": {"trainingPull": "eta-2026-02"}, "threshold": 0.2}
    }
    trip_stats["status"] = _view_status(shown)
    _create(kube_api, trip_stats)
    _write_statistics(trip_stats["status"]["offlineUri"])
    for name in ("driver-profile", "driver-location-live", "rider-features"):
        _create(kube_api, _example(name, shown))
    hostile = _example("driver-profile", shown)
    hostile["metadata"]["name"] = "hostile-profile"
    hostile["spec"]["description"] = HOSTILE
    hostile["spec"]["tags"] = {"team": "red-team"}
    _create(kube_api, hostile)
    eta = _example("eta-model", shown)
    eta["spec"]["access"] = {"read": [f"{shown}/pricing-api"]}
    eta["status"] = {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Serving"}],
        "endpoint": f"eta-model.{shown}.svc:50051",
        "resolvedFeatures": [
            {"name": "trips_1d", "type": "int64", "featureView": "driver-trip-stats",
             "namespace": shown},
            {"name": "years_active", "type": "int64", "featureView": "driver-profile",
             "namespace": shown},
        ],
        "servedVersions": [{"featureView": "driver-trip-stats", "namespace": shown, "version": 2}],
        "parity": {
            "checkedAt": "2026-03-01T11:30:00Z",
            "entities": 100,
            "values": 1000,
            "mismatches": 3,
            "mismatchRate": 0.003,
            "examples": [
                {"feature": "trips_1d", "entity": '{"driver_id": 1001}', "online": "4",
                 "offline": "5"}
            ],
        },
    }  # fmt: skip
    _create(kube_api, eta)
    secret = _example("driver-profile", hidden)
    secret["metadata"]["name"] = "secret-profile"
    _create(kube_api, secret)
    yield names
    for name in names:
        core.delete_namespace(name)


def _start_catalog(kubeconfig: Path, *args: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = processes.free_port()
    log = Path(tempfile.mkstemp(prefix="catalog-", suffix=".log")[1])
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    command = [sys.executable, "-m", "featurekube.cli.main", "ui", "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"featurekube ui exited {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    eventually(up, 60, "featurekube ui answers /healthz", interval=0.2)
    return process, url, log


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def catalog(platform: Endpoints, namespaces: tuple[str, str]) -> Iterator[str]:
    """``featurekube ui`` as the platform's admin, listing every namespace."""
    process, url, _ = _start_catalog(platform.kubeconfig, "--refresh", "1")
    yield url
    _stop(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    """One headless chromium for the module."""
    assert CHROMIUM.exists(), "no /usr/bin/chromium: run `make browser` (hack/browser/install.sh)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with headless_chromium() as context:
        context.set_default_timeout(TIMEOUT_MS)
        yield context


@pytest.fixture
def page(browser: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A tab, screenshotted into the artifacts when the test ends."""
    tab = browser.new_page()
    yield tab
    tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    tab.close()


def _search(page: Page, url: str, text: str) -> list[str]:
    page.goto(url)
    page.fill("#q", text)
    page.press("#q", "Enter")
    page.wait_for_selector("#summary")
    return page.locator("a.hit").all_inner_texts()


def test_search_finds_by_name_entity_owner_and_tag(
    page: Page, catalog: str, namespaces: tuple[str, str]
) -> None:
    shown, _ = namespaces
    scope = f"namespace:{shown}"

    assert _search(page, catalog, f"trip-stats {scope}") == ["driver-trip-stats"]
    assert _search(page, catalog, f"rider_id {scope}") == ["rider-features"]
    by_owner = _search(page, catalog, f"owner:eta-ml@rides.example.com {scope}")
    assert by_owner == ["eta-model"]
    assert _search(page, catalog, f"tag:team=red-team {scope}") == ["hostile-profile"]
    # The filters of the form: everything of the namespace keyed by driver_id.
    page.goto(catalog)
    page.select_option("select[name=namespace]", shown)
    page.select_option("select[name=entity]", "driver_id")
    page.click("form.filters button")
    page.wait_for_selector("#summary")
    hits = page.locator("a.hit").all_inner_texts()
    assert hits == [
        "driver-location-live",
        "driver-profile",
        "driver-trip-stats",
        "hostile-profile",
        "eta-model",
    ]


def test_a_view_page_shows_features_expectations_drift_versions_and_lineage(
    page: Page, catalog: str, namespaces: tuple[str, str]
) -> None:
    shown, _ = namespaces
    _search(page, catalog, f"driver-trip-stats namespace:{shown}")
    page.click("a.hit")
    page.wait_for_url(f"**/views/{shown}/driver-trip-stats")

    features = page.locator("#features table")
    expect(features).to_contain_text("trips_30m")
    expect(features).to_contain_text("count(trip_id) over 30m")
    expect(features.locator("tr", has_text="avg_trip_speed_kmh_7d")).to_contain_text("drifted")
    warn = page.locator("#expectations tr", has_text="avg_trip_speed_kmh_30m")
    expect(warn.locator(".badge.warn")).to_have_text("warn")
    expect(warn).to_contain_text("3 rows above 200 km/h")
    expect(page.locator("#expectations tr", has_text="trips_1d").locator(".badge")).to_have_text(
        "pass"
    )
    expect(page.locator("#freshness")).to_contain_text("stale")
    expect(page.locator("#versions")).to_contain_text("retired")
    expect(page.locator("#windows")).to_contain_text("1180")
    expect(page.locator("#sql")).to_contain_text("WHERE status = 'completed'")
    statistics = page.locator("#statistics table.statistics")
    speed = statistics.locator("tr", has_text="avg_trip_speed_kmh_7d")
    expect(speed).to_contain_text("2026-03-01 10:00:00Z")  # the latest window
    expect(speed).to_contain_text("0.31")  # its PSI
    expect(speed).to_contain_text("45")  # its median, p50 of the quantiles
    expect(speed.locator("svg.spark polyline")).to_have_count(1)  # the mean over time
    kinds = page.locator("#lineage svg g.node").evaluate_all(
        "nodes => nodes.map(n => n.dataset.kind)"
    )
    assert kinds == ["source", "view", "service", "reader"]
    expect(page.locator("#affected")).to_contain_text(f"{shown}/eta-model")
    expect(page.locator("#affected")).to_contain_text(f"read by {shown}/pricing-api")
    page.screenshot(path=str(ARTIFACTS / "view-page.png"), full_page=True)
    # Lineage is a way through the catalog: the service box opens its page.
    page.locator("#lineage svg g.service a").click()
    page.wait_for_url(f"**/services/{shown}/eta-model")


def test_a_view_without_an_offline_table_has_no_statistics_yet(
    page: Page, catalog: str, namespaces: tuple[str, str]
) -> None:
    shown, _ = namespaces

    page.goto(f"{catalog}/views/{shown}/driver-profile")

    expect(page.locator("#statistics")).to_contain_text("no statistics yet")
    expect(page.locator("#expectations")).to_contain_text("not checked yet")


def test_a_hostile_description_is_shown_as_text_and_never_runs(
    page: Page, catalog: str, namespaces: tuple[str, str]
) -> None:
    shown, _ = namespaces
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{catalog}/views/{shown}/hostile-profile")

    expect(page.locator("#description")).to_have_text(HOSTILE)
    assert page.locator("#description script, #description img").count() == 0
    assert page.evaluate("window.__owned") is None
    _search(page, catalog, f"hostile namespace:{shown}")
    assert page.evaluate("window.__owned") is None
    expect(page.locator("table.results")).to_contain_text("<script>window.__owned = 1</script>")
    assert errors == []


@pytest.fixture
def serving_pod(
    kube_api: kubernetes.client.ApiClient, namespaces: tuple[str, str]
) -> Iterator[int]:
    """A Deployment and a running pod of eta-model whose metrics port is a real
    Prometheus endpoint on the loopback, with traffic recorded."""
    from featurekube_server import metrics as server_metrics

    shown, _ = namespaces
    port = processes.free_port()
    recorded = server_metrics.ServerMetrics("eta-model")
    for _ in range(95):
        recorded.request("GetOnlineFeatures", "OK", 0.0008, 1)
    for _ in range(5):
        recorded.request("GetOnlineFeatures", "INTERNAL", 0.02, 1)
    stop = server_metrics.serve(recorded, port, host="127.0.0.1")
    labels = {"featurekube.dev/feature-service": "eta-model"}
    container = {"name": "server", "image": "ghcr.io/featurekube/feature-server:0.1.0",
                 "ports": [{"name": "metrics", "containerPort": port}]}  # fmt: skip
    apps = kubernetes.client.AppsV1Api(kube_api)
    core = kubernetes.client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(
        shown,
        {
            "metadata": {"name": "eta-model", "labels": labels},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
    )

    def created() -> bool:
        core.create_namespaced_pod(
            shown,
            {"metadata": {"name": "eta-model-0", "labels": labels},
             "spec": {"containers": [container]}},
        )  # fmt: skip
        return True

    # A namespace's first pod waits for its default ServiceAccount.
    eventually(created, 30, "a pod can be created", ignore=(ApiException,))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    core.patch_namespaced_pod_status(
        "eta-model-0",
        shown,
        {
            "status": {
                "phase": "Running",
                "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
            }
        },
    )
    yield port
    stop()
    core.delete_namespaced_pod("eta-model-0", shown, grace_period_seconds=0)
    apps.delete_namespaced_deployment("eta-model", shown)


def test_a_service_page_shows_features_servers_traffic_and_parity(
    page: Page, catalog: str, namespaces: tuple[str, str], serving_pod: int
) -> None:
    shown, _ = namespaces

    page.goto(f"{catalog}/services/{shown}/eta-model")

    expect(page.locator("#features")).to_contain_text("years_active")
    expect(page.locator("#features a", has_text=f"{shown}/driver-trip-stats")).to_have_count(1)
    expect(page.locator("#transformations")).to_contain_text("naive_eta_min")
    expect(page.locator("#health table.pods")).to_contain_text("eta-model-0")
    traffic = page.locator("#traffic")
    expect(traffic).to_contain_text("requests since start")
    expect(traffic).to_contain_text("100")
    expect(traffic).to_contain_text("5.00%")
    expect(page.locator("#parity")).to_contain_text("0.30%")
    expect(page.locator("#parity .badge.fail")).to_have_text("mismatch")
    kinds = page.locator("#lineage svg g.node").evaluate_all(
        "nodes => nodes.map(n => n.dataset.kind)"
    )
    assert kinds.count("view") == 3 and kinds.count("service") == 1 and "reader" in kinds


def test_without_pods_or_prometheus_traffic_is_unavailable(
    page: Page, catalog: str, namespaces: tuple[str, str]
) -> None:
    shown, _ = namespaces

    page.goto(f"{catalog}/services/{shown}/eta-model")

    expect(page.locator("#health")).to_contain_text("no Deployment yet")
    expect(page.locator("#metrics-unavailable")).to_contain_text("unavailable")


def test_the_catalog_only_reads_and_forbids_scripts(
    catalog: str, namespaces: tuple[str, str]
) -> None:
    with urllib.request.urlopen(f"{catalog}/?q=driver") as answer:
        policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    refused = urllib.request.Request(f"{catalog}/", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as post:
        urllib.request.urlopen(refused)
    assert post.value.code == 405
    with pytest.raises(urllib.error.HTTPError) as long:
        urllib.request.urlopen(f"{catalog}/?q={'x' * 2000}")
    assert long.value.code == 414
    with pytest.raises(urllib.error.HTTPError) as wordy:
        urllib.request.urlopen(f"{catalog}/api/search?q={'x' * 300}")
    assert wordy.value.code == 400 and b"at most 256" in wordy.value.read()


def test_the_json_api_answers_beside_the_pages(catalog: str, namespaces: tuple[str, str]) -> None:
    import json

    shown, _ = namespaces
    with urllib.request.urlopen(f"{catalog}/api/search?q=driver&namespace={shown}") as answer:
        found = json.load(answer)
    with urllib.request.urlopen(f"{catalog}/api/views/{shown}/driver-trip-stats") as answer:
        view = json.load(answer)

    assert [h["name"] for h in found["hits"]][:1] == ["driver-location-live"]
    assert view["usedBy"] == [
        {"namespace": shown, "name": "eta-model", "readers": [f"{shown}/pricing-api"]}
    ]
    assert any(x["verdict"] == "warn" for x in view["expectations"])


def test_a_change_shows_after_the_next_listing(
    kube_api: kubernetes.client.ApiClient, catalog: str, namespaces: tuple[str, str]
) -> None:
    import json

    shown, _ = namespaces
    kubernetes.client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        v1alpha1.GROUP,
        v1alpha1.VERSION,
        shown,
        "featureviews",
        "rider-features",
        {"spec": {"description": "Renamed for the catalog's refresh"}},
    )

    def found() -> bool:
        query = f"{catalog}/api/search?q=renamed&namespace={shown}"
        with urllib.request.urlopen(query) as answer:
            return [h["name"] for h in json.load(answer)["hits"]] == ["rider-features"]

    # Listed again within --refresh (1 s) of a page asking, in the background.
    eventually(found, 20, "the changed description is found")


def test_namespaces_the_viewer_may_not_list_are_skipped(
    platform: Endpoints,
    kube_api: kubernetes.client.ApiClient,
    namespaces: tuple[str, str],
    browser: BrowserContext,
) -> None:
    shown, hidden = namespaces
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube_api)
    rule = {"apiGroups": [v1alpha1.GROUP], "resources": ["featureviews", "featureservices"],
            "verbs": ["get", "list"]}  # fmt: skip
    rbac.create_namespaced_role(shown, {"metadata": {"name": "catalog-reader"}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        shown,
        {
            "metadata": {"name": "catalog-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "catalog-reader"},
            "subjects": [{"kind": "User", "name": "featurekube-dev-unprivileged"}],
        },
    )  # fmt: skip
    user = kubernetes.config.new_client_from_config(str(platform.kubeconfig_unprivileged))
    custom = kubernetes.client.CustomObjectsApi(user)
    # RBAC decisions come from the API server's informer cache: allowed shortly after.
    eventually(
        lambda: custom.list_namespaced_custom_object(
            v1alpha1.GROUP, v1alpha1.VERSION, shown, "featureviews"
        ),
        15,
        "the unprivileged user may list views",
        ignore=(ApiException,),
    )
    process, url, _ = _start_catalog(
        platform.kubeconfig_unprivileged, "--namespace", shown, "--namespace", hidden
    )
    tab = browser.new_page()
    try:
        tab.goto(f"{url}/?q=profile")
        hits = tab.locator("a.hit").all_inner_texts()
        tab.click("details.skipped summary")
        skipped = tab.locator("details.skipped").inner_text()
        tab.screenshot(path=str(ARTIFACTS / "rbac-skipped-namespace.png"), full_page=True)
        tab.goto(f"{url}/views/{hidden}/secret-profile")
        missing = tab.locator("#error").inner_text()
    finally:
        tab.close()
        _stop(process)
        user.close()

    assert hits == ["driver-profile", "hostile-profile"]
    assert f"namespace {hidden}: may not list featureviews.featurekube.dev" in skipped
    assert missing == f"no FeatureView {hidden}/secret-profile that you may list"
