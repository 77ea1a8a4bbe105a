"""featurekube's chart on the local platform's node, as `make demo` and the end-to-end
tests install it: the values a node needs, ``helm upgrade --install``, the wait for the
operator, and a Service of the node reached from the machine through
``kubectl port-forward``.

The node has the machine's two cores: the chart's values ask Spark's pods for a tenth
of a core each (their JVMs still use what is free), so that a driver and its executors
are scheduled together beside the operator and the feature servers.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from featurekube import errors
from featurekube._platform.platform import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, Endpoints

__all__ = [
    "AWS_SECRET",
    "OPERATOR_SELECTOR",
    "PortForward",
    "describe_pods",
    "fit_to_node",
    "install",
    "namespace_aws_secret",
    "node_values",
    "operator_deployment",
    "wait_for_operator",
]

AWS_SECRET = "featurekube-aws"
"""The Secret of a workload namespace its jobs and feature servers take AWS keys from
(the chart's ``aws.credentials.namespaceSecret``)."""
OPERATOR_SELECTOR = "app.kubernetes.io/component=operator"
BACKFILL_WINDOW_SECONDS = 400 * 86400
"""A laptop's backfill: one Spark job per view (as the local runtime's operator runs)."""
SPARK_POD_CPU = "100m"
HELM_SECONDS = 300.0
FORWARD_SECONDS = 60.0


def namespace_aws_secret() -> dict[str, Any]:
    """The body of a workload namespace's AWS Secret, with the platform's moto keys."""
    return {
        "metadata": {"name": AWS_SECRET},
        "stringData": {
            "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
        },
    }


def node_values(
    endpoints: Endpoints,
    namespace: str,
    *,
    offline_uri: str,
    table_prefix: str,
    server_auth: str = "tokenreview",
    tls_secret: str = "featurekube-serving-tls",
    reconcile_seconds: int = 5,
) -> dict[str, Any]:
    """The chart's values for an operator in ``namespace`` of the platform's node that
    reconciles that namespace, stores features under ``offline_uri`` and in tables
    named ``table_prefix``..., reaches moto (and the platform's Kafka, when it runs
    one) where the node's pods reach them, and runs each view's backfill as one window.
    ``tls_secret`` '' serves plaintext."""
    if not endpoints.node:
        raise errors.PlatformError(
            "the platform runs no node: `featurekube dev up --node` starts one"
        )
    values: dict[str, Any] = {
        "operator": {"watchNamespaces": [namespace], "logFormat": "plain"},
        "store": {"offlineUri": offline_uri, "tablePrefix": table_prefix},
        "aws": {
            "region": endpoints.region,
            # moto, on the machine's end of the node's link, which pods reach.
            "endpointUrl": endpoints.aws_endpoint_url,
            "credentials": {
                "source": "secret",
                "accessKeyId": AWS_ACCESS_KEY_ID,
                "secretAccessKey": AWS_SECRET_ACCESS_KEY,
            },
        },
        "materialization": {
            "reconcileIntervalSeconds": reconcile_seconds,
            "backfillWindowSeconds": BACKFILL_WINDOW_SECONDS,
        },
        "spark": {
            "conf": {
                "spark.kubernetes.driver.request.cores": SPARK_POD_CPU,
                "spark.kubernetes.executor.request.cores": SPARK_POD_CPU,
            }
        },
        "featureServer": {"auth": server_auth, "tls": {"secretName": tls_secret}},
        # The operator's parity check calls servers as a client named in their access
        # lists, which the examples do not name.
        "parity": {"enabled": False},
    }
    if endpoints.kafka_pods_bootstrap_servers:
        # The operator's brokers, which a stream source without its own reads: the
        # listener on the machine's end of the node's link (the loopback one is the
        # machine's alone).
        values["kafka"] = {"bootstrapServers": endpoints.kafka_pods_bootstrap_servers}
    return values


SERVER_RESOURCES: Mapping[str, Any] = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


def fit_to_node(body: Mapping[str, Any]) -> dict[str, Any]:
    """A FeatureService (or any object) ``body`` made to fit the node's two cores: its
    feature server one pod with a small request, without an autoscaler (whose minimum
    would bring the pods back) or a disruption budget. Other objects unchanged."""
    fitted = {**body, "spec": dict(body.get("spec") or {})}
    server = fitted["spec"].get("server")
    if body.get("kind") != "FeatureService" or not server:
        return fitted
    server = {k: v for k, v in server.items() if k not in ("autoscaling", "podDisruptionBudget")}
    fitted["spec"]["server"] = {**server, "replicas": 1, "resources": dict(SERVER_RESOURCES)}
    return fitted


def install(
    helm: Sequence[str],
    chart: Path,
    release: str,
    namespace: str,
    kubeconfig: Path,
    values: Mapping[str, Any],
    values_file: Path,
    env: Mapping[str, str] | None = None,
) -> None:
    """``helm upgrade --install`` of ``chart`` as ``release`` in ``namespace`` with
    ``values`` (written to ``values_file``); ``helm`` is the command that runs helm."""
    values_file.write_text(yaml.safe_dump(dict(values)))
    argv = [*helm, "upgrade", "--install", release, str(chart)]
    argv += ["--kubeconfig", str(kubeconfig), "-n", namespace, "-f", str(values_file)]
    done = subprocess.run(
        argv, capture_output=True, text=True, env=dict(env) if env else None, timeout=HELM_SECONDS
    )
    if done.returncode != 0:
        raise errors.PlatformError(
            f"helm upgrade --install {release} in namespace {namespace} exited "
            f"{done.returncode}: {done.stderr.strip()}"
        )


def operator_deployment(release: str) -> str:
    """The name of the release's operator Deployment."""
    return f"{release}-featurekube-operator"


def wait_for_operator(api: Any, namespace: str, release: str, timeout: float) -> float:
    """Wait until the release's operator Deployment has a ready, up-to-date pod (a
    kubernetes ApiClient ``api``); return the seconds waited. A timeout raises with
    the operator pods' states."""
    import kubernetes.client

    apps, core = kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api)
    name, started = operator_deployment(release), time.monotonic()
    while time.monotonic() - started < timeout:
        status = apps.read_namespaced_deployment(name, namespace).status
        if (
            status is not None
            and (status.ready_replicas or 0) >= 1
            and (status.unavailable_replicas or 0) == 0
        ):
            return time.monotonic() - started
        time.sleep(1)
    raise errors.PlatformError(
        f"the operator Deployment {namespace}/{name} has no ready pod after "
        f"{timeout:.0f} s: {describe_pods(core, namespace, OPERATOR_SELECTOR)}"
    )


def describe_pods(core: Any, namespace: str, selector: str = "") -> str:
    """The pods' phases and container states (a kubernetes CoreV1Api ``core``)."""
    lines = []
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        states = [
            f"{s.name}: {s.state.waiting or s.state.terminated or 'running'}"
            for s in pod.status.container_statuses or []
        ]
        lines.append(f"{pod.metadata.name} {pod.status.phase} {states}")
    return "; ".join(lines) or "no pods"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortForward(contextlib.AbstractContextManager["PortForward"]):
    """``kubectl port-forward service/<service>`` from a free port of the machine's
    loopback: :attr:`address` reaches one ready pod behind the Service while the block
    runs. The forward ends with that pod: open a new one to reach its replacement."""

    def __init__(
        self, kubectl: Path, kubeconfig: Path, namespace: str, service: str, port: int
    ) -> None:
        self.local_port = _free_port()
        self.address = f"127.0.0.1:{self.local_port}"
        self._what = f"service/{service} in namespace {namespace}"
        self._argv = [str(kubectl), f"--kubeconfig={kubeconfig}", "-n", namespace]
        self._argv += ["port-forward", f"service/{service}", f"{self.local_port}:{port}"]
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> PortForward:
        self._process = subprocess.Popen(
            self._argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self._process.stdout is not None
        # kubectl says "Forwarding from 127.0.0.1:<port>" once it listens, or why not.
        first = _read_line(self._process, FORWARD_SECONDS)
        if "Forwarding from 127.0.0.1" not in first:
            self._stop()
            raise errors.PlatformError(f"kubectl port-forward to {self._what}: {first.strip()}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=30)


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The process's first line of output, '' if it gives none within ``timeout``."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as waiting:
        waiting.register(process.stdout, selectors.EVENT_READ)
        if not waiting.select(timeout):
            return f"no answer within {timeout:.0f} s"
    return process.stdout.readline() or f"exited {process.wait()}"
