"""The objects the operator wants to exist, rendered from specs; pure, no I/O.

Each ``render_*`` takes spec models and settings and returns a plain Kubernetes body;
the handlers apply them. Owned objects carry an ownerReference to the view or service,
never Argo CD's tracking labels, so Argo CD shows them as children, not drift.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from featurekube import s3_prefixes, serving_plan, versions
from featurekube.materialize import report
from featurekube.spec import v1alpha1
from featurekube_operator import naming, prefixes
from featurekube_operator.credentials import Credentials
from featurekube_operator.settings import OperatorSettings
from featurekube_operator.windows import Window

if TYPE_CHECKING:
    from featurekube.writer.online import PendingWindow

__all__ = [
    "ResolvedView",
    "owner_reference",
    "render_deployment",
    "render_hpa",
    "render_job_env",
    "render_materialize_job",
    "render_pdb",
    "render_plan_configmap",
    "render_service",
    "render_serving_plan",
    "render_snapshot",
    "render_spark_application",
]

SPEC_MOUNT = "/etc/featurekube/spec"
PLAN_MOUNT = "/etc/featurekube/plan"
SNAPSHOT_KEY = versions.SNAPSHOT_KEY
PLAN_KEY = "plan.yaml"


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """An ownerReference to ``body``, which deletes the child with its owner."""
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _iso(moment: Any) -> str:
    text: str = moment.isoformat().replace("+00:00", "Z")
    return text


def _aws_env(settings: OperatorSettings, access: Credentials | None) -> list[dict[str, Any]]:
    """The env that gives a job or feature server its AWS region, endpoint
    and its namespace's credentials (``access``; None: its environment's), never the
    operator's own. The region goes in both variables: the AWS SDK for Java and Hadoop's
    S3A read AWS_REGION, boto3 reads only AWS_DEFAULT_REGION."""
    env: list[dict[str, Any]] = [
        {"name": "AWS_REGION", "value": settings.aws_region},
        {"name": "AWS_DEFAULT_REGION", "value": settings.aws_region},
    ]
    if settings.aws_endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": settings.aws_endpoint_url})
        if settings.aws_endpoint_url.startswith("http://"):
            # delta-rs (the offline writer and reader) refuses plain HTTP without it.
            env.append({"name": "AWS_ALLOW_HTTP", "value": "true"})
    if access is not None:
        env.extend(access.env())
    return env


def _job_env(
    view: v1alpha1.FeatureView, settings: OperatorSettings, access: Credentials | None
) -> list[dict[str, Any]]:
    """:func:`_aws_env`, and the S3 prefixes the job checks its paths against before it
    reads (when the namespace is confined)."""
    env = _aws_env(settings, access)
    allowed = prefixes.namespace_prefixes(settings, view.metadata.namespace or "default")
    if allowed is not None:
        env.append({"name": s3_prefixes.ALLOWED_PREFIXES_ENV, "value": ",".join(allowed)})
    return env


def render_job_env(
    view: v1alpha1.FeatureView, settings: OperatorSettings, access: Credentials | None
) -> list[dict[str, Any]]:
    """The env of a view's jobs (window or stream): region, endpoint, the namespace's
    credentials ``access`` and the S3 prefixes it may read."""
    return _job_env(view, settings, access)


def render_snapshot(
    view: v1alpha1.FeatureView,
    version: int,
    settings: OperatorSettings,
    owner: Mapping[str, Any],
) -> dict[str, Any]:
    """The ConfigMap with one version's resolved spec, which every job of it reads.

    Immutable: a job reads exactly the spec its version was made from, whatever the
    view says later.
    """
    namespace = view.metadata.namespace or "default"
    name = view.metadata.name
    resolved = {
        "apiVersion": view.api_version,
        "kind": view.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": view.spec.to_yaml_dict(),
        "resolved": {
            "version": version,
            "onlineTable": naming.online_table(settings, namespace, name, version),
            "offlineUri": naming.offline_uri(settings, namespace, name, version),
        },
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": naming.snapshot_name(name, version),
            "namespace": namespace,
            "labels": {
                naming.LABEL_FEATURE_VIEW: name,
                naming.LABEL_VERSION: str(version),
                naming.LABEL_FINGERPRINT: naming.data_fingerprint(view.spec),
            },
            "ownerReferences": [owner_reference(owner)],
        },
        "immutable": True,
        "data": {SNAPSHOT_KEY: yaml.safe_dump(resolved, sort_keys=False)},
    }


RESTRICTED_POD: Mapping[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
"""The pod security context of every pod featurekube creates: Pod Security's
"restricted" profile (the images run as a non-root user)."""
RESTRICTED_CONTAINER: Mapping[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
"""The container security context of every container featurekube creates."""


def _job_arguments(
    view: v1alpha1.FeatureView,
    version: int,
    window: Window,
    settings: OperatorSettings,
    pending: PendingWindow | None = None,
) -> list[str]:
    """The arguments of ``python -m featurekube.materialize`` for one window, whose
    pending record the operator wrote (``pending``) or leaves to the job (None)."""
    namespace = view.metadata.namespace or "default"
    name = view.metadata.name
    arguments = [
        "--spec",
        f"{SPEC_MOUNT}/{SNAPSHOT_KEY}",
        "--start",
        _iso(window.start),
        "--end",
        _iso(window.end),
        "--offline-uri",
        naming.offline_uri(settings, namespace, name, version),
        "--online-table",
        naming.online_table(settings, namespace, name, version),
    ]
    if not view.spec.materialization.online:
        arguments.append("--no-online")
    elif pending is not None:
        arguments += ["--pending-run", pending.run]
        if pending.superseded is not None:
            arguments += ["--pending-superseded", pending.superseded]
    if not view.spec.materialization.offline:
        arguments.append("--no-offline")
    return arguments


def _run_labels(view: v1alpha1.FeatureView, version: int) -> dict[str, str]:
    return {naming.LABEL_FEATURE_VIEW: view.metadata.name, naming.LABEL_VERSION: str(version)}


def _run_metadata(
    view: v1alpha1.FeatureView,
    version: int,
    window: Window,
    owner: Mapping[str, Any],
    attempt: int,
    run: str,
) -> dict[str, Any]:
    """The metadata of one attempt at a window, alike for a SparkApplication and a Job:
    the operator reads the window, attempt and run back from it."""
    return {
        "name": naming.run_name(view.metadata.name, version, window),
        "namespace": view.metadata.namespace or "default",
        "labels": _run_labels(view, version),
        "annotations": {
            naming.ANNOTATION_WINDOW_START: _iso(window.start),
            naming.ANNOTATION_WINDOW_END: _iso(window.end),
            naming.ANNOTATION_GENERATION: str(view.metadata.generation or 0),
            naming.ANNOTATION_ATTEMPT: str(attempt),
            **({naming.ANNOTATION_RUN: run} if run else {}),
        },
        "ownerReferences": [owner_reference(owner)],
    }


SPARK_CONF: Mapping[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    # Spark 4.2's spark-submit also creates a NetworkPolicy for each driver, which the
    # Kubeflow Spark Operator's chart does not allow its controller to (v2.5.0): with
    # the step, every submission fails with 403.
    "spark.kubernetes.driver.pod.excludedFeatureSteps": (
        "org.apache.spark.deploy.k8s.features.NetworkPolicyFeatureStep"
    ),
}
"""The Spark settings of every SparkApplication, before the operator's ``spark_conf``."""


def render_spark_application(
    view: v1alpha1.FeatureView,
    version: int,
    window: Window,
    settings: OperatorSettings,
    owner: Mapping[str, Any],
    attempt: int = 1,
    run: str = "",
    access: Credentials | None = None,
    pending: PendingWindow | None = None,
) -> dict[str, Any]:
    """The SparkApplication that materializes one window of one version of a view:
    attempt ``attempt`` of its scheduled run, or of the backfill ``run``; its driver and
    executors take the namespace's credentials ``access``; ``pending``: the window's
    pending record, when the operator wrote it (the job takes it over)."""
    arguments = _job_arguments(view, version, window, settings, pending)
    labels = _run_labels(view, version)
    env = _job_env(view, settings, access)
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": _run_metadata(view, version, window, owner, attempt, run),
        "spec": {
            "type": "Python",
            "mode": "cluster",
            "pythonVersion": "3",
            "sparkVersion": settings.spark_version,
            "image": settings.spark_image,
            "mainApplicationFile": settings.spark_main_file,
            "arguments": arguments,
            "sparkConf": {**SPARK_CONF, **settings.spark_conf},
            # The operator retries failed windows itself, with backoff and in order.
            "restartPolicy": {"type": "Never"},
            "driver": {
                "cores": 1,
                "memory": "2g",
                "serviceAccount": settings.spark_service_account,
                "labels": labels,
                "env": [*env, {"name": report.REPORT_FILE_ENV, "value": report.TERMINATION_LOG}],
                "configMaps": [
                    {"name": naming.job_spec_name(view.metadata.name, version), "path": SPEC_MOUNT}
                ],
                "podSecurityContext": dict(RESTRICTED_POD),
                "securityContext": dict(RESTRICTED_CONTAINER),
            },
            "executor": {
                "cores": 1,
                "instances": 2,
                "memory": "2g",
                "labels": labels,
                "env": env,
                "podSecurityContext": dict(RESTRICTED_POD),
                "securityContext": dict(RESTRICTED_CONTAINER),
            },
        },
    }


JOB_PYTHON = "/opt/featurekube/venv/bin/python"
"""The Python with featurekube in the job image (images/spark/Dockerfile puts it there)."""
JOB_CONTAINER = "materialize"
SERVER_CONTAINER = "feature-server"


def render_materialize_job(
    view: v1alpha1.FeatureView,
    version: int,
    window: Window,
    settings: OperatorSettings,
    owner: Mapping[str, Any],
    attempt: int = 1,
    run: str = "",
    access: Credentials | None = None,
    pending: PendingWindow | None = None,
) -> dict[str, Any]:
    """The Job that materializes one window on the python engine: the same job, name,
    labels, annotations and credentials as :func:`render_spark_application`, in one pod
    and no JVM.

    It never retries (the operator retries failed windows itself, with backoff and in
    order), and its container's termination message is the job's report.
    """
    labels = _run_labels(view, version)
    env = _job_env(view, settings, access)
    container = {
        "name": JOB_CONTAINER,
        "image": settings.python_image or settings.spark_image,
        "command": [JOB_PYTHON, "-m", "featurekube.materialize"],
        "args": [*_job_arguments(view, version, window, settings, pending), "--engine", "python"],
        "env": [*env, {"name": report.REPORT_FILE_ENV, "value": report.TERMINATION_LOG}],
        "resources": {
            "requests": {"cpu": settings.python_cpu, "memory": settings.python_memory},
            "limits": {"memory": settings.python_memory},
        },
        "volumeMounts": [{"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True}],
        "terminationMessagePath": report.TERMINATION_LOG,
        # A job killed before it wrote its report still leaves its last lines.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": dict(RESTRICTED_CONTAINER),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _run_metadata(view, version, window, owner, attempt, run),
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": settings.spark_service_account,
                    # The job calls no Kubernetes API.
                    "automountServiceAccountToken": False,
                    "securityContext": dict(RESTRICTED_POD),
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "spec",
                            "configMap": {
                                "name": naming.job_spec_name(view.metadata.name, version)
                            },
                        }
                    ],
                },
            },
        },
    }


# One rendering of the serving plan, shared with `featurekube serve`.
ResolvedView = serving_plan.ResolvedView
render_serving_plan = serving_plan.render_serving_plan


def plan_hash(plan: Mapping[str, Any]) -> str:
    """A hash of the serving plan; on the pod template, it rolls pods when the plan changes."""
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]


def _meta(service: v1alpha1.FeatureService, owner: Mapping[str, Any], name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": service.metadata.namespace or "default",
        "labels": {naming.LABEL_FEATURE_SERVICE: service.metadata.name},
        "ownerReferences": [owner_reference(owner)],
    }


def plan_configmap_name(service: str) -> str:
    return f"{service}-plan"


def render_plan_configmap(
    service: v1alpha1.FeatureService, plan: Mapping[str, Any], owner: Mapping[str, Any]
) -> dict[str, Any]:
    """The ConfigMap the feature server reads its plan from."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(service, owner, plan_configmap_name(service.metadata.name)),
        "data": {PLAN_KEY: yaml.safe_dump(dict(plan), sort_keys=False)},
    }


def render_deployment(
    service: v1alpha1.FeatureService,
    plan: Mapping[str, Any],
    settings: OperatorSettings,
    owner: Mapping[str, Any],
    access: Credentials | None = None,
) -> dict[str, Any]:
    """The feature server's Deployment, with its namespace's credentials ``access``;
    its pods roll when the plan's hash changes."""
    server = service.spec.server
    name = service.metadata.name
    selector = {naming.LABEL_FEATURE_SERVICE: name}
    env = _aws_env(settings, access)
    resources = (
        server.resources.to_yaml_dict()
        if server.resources
        else {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        }
    )
    container = {
        "name": SERVER_CONTAINER,
        "image": settings.server_image,
        "args": ["--plan", f"{PLAN_MOUNT}/{PLAN_KEY}", "--port", str(server.port)],
        "ports": [
            {"name": "grpc", "containerPort": server.port},
            {"name": "metrics", "containerPort": 9090},
        ],
        "env": env,
        "resources": resources,
        "readinessProbe": {"grpc": {"port": server.port}, "periodSeconds": 5},
        "livenessProbe": {
            "grpc": {"port": server.port},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "volumeMounts": [{"name": "plan", "mountPath": PLAN_MOUNT, "readOnly": True}],
        "securityContext": {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True},
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {
                "labels": selector,
                "annotations": {naming.ANNOTATION_PLAN_HASH: plan_hash(plan)},
            },
            "spec": {
                "serviceAccountName": server.service_account_name
                or settings.server_service_account,
                "securityContext": dict(RESTRICTED_POD),
                "containers": [container],
                "volumes": [{"name": "plan", "configMap": {"name": plan_configmap_name(name)}}],
            },
        },
    }
    if server.autoscaling is None:
        # With an autoscaler, replicas belong to it: setting them here would fight it.
        spec["replicas"] = server.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(service, owner, name),
        "spec": spec,
    }


def render_service(service: v1alpha1.FeatureService, owner: Mapping[str, Any]) -> dict[str, Any]:
    """The Service in front of the feature server's pods."""
    port = service.spec.server.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(service, owner, service.metadata.name),
        "spec": {
            "selector": {naming.LABEL_FEATURE_SERVICE: service.metadata.name},
            "ports": [{"name": "grpc", "port": port, "targetPort": "grpc", "appProtocol": "grpc"}],
        },
    }


def render_hpa(service: v1alpha1.FeatureService, owner: Mapping[str, Any]) -> dict[str, Any] | None:
    """A HorizontalPodAutoscaler when the service asks for one."""
    scaling = service.spec.server.autoscaling
    if scaling is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(service, owner, service.metadata.name),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": service.metadata.name,
            },
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def render_pdb(service: v1alpha1.FeatureService, owner: Mapping[str, Any]) -> dict[str, Any] | None:
    """A PodDisruptionBudget when the service asks for one."""
    budget = service.spec.server.pod_disruption_budget
    if budget is None:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(service, owner, service.metadata.name),
        "spec": {
            "minAvailable": budget.min_available,
            "selector": {"matchLabels": {naming.LABEL_FEATURE_SERVICE: service.metadata.name}},
        },
    }
