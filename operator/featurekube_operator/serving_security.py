"""How a feature server is secured: TLS from a Secret, ServiceAccount tokens, and a
NetworkPolicy letting in only the namespaces its access lists name; pure, no I/O.

:func:`secure_deployment` turns the Deployment :func:`desired.render_deployment`
renders into one that serves TLS with the certificate of a ``kubernetes.io/tls``
Secret (``tls.crt``, ``tls.key``) and checks callers' tokens; :func:`render_network_policy`
renders the service's NetworkPolicy from its serving plan, so that a namespace taken
out of ``spec.access`` (or a share withdrawn) loses the network path in the same
reconcile that writes the plan without it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from featurekube import serving_access
from featurekube.spec import v1alpha1
from featurekube_operator import desired, naming

__all__ = [
    "AUTH_MODES",
    "HEALTH_PORT",
    "METRICS_PORT",
    "TLS_MOUNT",
    "allowed_namespaces",
    "render_network_policy",
    "secure_deployment",
]

AUTH_MODES = ("tokenreview", "none")
"""How feature servers know their callers (``featurekube-server --auth``)."""
TLS_MOUNT = "/etc/featurekube/tls"
"""Where a feature server's TLS Secret is mounted."""
METRICS_PORT = 9090
"""The feature server's Prometheus port (HTTP /metrics)."""
HEALTH_PORT = 9091
"""The feature server's plaintext port of gRPC health checks alone, with TLS: the
kubelet's gRPC probes speak no TLS, and fail a TLS port's handshake."""
_NAMESPACE_LABEL = "kubernetes.io/metadata.name"


def secure_deployment(
    deployment: Mapping[str, Any], tls_secret: str | None, auth: str
) -> dict[str, Any]:
    """``deployment`` serving TLS with ``tls_secret`` (None: plaintext) and checking
    tokens when ``auth`` is ``tokenreview`` (``none``: anyone may call)."""
    if auth not in AUTH_MODES:
        raise ValueError(f"server auth {auth!r} is not one of {', '.join(AUTH_MODES)}")
    secured = copy.deepcopy(dict(deployment))
    pod = secured["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == desired.SERVER_CONTAINER]
    args = container["args"]
    if tls_secret:
        args += ["--tls-cert", f"{TLS_MOUNT}/tls.crt", "--tls-key", f"{TLS_MOUNT}/tls.key"]
        container["volumeMounts"].append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
        # The kubelet updates the files when the Secret changes (cert-manager renewing
        # it); the server takes a new certificate at the next handshake.
        pod["volumes"].append({"name": "tls", "secret": {"secretName": tls_secret}})
        args += ["--health-port", str(HEALTH_PORT)]
        container["ports"].append({"name": "health", "containerPort": HEALTH_PORT})
        for probe in ("readinessProbe", "livenessProbe"):
            container[probe]["grpc"] = {"port": HEALTH_PORT}
    args += ["--auth", auth]
    if auth == "tokenreview":
        # The server reviews tokens as its ServiceAccount (system:auth-delegator), with
        # the token Kubernetes projects, whatever the ServiceAccount's own default.
        pod["automountServiceAccountToken"] = True
    return secured


def allowed_namespaces(plan: Mapping[str, Any]) -> list[str]:
    """The namespaces whose ServiceAccounts the plan lets read or push, sorted."""
    access = plan.get("access") or {}
    found = set()
    for subject in [*(access.get("read") or ()), *(access.get("push") or ())]:
        user = serving_access.normalize_subject(subject)
        namespace, _, _ = user[len(serving_access.SERVICE_ACCOUNT_PREFIX) :].partition(":")
        found.add(namespace)
    return sorted(found)


def render_network_policy(
    service: v1alpha1.FeatureService,
    plan: Mapping[str, Any],
    owner: Mapping[str, Any],
    metrics_namespaces: Sequence[str] = (),
) -> dict[str, Any]:
    """The NetworkPolicy of the service's feature server pods: the gRPC port from the
    namespaces of its access lists only, the metrics port from ``metrics_namespaces``
    (empty: from none), nothing else. Probes come from the node's kubelet, which
    NetworkPolicies do not govern."""
    name = service.metadata.name
    port = service.spec.server.port

    def peers(namespaces: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {"namespaceSelector": {"matchLabels": {_NAMESPACE_LABEL: namespace}}}
            for namespace in namespaces
        ]

    ingress: list[dict[str, Any]] = []
    readers = allowed_namespaces(plan)
    if readers:
        ingress.append({"from": peers(readers), "ports": [{"protocol": "TCP", "port": port}]})
    if metrics_namespaces:
        ingress.append(
            {
                "from": peers(sorted(set(metrics_namespaces))),
                "ports": [{"protocol": "TCP", "port": METRICS_PORT}],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": service.metadata.namespace or "default",
            "labels": {naming.LABEL_FEATURE_SERVICE: name},
            "ownerReferences": [_owner_reference(owner)],
        },
        "spec": {
            "podSelector": {"matchLabels": {naming.LABEL_FEATURE_SERVICE: name}},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def _owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
