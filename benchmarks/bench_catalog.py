"""The web catalog with 1,000 FeatureViews and 200 FeatureServices: page load times
measured in Debian's headless chromium (navigation timing, start to the load event).

On a local platform of its own, the views (in 4 namespaces, with the status the
operator writes) and services are created, ``featurekube ui`` runs as a command, and
the browser loads four pages again and again: the search page, a search query, a
view's page and a service's page. The peer is the same pages' HTML and stylesheet
saved to files and served by Python's static file server: the floor the browser and
the loopback put under any page, so the ratio is what listing, searching and
rendering add.
"""

from __future__ import annotations

import concurrent.futures
import functools
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config

from benchmarks import _harness
from benchmarks._browser import CHROMIUM, headless_chromium
from featurekube._platform import platform, processes

VIEWS = int(os.environ.get("FEATUREKUBE_BENCH_VIEWS", "1000"))
SERVICES = int(os.environ.get("FEATUREKUBE_BENCH_SERVICES", "200"))
NAMESPACES = 4
LOADS = int(os.environ.get("FEATUREKUBE_BENCH_LOADS", "40"))
WARMUP = 3
WINDOW = "2026-03-01T10:00:00Z"
_LOAD_TIME = """() => {
  const n = performance.getEntriesByType('navigation')[0];
  return n.loadEventEnd - n.startTime;
}"""


def _namespace(i: int) -> str:
    return f"bench-{i % NAMESPACES}"


def _view(i: int) -> dict[str, Any]:
    entity = "driver_id" if i % 3 else "rider_id"
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": {"name": f"view-{i:04d}", "namespace": _namespace(i)},
        "spec": {
            "owner": f"team-{i % 20}@example.com",
            "description": f"Trip statistics number {i} of each {entity.split('_')[0]}.",
            "tags": {"team": f"team-{i % 20}", "domain": ("trips", "payments", "geo")[i % 3]},
            "entities": [{"name": entity, "type": "int64"}],
            "source": {"batch": {"path": f"s3://featurekube-bench/raw/view-{i:04d}/"}},
            "features": [
                {"name": f"f{j}", "type": "float64", "description": f"feature {j}"}
                for j in range(8)
            ],
            "expectations": [{"feature": "f0", "max": 100, "onViolation": "Warn"}],
            "materialization": {"schedule": "@hourly", "startTime": "2026-01-01T00:00:00Z"},
        },
    }


def _view_status(i: int) -> dict[str, Any]:
    return {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Materialized"}],
        "version": 1,
        "servingVersions": [1],
        "lastMaterializedWindow": {"start": WINDOW, "end": "2026-03-01T11:00:00Z"},
        "progress": [
            {
                "version": 1,
                "materializedUntil": "2026-03-01T11:00:00Z",
                "windows": [
                    {
                        "start": f"2026-03-01T{h:02d}:00:00Z",
                        "end": f"2026-03-01T{h + 1:02d}:00:00Z",
                        "state": "Succeeded",
                        "finishedAt": f"2026-03-01T{h + 1:02d}:03:00Z",
                        "rows": {"read": 1000, "offline": 990, "online": 100},
                    }
                    for h in range(11)
                ],
            }
        ],
        "expectations": [
            {
                "feature": "f0",
                "check": "max",
                "onViolation": "Warn",
                "rows": i % 2,
                "windowStart": WINDOW,
            }
        ],
        "freshness": {"objective": "2h", "met": True},
    }


def _service(i: int) -> dict[str, Any]:
    # Five views of the service's own namespace each.
    views = [n for n in range(VIEWS) if n % NAMESPACES == i % NAMESPACES]
    first = (i // NAMESPACES) * 5
    chosen = views[first % max(len(views), 1) :][:5] or views[:5]
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureService",
        "metadata": {"name": f"model-{i:03d}", "namespace": _namespace(i)},
        "spec": {
            "owner": f"team-{i % 20}@example.com",
            "tags": {"model": f"model-{i}"},
            "features": [{"featureView": f"view-{v:04d}", "prefix": f"v{v}_"} for v in chosen],
        },
    }


def _create_all(api: kubernetes.client.ApiClient) -> float:
    core = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    for n in range(NAMESPACES):
        core.create_namespace(
            kubernetes.client.V1Namespace(
                metadata=kubernetes.client.V1ObjectMeta(name=f"bench-{n}")
            )
        )

    def create(index_and_body: tuple[int, dict[str, Any]]) -> None:
        index, body = index_and_body
        plural = "featureviews" if body["kind"] == "FeatureView" else "featureservices"
        namespace = body["metadata"]["namespace"]
        custom.create_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, plural, body
        )
        if plural == "featureviews":
            custom.patch_namespaced_custom_object_status(
                "featurekube.dev",
                "v1alpha1",
                namespace,
                plural,
                body["metadata"]["name"],
                {"status": _view_status(index)},
            )

    objects = [(i, _view(i)) for i in range(VIEWS)] + [(i, _service(i)) for i in range(SERVICES)]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(create, objects))
    return time.perf_counter() - started


def _pages() -> dict[str, str]:
    return {
        "search page": "/",
        "search query": "/?q=trips+driver_id&owner=team-3%40example.com",
        "view page": "/views/bench-1/view-0421",
        "service page": "/services/bench-2/model-042",
    }


def _serve_static(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def run() -> _harness.Report:
    report = _harness.Report(
        name="catalog",
        description=f"web catalog page loads in chromium, {VIEWS} views + {SERVICES} services",
        baseline="static files",
    )
    if not CHROMIUM.exists():
        raise RuntimeError("no /usr/bin/chromium: run `make browser` (hack/browser/install.sh)")
    with _harness.scratch_platform() as (endpoints, tmp):
        _measure(report, endpoints, tmp)
    return report


def _measure(report: _harness.Report, endpoints: platform.Endpoints, tmp: Path) -> None:

    api = kubernetes.config.new_client_from_config(str(endpoints.kubeconfig))
    with api:
        created = _create_all(api)
    port = processes.free_port()
    env = {**os.environ, "KUBECONFIG": str(endpoints.kubeconfig)}
    argv = [sys.executable, "-m", "featurekube.cli.main", "ui", "--port", str(port)]
    with (tmp / "catalog.log").open("wb") as log:
        catalog = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        processes.wait_until(lambda: processes.http_ok(f"{url}/healthz"), 120)
        static = tmp / "static"
        (static / "static").mkdir(parents=True)
        with urllib.request.urlopen(f"{url}/static/catalog.css") as answer:
            (static / "static" / "catalog.css").write_bytes(answer.read())
        sizes: dict[str, int] = {}
        for name, path in _pages().items():
            with urllib.request.urlopen(url + path) as answer:
                body = answer.read()
            sizes[name] = len(body)
            (static / f"{name.replace(' ', '-')}.html").write_bytes(body)
        server, static_url = _serve_static(static)
        with headless_chromium() as browser:
            page = browser.new_page()

            def load(address: str) -> float:
                page.goto(address, wait_until="load")
                return float(page.evaluate(_LOAD_TIME)) / 1000

            for name, path in _pages().items():
                for _ in range(WARMUP):
                    load(url + path)
                samples = [load(url + path) for _ in range(LOADS)]
                copy = f"{static_url}/{name.replace(' ', '-')}.html"
                floor = [load(copy) for _ in range(LOADS)]
                report.add("featurekube catalog", name, "ms", [s * 1000 for s in samples])
                report.add("static files", name, "ms", [s * 1000 for s in floor])
                report.notes[f"{name} p50 / p95"] = (
                    f"{statistics.median(samples) * 1000:.1f} / "
                    f"{_harness.percentile(samples, 0.95) * 1000:.1f} ms "
                    f"({sizes[name] / 1024:.0f} KiB of HTML)"
                )
        server.shutdown()
        with urllib.request.urlopen(f"{url}/healthz") as answer:
            health = json.load(answer)
    finally:
        catalog.terminate()
        catalog.wait(timeout=30)
    report.notes.update(
        {
            "objects": f"{VIEWS} FeatureViews in {NAMESPACES} namespaces, {SERVICES} services",
            "objects listed by the catalog": str(health["objects"]),
            "one listing of the cluster (list + parse + index)": (
                f"{health['listingSeconds'] * 1000:.0f} ms, reused for at least 5 s, refreshed "
                "in the background"
            ),
            "time to create the objects": f"{created:.1f} s",
            "loads per page": str(LOADS),
        }
    )
