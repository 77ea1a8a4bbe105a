"""The local runtime plays the Spark Operator and the kubelet on the local platform:
SparkApplications run with spark-submit, the pods of featurekube's Jobs and
feature-server Deployments as processes."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest

from featurekube._platform import processes
from featurekube._platform.runtime import Runtime

JOB = """
import os, pathlib, sys
pathlib.Path(os.environ["REPORT"]).write_text("report of " + sys.argv[-1])
spec = pathlib.Path(sys.argv[sys.argv.index("--spec") + 1])
if not spec.read_text().startswith("view: driver-profile"):
    print("Error: the mounted spec is not there: " + str(spec), file=sys.stderr)
    sys.exit(3)
print("materialized", sys.argv[1:])
"""
SERVER = """
import pathlib, socket, sys, time
plan = pathlib.Path(sys.argv[sys.argv.index("--plan") + 1])
assert plan.read_text().startswith("featureService:"), plan
port = int(sys.argv[sys.argv.index("--port") + 1])
server = socket.create_server(("127.0.0.1", port))
while True:
    conn, _ = server.accept()
    conn.close()
"""


def _eventually(check: Callable[[], Any], timeout: float, what: str, runtime: Runtime) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        runtime.step()
        if result := check():
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.5)


@pytest.fixture
def runtime(kube_api: kubernetes.client.ApiClient, namespace: str, tmp_path: Path) -> Runtime:
    job = tmp_path / "job.py"
    job.write_text(JOB)
    server = tmp_path / "server.py"
    server.write_text(SERVER)
    running = Runtime(
        kube_api,
        tmp_path / "runtime",
        files={"local:///opt/featurekube/job.py": job},
        server_command=(sys.executable, str(server)),
        namespaces=frozenset({namespace}),
    )
    (tmp_path / "runtime").mkdir()
    yield running
    running.stop()


def _app(name: str, spec_config_map: str) -> dict[str, Any]:
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": name},
        "spec": {
            "type": "Python",
            "mode": "cluster",
            "sparkVersion": "4.2.0",
            "mainApplicationFile": "local:///opt/featurekube/job.py",
            "arguments": [
                "--spec",
                "/etc/featurekube/spec/featureview.yaml",
                "--start",
                "2026-01-01T00:00:00Z",
            ],
            "restartPolicy": {"type": "Never"},
            "driver": {
                "cores": 1,
                "env": [{"name": "REPORT", "value": "/dev/termination-log"}],
                "configMaps": [{"name": spec_config_map, "path": "/etc/featurekube/spec"}],
            },
            "executor": {"instances": 1},
        },
    }


def test_spark_applications_run_with_spark_submit_and_report_like_the_spark_operator(
    runtime: Runtime, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    core, custom = (
        kubernetes.client.CoreV1Api(kube_api),
        kubernetes.client.CustomObjectsApi(kube_api),
    )
    core.create_namespaced_config_map(
        namespace,
        {"metadata": {"name": "good"}, "data": {"featureview.yaml": "view: driver-profile\n"}},
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "bad"}, "data": {"featureview.yaml": "view: other\n"}}
    )
    for name, config_map in (("ok", "good"), ("broken", "bad")):
        custom.create_namespaced_custom_object(
            "sparkoperator.k8s.io",
            "v1beta2",
            namespace,
            "sparkapplications",
            _app(name, config_map),
        )

    def finished() -> dict[str, dict[str, Any]] | None:
        apps = custom.list_namespaced_custom_object(
            "sparkoperator.k8s.io", "v1beta2", namespace, "sparkapplications"
        )["items"]
        states = {a["metadata"]["name"]: (a.get("status") or {}) for a in apps}
        done = all(
            s.get("applicationState", {}).get("state") in ("COMPLETED", "FAILED")
            for s in states.values()
        )
        return states if done else None

    states = _eventually(finished, 240, "both jobs finish", runtime)

    assert states["ok"]["applicationState"]["state"] == "COMPLETED"
    assert states["ok"]["driverInfo"]["podName"] == "ok-driver"
    assert states["ok"]["terminationTime"]
    assert states["broken"]["applicationState"]["state"] == "FAILED"
    assert "the mounted spec is not there" in states["broken"]["applicationState"]["errorMessage"]
    # Each driver pod is left as the kubelet leaves it: owned by its application,
    # terminated, the report the job wrote as its termination message.
    for name, phase, exit_code in (("ok", "Succeeded", 0), ("broken", "Failed", 3)):
        pod = core.read_namespaced_pod(f"{name}-driver", namespace)
        terminated = pod.status.container_statuses[0].state.terminated
        assert pod.metadata.owner_references[0].name == name
        assert (pod.status.phase, terminated.exit_code) == (phase, exit_code)
        assert terminated.message == "report of 2026-01-01T00:00:00Z"


def _job(name: str, spec_config_map: str, script: Path) -> dict[str, Any]:
    labels = {"featurekube.dev/feature-view": "driver-profile"}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "materialize",
                            "image": "featurekube/spark",
                            # The image's Python runs as the runtime's own.
                            "command": ["/opt/featurekube/venv/bin/python", str(script)],
                            "args": [
                                "--spec",
                                "/etc/featurekube/spec/featureview.yaml",
                                "--start",
                                "2026-01-01T00:00:00Z",
                            ],
                            "env": [{"name": "REPORT", "value": "/dev/termination-log"}],
                            "volumeMounts": [
                                {"name": "spec", "mountPath": "/etc/featurekube/spec"}
                            ],
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                        }
                    ],
                    "volumes": [{"name": "spec", "configMap": {"name": spec_config_map}}],
                },
            },
        },
    }


def test_job_pods_run_as_processes_and_the_job_controller_finishes_their_jobs(
    runtime: Runtime, kube_api: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core, batch = kubernetes.client.CoreV1Api(kube_api), kubernetes.client.BatchV1Api(kube_api)
    script = tmp_path / "job.py"
    silent = tmp_path / "silent.py"
    silent.write_text("import sys\nprint('Error: out of memory')\nsys.exit(137)\n")
    core.create_namespaced_config_map(
        namespace,
        {"metadata": {"name": "good"}, "data": {"featureview.yaml": "view: driver-profile\n"}},
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "bad"}, "data": {"featureview.yaml": "view: other\n"}}
    )
    for name, config_map, code in (
        ("ok", "good", script),
        ("broken", "bad", script),
        ("killed", "good", silent),
    ):
        batch.create_namespaced_job(namespace, _job(name, config_map, code))

    def finished() -> dict[str, str] | None:
        jobs = batch.list_namespaced_job(namespace).items
        ended = {
            j.metadata.name: c.type
            for j in jobs
            for c in j.status.conditions or ()
            if c.type in ("Complete", "Failed") and c.status == "True"
        }
        return ended if len(ended) == 3 else None

    ended = _eventually(finished, 120, "the three jobs finish", runtime)

    # The job controller wrote the Jobs' status from the pods the runtime ran.
    assert ended == {"ok": "Complete", "broken": "Failed", "killed": "Failed"}
    for name, phase, exit_code, message in (
        ("ok", "Succeeded", 0, "report of 2026-01-01T00:00:00Z"),
        ("broken", "Failed", 3, "report of 2026-01-01T00:00:00Z"),
        # No report: the last lines of its log, as FallbackToLogsOnError gives.
        ("killed", "Failed", 137, "Error: out of memory"),
    ):
        (pod,) = core.list_namespaced_pod(
            namespace, label_selector=f"batch.kubernetes.io/job-name={name}"
        ).items
        terminated = pod.status.container_statuses[0].state.terminated
        assert (pod.status.phase, terminated.exit_code) == (phase, exit_code), name
        assert terminated.message == message, name


def test_a_feature_server_deployment_runs_locally_until_it_goes(
    runtime: Runtime, kube_api: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core, apps = kubernetes.client.CoreV1Api(kube_api), kubernetes.client.AppsV1Api(kube_api)
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {"name": "eta-model-plan"},
            "data": {"plan.yaml": "featureService: eta-model\n"},
        },
    )
    labels = {"featurekube.dev/feature-service": "eta-model"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "eta-model", "labels": labels},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "feature-server",
                                "image": "featurekube/feature-server",
                                "args": [
                                    "--plan",
                                    "/etc/featurekube/plan/plan.yaml",
                                    "--port",
                                    "50051",
                                ],
                                "volumeMounts": [
                                    {"name": "plan", "mountPath": "/etc/featurekube/plan"}
                                ],
                            }
                        ],
                        "volumes": [{"name": "plan", "configMap": {"name": "eta-model-plan"}}],
                    },
                },
            },
        },
    )

    def available() -> bool:
        status = apps.read_namespaced_deployment_status("eta-model", namespace).status
        return (status.available_replicas or 0) == 2

    _eventually(available, 90, "the Deployment becomes available", runtime)
    endpoints = json.loads((tmp_path / "runtime" / "endpoints.json").read_text())
    (server,) = runtime._servers.values()
    assert endpoints[f"{namespace}/eta-model"] == f"127.0.0.1:{server.port}"
    assert processes.is_running(server.pid)

    apps.delete_namespaced_deployment("eta-model", namespace)
    _eventually(
        lambda: not processes.is_running(server.pid),
        30,
        "the server stops with its Deployment",
        runtime,
    )
    assert json.loads((tmp_path / "runtime" / "endpoints.json").read_text()) == {}


IN_CLUSTER_SERVER = """
import json, os, pathlib, socket, sys
import kubernetes.client, kubernetes.config
from kubernetes.config import incluster_config
kubernetes.config.load_incluster_config()
review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
me = kubernetes.client.AuthenticationV1Api().create_self_subject_review(review)
mount = pathlib.Path(incluster_config.SERVICE_TOKEN_FILENAME).parent
cert = pathlib.Path(sys.argv[sys.argv.index("--tls-cert") + 1])
pathlib.Path(os.environ["OUT"]).write_text(json.dumps({
    "user": me.status.user_info.username,
    "namespace": (mount / "namespace").read_text(),
    "kubeconfig": os.environ.get("KUBECONFIG"),
    "cert": cert.read_text(),
    "secret_files": sorted(p.name for p in cert.parent.iterdir()),
}))
port = int(sys.argv[sys.argv.index("--port") + 1])
server = socket.create_server(("127.0.0.1", port))
while True:
    conn, _ = server.accept()
    conn.close()
"""


def test_a_feature_server_gets_its_secret_volumes_and_its_service_account_in_cluster(
    runtime: Runtime, kube_api: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """As a kubelet does: Secret volumes written (``items`` to their paths), and the
    pod's ServiceAccount token, CA and namespace where in-cluster clients read them, so
    the server talks to the API server as its ServiceAccount, not as the runtime."""
    core, apps = kubernetes.client.CoreV1Api(kube_api), kubernetes.client.AppsV1Api(kube_api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "eta-server"}})
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "tls"}, "stringData": {"tls.crt": "CERT", "other": "not mounted"}},
    )
    script = tmp_path / "in_cluster_server.py"
    script.write_text(IN_CLUSTER_SERVER)
    runtime.server_command = (sys.executable, str(script))
    out = tmp_path / "server.json"
    labels = {"featurekube.dev/feature-service": "eta-model"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "eta-model", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "eta-server",
                        "containers": [
                            {
                                "name": "feature-server",
                                "image": "featurekube/feature-server",
                                "args": ["--tls-cert", "/etc/tls/server.crt", "--port", "50051"],
                                "env": [{"name": "OUT", "value": str(out)}],
                                "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls"}],
                            }
                        ],
                        "volumes": [
                            {
                                "name": "tls",
                                "secret": {
                                    "secretName": "tls",
                                    "items": [{"key": "tls.crt", "path": "server.crt"}],
                                },
                            }
                        ],
                    },
                },
            },
        },
    )

    _eventually(out.exists, 90, "the server starts and says who it is", runtime)
    seen = json.loads(out.read_text())
    assert seen == {
        "user": f"system:serviceaccount:{namespace}:eta-server",
        "namespace": namespace,
        "kubeconfig": None,
        "cert": "CERT",
        "secret_files": ["server.crt"],
    }

    # Once 80% of its life has passed, the token is requested anew, in place.
    (server,) = runtime._servers.values()
    assert server.token is not None
    token_file = server.token.directory / "token"
    first = token_file.read_text()
    server.token.refresh_at = 0.0
    runtime.step()
    assert token_file.read_text() != first
    review = kubernetes.client.AuthenticationV1Api(kube_api).create_token_review(
        {"spec": {"token": token_file.read_text()}}
    )
    assert review.status.user.username == f"system:serviceaccount:{namespace}:eta-server"
    assert server.token.refresh_at > time.time() + 0.7 * 3600
