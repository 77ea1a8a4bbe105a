"""The Kubeflow Spark Operator as an add-on of the local platform's node.

The operator runs as its Helm chart (v2.5.0, ``charts/spark-operator-chart`` in its Go
module) installs it, with the chart's RBAC and nothing more: a controller that runs
``spark-submit`` for each SparkApplication, and the admission webhook that validates
SparkApplications and gives driver and executor pods what spark-submit's options cannot
(env lists, ConfigMap volumes, security contexts). Its image is featurekube's Spark
image with the operator's binary on top (``hack/images/build.py spark-operator``), so
the spark-submit it runs is the Spark of featurekube's jobs.

The webhook's serving certificate comes from a CA made here (:mod:`pki`), handed to the
webhook as cert-manager would (``--enable-cert-manager``: a Secret with ca.crt, tls.crt
and tls.key), and its CA is the webhook configurations' caBundle; so the webhook never
rewrites its own configuration.

:func:`manifests` is pure; :func:`find_archives` looks for the built images (``make
spark-operator`` writes them to :func:`default_image_dir`); :func:`install` applies the
manifests to a running platform's node. ``featurekube dev up --node`` does all three.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from featurekube import errors
from featurekube._platform import node_config, oci, pki

__all__ = [
    "CONTROLLER",
    "IMAGE",
    "NAMESPACE",
    "NOT_BUILT",
    "REPOSITORY",
    "VERSION",
    "WEBHOOK",
    "Archives",
    "default_image_dir",
    "find_archives",
    "install",
    "manifests",
    "spark_job_access",
]

VERSION = "v2.5.0"
"""The operator's release; hack/spark-operator/versions.env pins the same (build.py
refuses to build when they differ)."""
REPOSITORY = "ghcr.io/featurekube/spark-operator"
IMAGE = f"{REPOSITORY}:{VERSION}"
NAMESPACE = "spark-operator"
CONTROLLER = "spark-operator-controller"
WEBHOOK = "spark-operator-webhook"
WEBHOOK_SERVICE = "spark-operator-webhook-svc"
WEBHOOK_SECRET = "spark-operator-webhook-certs"
WEBHOOK_PORT = 9443
_ROLLOUT_TIMEOUT_S = 300
NOT_BUILT = (
    "its image is not built: `make spark-operator` builds it (about 20 minutes the first "
    "time), then `featurekube dev down` and `featurekube dev up --node` install it"
)
"""Why the platform's node runs no Spark Operator, when its image is missing."""

# hack/images/build.py names its archives `<image>-<16 hex digits of its inputs>`.
_OPERATOR_ARCHIVE = re.compile(r"spark-operator-[0-9a-f]{16}\.oci\.tar")
_SPARK_ARCHIVE = re.compile(r"spark-[0-9a-f]{16}\.oci\.tar")

_ALL = ["get", "list", "watch", "create", "update", "patch", "delete"]
_EVENTS = {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "update", "patch"]}

# The chart's rules (templates/controller/rbac.yaml and webhook/rbac.yaml, rendered
# for every namespace, without leader election), in its order.
CONTROLLER_CLUSTER_RULES: tuple[Mapping[str, Any], ...] = (
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": [*_ALL, "deletecollection"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": _ALL},
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": _ALL},
    {"apiGroups": [""], "resources": ["services"], "verbs": _ALL},
    _EVENTS,
    {
        "apiGroups": ["extensions", "networking.k8s.io"],
        "resources": ["ingresses"],
        "verbs": ["get", "list", "watch", "create", "update", "delete"],
    },
    {
        "apiGroups": ["sparkoperator.k8s.io"],
        "resources": ["sparkapplications", "scheduledsparkapplications", "sparkconnects"],
        "verbs": _ALL,
    },
    {
        "apiGroups": ["sparkoperator.k8s.io"],
        "resources": [
            "sparkapplications/status",
            "sparkapplications/finalizers",
            "scheduledsparkapplications/status",
            "scheduledsparkapplications/finalizers",
            "sparkconnects/status",
            "sparkconnects/finalizers",
        ],
        "verbs": ["get", "update", "patch"],
    },
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get"],
    },
)
CONTROLLER_RULES: tuple[Mapping[str, Any], ...] = (_EVENTS,)
WEBHOOK_CLUSTER_RULES: tuple[Mapping[str, Any], ...] = (
    _EVENTS,
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
        "verbs": ["list", "watch"],
    },
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
        "resourceNames": [WEBHOOK],
        "verbs": ["get", "update"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["sparkoperator.k8s.io"],
        "resources": [
            "sparkapplications",
            "sparkapplications/status",
            "sparkapplications/finalizers",
            "scheduledsparkapplications",
            "scheduledsparkapplications/status",
            "scheduledsparkapplications/finalizers",
        ],
        "verbs": _ALL,
    },
)
WEBHOOK_RULES: tuple[Mapping[str, Any], ...] = (
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": [WEBHOOK_SECRET],
        "verbs": ["get", "update"],
    },
)
SPARK_JOB_RULES: tuple[Mapping[str, Any], ...] = (
    {
        "apiGroups": [""],
        "resources": ["pods", "configmaps", "persistentvolumeclaims", "services"],
        "verbs": [*_ALL, "deletecollection"],
    },
)
"""What a Spark driver does in its namespace (the chart's templates/spark/rbac.yaml)."""

_RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "spark-operator",
        "app.kubernetes.io/instance": "spark-operator",
        "app.kubernetes.io/component": component,
    }


def _meta(name: str, component: str, namespaced: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": _labels(component)}
    if namespaced:
        meta["namespace"] = NAMESPACE
    return meta


def _access(name: str, component: str, cluster_rules: Any, rules: Any) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRole and Role of one component, with their bindings."""
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, component)},
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": _meta(name, component, namespaced=False),
            "rules": [dict(r) for r in cluster_rules],
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": _meta(name, component, namespaced=False),
            "subjects": subject,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
        },
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": _meta(name, component),
            "rules": [dict(r) for r in rules],
        },
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": _meta(name, component),
            "subjects": subject,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        },
    ]


def _deployment(
    name: str, component: str, args: list[str], ports: list[dict[str, Any]], image: str
) -> dict[str, Any]:
    probe = {"httpGet": {"port": 8081, "scheme": "HTTP"}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, component),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": _labels(component)},
            "template": {
                "metadata": {"labels": _labels(component)},
                "spec": {
                    "serviceAccountName": name,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": name,
                            "image": image,
                            # Loaded into the node, never pulled.
                            "imagePullPolicy": "Never",
                            "args": args,
                            "ports": ports,
                            # The controller writes pod templates under /tmp/spark; the
                            # webhook its certificate; spark-submit its scratch files.
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            "livenessProbe": {"httpGet": {**probe["httpGet"], "path": "/healthz"}},
                            "readinessProbe": {"httpGet": {**probe["httpGet"], "path": "/readyz"}},
                            "securityContext": dict(_RESTRICTED_CONTAINER),
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
                },
            },
        },
    }


_COMMON_ARGS = [
    "--zap-log-level=info",
    "--zap-encoder=console",
    "--namespaces=",
    "--leader-election=false",
]


def _webhooks(kind: str, ca_pem: bytes) -> list[dict[str, Any]]:
    """The chart's webhooks of one kind ("mutate" or "validate"), trusting ``ca_pem``."""
    targets = [
        ("sparkoperator.k8s.io", "v1beta2", "sparkapplications", "sparkapplication"),
        (
            "sparkoperator.k8s.io",
            "v1beta2",
            "scheduledsparkapplications",
            "scheduledsparkapplication",
        ),
        ("sparkoperator.k8s.io", "v1alpha1", "sparkconnects", "sparkconnect"),
    ]
    hooks = []
    if kind == "mutate":
        hooks.append(
            {
                "name": "mutate--v1-pod.sparkoperator.k8s.io",
                "path": "/mutate--v1-pod",
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                        "operations": ["CREATE"],
                    }
                ],
                # Only the pods spark-submit starts for the operator's applications.
                "objectSelector": {
                    "matchLabels": {"sparkoperator.k8s.io/launched-by-spark-operator": "true"}
                },
            }
        )
    for group, version, resource, singular in targets:
        path = f"/{kind}-{group.replace('.', '-')}-{version}-{singular}"
        hooks.append(
            {
                "name": f"{path.lstrip('/')}.sparkoperator.k8s.io",
                "path": path,
                "rules": [
                    {
                        "apiGroups": [group],
                        "apiVersions": [version],
                        "resources": [resource],
                        "operations": ["CREATE", "UPDATE"],
                    }
                ],
            }
        )
    bundle = base64.b64encode(ca_pem).decode()
    return [
        {
            "name": hook["name"],
            "admissionReviewVersions": ["v1"],
            "clientConfig": {
                "service": {
                    "name": WEBHOOK_SERVICE,
                    "namespace": NAMESPACE,
                    "port": WEBHOOK_PORT,
                    "path": hook["path"],
                },
                "caBundle": bundle,
            },
            "sideEffects": "NoneOnDryRun",
            "failurePolicy": "Fail",
            "rules": hook["rules"],
            "timeoutSeconds": 10,
            **({"objectSelector": hook["objectSelector"]} if "objectSelector" in hook else {}),
        }
        for hook in hooks
    ]


def webhook_certificate(now: dt.datetime) -> tuple[bytes, pki.KeyPair]:
    """A CA of its own and the webhook's serving certificate for its Service's names
    (RSA in PKCS#1: the webhook reads no other key)."""
    ca = pki.new_authority("featurekube-dev-spark-operator-webhook-ca", now)
    service = f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc"
    hosts = (service, f"{service}.{node_config.CLUSTER_DOMAIN}")
    serving = pki.issue_certificate(ca, service, now, hosts=hosts, server=True, rsa_pkcs1=True)
    return ca.pair.cert_pem, serving


def manifests(ca_pem: bytes, serving: pki.KeyPair, image: str = IMAGE) -> list[dict[str, Any]]:
    """Every object of the add-on, in the order to apply them."""
    controller_args = [
        "controller",
        "start",
        *_COMMON_ARGS,
        "--controller-threads=10",
        "--enable-ui-service=true",
        "--enable-metrics=true",
        "--metrics-bind-address=:8080",
        "--metrics-endpoint=/metrics",
        "--metrics-labels=app_type",
        "--workqueue-ratelimiter-bucket-qps=50",
        "--workqueue-ratelimiter-bucket-size=500",
        "--workqueue-ratelimiter-max-delay=6h",
        "--driver-pod-creation-grace-period=10s",
        "--max-tracked-executor-per-app=1000",
        "--feature-gates=PartialRestart=false,LoadSparkDefaults=false",
    ]
    webhook_args = [
        "webhook",
        "start",
        *_COMMON_ARGS,
        f"--webhook-secret-name={WEBHOOK_SECRET}",
        f"--webhook-secret-namespace={NAMESPACE}",
        f"--webhook-svc-name={WEBHOOK_SERVICE}",
        f"--webhook-svc-namespace={NAMESPACE}",
        f"--webhook-port={WEBHOOK_PORT}",
        f"--mutating-webhook-name={WEBHOOK}",
        f"--validating-webhook-name={WEBHOOK}",
        "--webhook-cert-dir=/tmp/serving-certs",
        # The certificate is ours (the Secret below), as cert-manager's would be: the
        # webhook reads it and leaves the configurations' caBundle alone.
        "--enable-cert-manager=true",
        "--enable-metrics=true",
        "--metrics-bind-address=:8080",
        "--metrics-endpoint=/metrics",
        "--metrics-labels=app_type",
    ]
    metrics = {"name": "metrics", "containerPort": 8080}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        *_access(CONTROLLER, "controller", CONTROLLER_CLUSTER_RULES, CONTROLLER_RULES),
        *_access(WEBHOOK, "webhook", WEBHOOK_CLUSTER_RULES, WEBHOOK_RULES),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(WEBHOOK_SECRET, "webhook"),
            "type": "kubernetes.io/tls",
            "data": {
                "ca.crt": base64.b64encode(ca_pem).decode(),
                "tls.crt": base64.b64encode(serving.cert_pem).decode(),
                "tls.key": base64.b64encode(serving.key_pem).decode(),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(WEBHOOK_SERVICE, "webhook"),
            "spec": {
                "selector": _labels("webhook"),
                "ports": [{"name": "webhook", "port": WEBHOOK_PORT, "targetPort": "webhook"}],
            },
        },
        _deployment(
            WEBHOOK,
            "webhook",
            webhook_args,
            [{"name": "webhook", "containerPort": WEBHOOK_PORT}, metrics],
            image,
        ),
        _deployment(CONTROLLER, "controller", controller_args, [metrics], image),
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": _meta(WEBHOOK, "webhook", namespaced=False),
            "webhooks": _webhooks("mutate", ca_pem),
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": _meta(WEBHOOK, "webhook", namespaced=False),
            "webhooks": _webhooks("validate", ca_pem),
        },
    ]


def spark_job_access(namespace: str, service_account: str) -> list[dict[str, Any]]:
    """The ServiceAccount a namespace's Spark drivers run as, with the chart's rights
    for them (featurekube's chart makes the same for its views' namespaces)."""
    name = f"{service_account}-driver"
    meta = {"namespace": namespace, "labels": _labels("spark")}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": service_account, **meta},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, **meta},
            "rules": [dict(r) for r in SPARK_JOB_RULES],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, **meta},
            "subjects": [
                {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
            ],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        },
    ]


def default_image_dir() -> Path:
    """Where ``hack/images/build.py`` keeps the image archives: ``images`` under
    ``$FEATUREKUBE_CACHE``, else under ``~/.cache/featurekube``."""
    root = os.environ.get("FEATUREKUBE_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "featurekube") / "images"


@dataclass(frozen=True)
class Archives:
    """The built images the add-on needs in the node."""

    operator: Path
    """The operator's image (:data:`IMAGE`): featurekube's Spark image plus its binary."""
    spark: Path | None
    """featurekube's Spark image, which the drivers and executors run; None when it is
    not built (the operator then runs, but its applications' pods cannot start)."""

    def all(self) -> list[Path]:
        """The archives to import, the operator's first (the Spark image shares all but
        its last layer, so it imports faster after it)."""
        return [self.operator, *([self.spark] if self.spark is not None else [])]


def find_archives(image_dir: Path) -> Archives | None:
    """The newest built archives of the operator's image (naming :data:`IMAGE`, so of
    this version) and of the Spark image in ``image_dir``; None without the first.

    The newest, not the one of the current sources: the operator's binary and
    spark-submit do not change with featurekube's code, so any build serves; `make
    spark-operator` (and `make images`) replace it by the current one.
    """

    def newest(pattern: re.Pattern[str], wanted: str | None) -> Path | None:
        try:
            found = [p for p in image_dir.iterdir() if pattern.fullmatch(p.name)]
        except OSError:
            return None
        for archive in sorted(found, key=_modified, reverse=True):
            if wanted is None or wanted in oci.image_names(archive):
                return archive
        return None

    operator = newest(_OPERATOR_ARCHIVE, IMAGE)
    if operator is None:
        return None
    return Archives(operator=operator, spark=newest(_SPARK_ARCHIVE, None))


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def install(
    kubectl: Path, kubeconfig: Path, manifest: Path, timeout: float = _ROLLOUT_TIMEOUT_S
) -> None:
    """Apply the add-on to the cluster of ``kubeconfig`` (writing its manifests to
    ``manifest``) and wait until the webhook and the controller are ready.

    The image must be in the node (``hack/images/build.py --load spark-operator``).
    Raises :class:`~featurekube.errors.ComponentStartError` naming the step that failed,
    with kubectl's output and the operator's pods' state.
    """
    ca_pem, serving = webhook_certificate(dt.datetime.now(dt.UTC))
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(yaml.safe_dump_all(manifests(ca_pem, serving), sort_keys=False))
    manifest.chmod(0o600)  # it holds the webhook's private key
    base = [str(kubectl), f"--kubeconfig={kubeconfig}"]
    steps = [
        ["apply", "--server-side", "--force-conflicts", "-f", str(manifest)],
        *(
            [
                "-n",
                NAMESPACE,
                "rollout",
                "status",
                f"deployment/{name}",
                f"--timeout={timeout:.0f}s",
            ]
            for name in (WEBHOOK, CONTROLLER)
        ),
    ]
    for args in steps:
        done = subprocess.run([*base, *args], capture_output=True, text=True)
        if done.returncode != 0:
            # Why its pods are not ready (unschedulable, image missing, crash loop)
            # is in their state and the namespace's events.
            seen = [
                subprocess.run([*base, "-n", NAMESPACE, *what], capture_output=True, text=True)
                for what in (
                    ["get", "pods", "-o", "wide"],
                    ["get", "events", "--sort-by=.lastTimestamp"],
                )
            ]
            raise errors.ComponentStartError(
                "spark-operator",
                f"`kubectl {' '.join(args)}` exited with {done.returncode}",
                "\n".join([done.stdout + done.stderr, *(r.stdout + r.stderr for r in seen)]),
            )
