"""The chart installed on the run's node once, for every end-to-end module
(importable as ``node_system``; the session fixture ``node_system`` in
tests/conftest.py yields it).

:func:`installed` makes a namespace on the node, what a platform team sets up beside
the chart there (the AWS Secret, the feature servers' TLS Secret, ServiceAccounts and
a caller's token), and installs the chart by helm with the node's values
(:func:`featurekube._platform.chart.node_values`: moto, and the platform's Kafka, where
the node's pods reach them). :class:`System` is what the tests do with it: apply
resources, read them, find and kill pods, reach feature servers through
``kubectl port-forward``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest

from chart_support import CHART, Helm
from featurekube._platform import chart, node_config, pki
from featurekube._platform import platform as local
from featurekube.online.client import OnlineClient
from featurekube_operator import naming

__all__ = [
    "POD_SECONDS",
    "RELEASE",
    "TLS_SECRET",
    "System",
    "installed",
    "pod_ready",
    "ready",
]

POD_SECONDS = 300.0
TLS_SECRET = "featurekube-serving-tls"
RELEASE = "fk"
GRPC_PORT = 50051
SERVER_ACCOUNT = "eta-feature-server"
"""The example's spec.server.serviceAccountName (the chart makes and binds its own
default, featurekube-feature-server)."""
CALLER_ACCOUNT = "eta-model-client"
SPARK = ("sparkoperator.k8s.io", "v1beta2", "sparkapplications")
RECONCILE_SECONDS = 2


def ready(body: dict[str, Any]) -> bool:
    """Whether a featurekube object's ``Ready`` condition is True."""
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (body.get("status") or {}).get("conditions") or []
    )


def pod_ready(pod: Any) -> bool:
    """Whether every container of ``pod`` is ready."""
    statuses = pod.status.container_statuses or []
    return bool(statuses) and all(c.ready for c in statuses)


class System:
    """The namespace under test on the node, with the chart installed in it."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        namespace: str,
        root: Path,
        kubectl: Path,
        kubeconfig: Path,
    ) -> None:
        self.api, self.namespace, self.root = api, namespace, root
        self.kubectl, self.kubeconfig = kubectl, kubeconfig
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.ca_file = self.token_file = root / "unset"
        self.binding = ""

    def secure(self) -> None:
        """What the platform team sets up beside the chart for feature servers in a
        workload namespace, and a caller: the TLS Secret, the example's own server
        ServiceAccount allowed to review tokens, and a token of a ServiceAccount of the
        namespace (which spec.access, unset, lets read and push)."""
        now = dt.datetime.now(dt.UTC)
        ca = pki.new_authority("featurekube-e2e-serving-ca", now)
        hosts = (f"*.{self.namespace}.svc", f"*.{self.namespace}.svc.cluster.local")
        pair = pki.issue_certificate(
            ca, hosts[0], now, hosts=(*hosts, "localhost", "127.0.0.1"), server=True
        )
        self.core.create_namespaced_secret(
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
        for account in (SERVER_ACCOUNT, CALLER_ACCOUNT):
            self.core.create_namespaced_service_account(
                self.namespace, {"metadata": {"name": account}}
            )
        self.binding = f"{self.namespace}-eta-feature-server-auth-delegator"
        kubernetes.client.RbacAuthorizationV1Api(self.api).create_cluster_role_binding(
            {
                "metadata": {"name": self.binding},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:auth-delegator",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": SERVER_ACCOUNT, "namespace": self.namespace}
                ],
            }
        )
        request = {"spec": {"expirationSeconds": 2 * 3600}}
        answer = self.core.create_namespaced_service_account_token(
            CALLER_ACCOUNT, self.namespace, request
        )
        self.token_file = self.root / "caller.token"
        self.token_file.write_text(answer.status.token)

    @contextlib.contextmanager
    def client(self, service: str = "eta-model", *, token: bool = True) -> Iterator[OnlineClient]:
        """A client of ``service``'s server through a port-forward to its Service, over
        TLS, with the caller's token or none."""
        with (
            chart.PortForward(
                self.kubectl, self.kubeconfig, self.namespace, service, GRPC_PORT
            ) as forward,
            OnlineClient(
                forward.address,
                ca_file=self.ca_file,
                token_file=self.token_file if token else None,
                timeout=60,
            ) as online,
        ):
            yield online

    def operator_pod(self) -> Any:
        """The operator's running pod, None while there is not exactly one."""
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=chart.OPERATOR_SELECTOR
        ).items
        running = [p for p in pods if p.metadata.deletion_timestamp is None]
        return running[0] if len(running) == 1 else None

    def kill_pod(self, name: str) -> None:
        """Kill a pod as a node failure would: no grace period."""
        self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)

    def pods(self, selector: str) -> list[Any]:
        found: list[Any] = self.core.list_namespaced_pod(
            self.namespace, label_selector=selector
        ).items
        return found

    def operator_log(self) -> str:
        pod = self.operator_pod()
        if pod is None:
            return "(no operator pod)"
        log: str = self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace)
        return log

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

    def spark_applications(
        self, view: str, label: str = naming.LABEL_FEATURE_VIEW
    ) -> list[dict[str, Any]]:
        """The SparkApplications whose ``label`` names ``view`` (by default its windows;
        a stream's carry ``featurekube.dev/stream-of``)."""
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            *SPARK[:2], self.namespace, SPARK[2]
        )["items"]
        return [a for a in items if (a["metadata"].get("labels") or {}).get(label) == view]


@contextlib.contextmanager
def installed(node_platform: local.LocalPlatform, helm: Helm, root: Path) -> Iterator[System]:
    """The chart installed in a new namespace of ``node_platform``'s node, its operator
    Ready; uninstalled, and the namespace deleted, when the block ends. ``root`` holds
    the values file, the CA and the caller's token."""
    found = node_platform.endpoints()
    assert found is not None and found.node == node_config.NODE_NAME
    namespace = f"e2e-{uuid.uuid4().hex[:6]}"
    api = kubernetes.config.new_client_from_config(config_file=str(found.kubeconfig))
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_secret(namespace, chart.namespace_aws_secret())
    kubectl = local.resolve_k8s_bin_dir(node_platform.settings) / "kubectl"
    running = System(api, namespace, root, kubectl, found.kubeconfig)
    try:
        running.secure()
        values = chart.node_values(
            found,
            namespace,
            offline_uri=f"s3://featurekube/{namespace}/offline",
            table_prefix=f"fk-{namespace}.",
            tls_secret=TLS_SECRET,
            reconcile_seconds=RECONCILE_SECONDS,
        )
        started = time.monotonic()
        chart.install(
            [str(helm.binary)],
            CHART,
            RELEASE,
            namespace,
            found.kubeconfig,
            values,
            root / "values.yaml",
            env=helm.environment(),
        )
        chart.wait_for_operator(api, namespace, RELEASE, POD_SECONDS)
        print(f"helm install -> operator Ready: {time.monotonic() - started:.1f} s")
        with pytest.MonkeyPatch.context() as env:
            # The SDK, boto3 and deltalake of this process, on the node's platform.
            for key, value in found.environment().items():
                env.setenv(key, value)
            yield running
    finally:
        print(running.operator_log()[-5000:])
        helm.run(
            "uninstall",
            RELEASE,
            "--kubeconfig",
            str(found.kubeconfig),
            "-n",
            namespace,
            "--wait",
            "--timeout",
            "120s",
            check=False,
            timeout=180,
        )
        if running.binding:
            kubernetes.client.RbacAuthorizationV1Api(api).delete_cluster_role_binding(
                running.binding
            )
        core.delete_namespace(namespace)
        api.close()
