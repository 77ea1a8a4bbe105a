"""The Helm chart ``charts/featurekube``, with helm built from its Go module
(``hack/helm/build.sh``) and the local platform's real API server.

- ``helm lint`` and ``helm template`` for the default values and non-default ones
  (peering, monitoring, IAM roles, keys from a Secret); the schema refuses wrong values.
- The chart's copies (CRDs, the operator's ClusterRole) equal their sources, and the
  operator's settings it sets are exactly the ones the operator reads.
- Every rendered object passes a server-side dry-run on the API server.
- ``helm install`` for real, then the operator, as separate processes run with the
  installed Deployment's command, arguments and environment and the installed
  ServiceAccount's token, works a FeatureView and a FeatureService through, and is
  refused what its role does not grant.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import importlib.util
import os
import socket
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
import yaml

from chart_support import Helm
from featurekube._platform import platform as local
from featurekube._platform.platform import Endpoints
from support import eventually as _eventually

REPO = Path(__file__).parents[2]
CHART = REPO / "charts" / "featurekube"
MANIFESTS = REPO / "operator" / "manifests"
ROLE_ARN = "arn:aws:iam::123456789012:role/{}"
IRSA = "eks.amazonaws.com/role-arn"

# Non-default value sets; "{ns}" stands for a namespace that exists when it matters.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "peering": {
        "operator": {"replicas": 2, "peering": {"enabled": True}, "watchNamespaces": ["{ns}"]},
    },
    "peering-clusterwide": {"operator": {"replicas": 2, "peering": {"enabled": True}}},
    "admission": {"admission": {"enabled": True}, "operator": {"watchNamespaces": ["{ns}"]}},
    "monitoring": {
        "monitoring": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
        }
    },
    "irsa": {
        "aws": {"credentials": {"source": "irsa"}},
        "serviceAccounts": {
            "operator": {"iamRoleArn": ROLE_ARN.format("featurekube-operator")},
            "featureServer": {"iamRoleArn": ROLE_ARN.format("featurekube-server")},
            "spark": {"iamRoleArn": ROLE_ARN.format("featurekube-spark")},
        },
    },
    "secret": {
        "aws": {
            "endpointUrl": "http://localstack.localstack.svc:4566",
            "credentials": {"source": "secret", "accessKeyId": "AKIA0", "secretAccessKey": "s"},
        },
        "spark": {"conf": {"spark.executor.memoryOverhead": "1g", "spark.ui.enabled": "false"}},
        "operator": {"logFormat": "plain", "verbose": True},
    },
    "catalog": {
        "catalog": {
            "enabled": True,
            "namespaces": ["{ns}"],
            "prometheusUrl": "http://prometheus-operated.monitoring.svc:9090",
            "ingress": {"enabled": True, "className": "nginx", "host": "features.example.com"},
        }
    },
}


def _fill(value: Any, namespace: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, namespace) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, namespace) for v in value]
    return value.replace("{ns}", namespace) if isinstance(value, str) else value


# -- helm ------------------------------------------------------------------------------


def _kinds(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def _operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = _kinds(docs)["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# -- lint, render, schema ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint(helm: Helm, name: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(_fill(VALUE_SETS[name], "rides")))
    done = helm.run("lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in done.stdout, done.stdout


def test_default_render(helm: Helm, tmp_path: Path) -> None:
    docs = helm.template({}, tmp_path)
    kinds = _kinds(docs)
    assert sorted(kinds) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "fk", doc["metadata"]["name"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    (deployment,) = kinds["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate", "a lone operator must never overlap itself"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == "fk-featurekube-operator"
    container = _operator_container(docs)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    assert "--standalone" in container["args"]
    # The probes call the liveness endpoint the operator is told to serve.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert f"--liveness=http://0.0.0.0:{ports['liveness']}/healthz" in container["args"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    # The operator's namespace is no tenant's: no workload accounts there, and refused.
    accounts = {
        (a["metadata"]["namespace"], a["metadata"]["name"]): a for a in kinds["ServiceAccount"]
    }
    assert set(accounts) == {("featurekube", "fk-featurekube-operator")}
    env = _env(container)
    assert env["FEATUREKUBE_EXCLUDED_NAMESPACES"] == (
        "kube-system,kube-public,kube-node-lease,featurekube"
    )
    assert env["FEATUREKUBE_SPARK_SERVICE_ACCOUNT"] == "featurekube-spark"
    assert env["FEATUREKUBE_SERVER_SERVICE_ACCOUNT"] == "featurekube-feature-server"
    assert env["FEATUREKUBE_SPARK_IMAGE"] == "ghcr.io/featurekube/spark:0.1.0"
    assert not any(key.startswith("AWS_ACCESS") for key in env)

    # Tenants named: the ServiceAccounts the operator names in the pods it creates there.
    docs = helm.template({"workloadNamespaces": ["rides"]}, tmp_path)
    accounts = {
        (a["metadata"]["namespace"], a["metadata"]["name"]): a
        for a in _kinds(docs)["ServiceAccount"]
    }
    assert set(accounts) == {
        ("featurekube", "fk-featurekube-operator"),
        ("rides", "featurekube-feature-server"),
        ("rides", "featurekube-spark"),
    }
    assert (
        accounts[("rides", "featurekube-feature-server")]["automountServiceAccountToken"] is False
    ), "feature servers call no Kubernetes API"
    (binding,) = _kinds(docs)["RoleBinding"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "featurekube-spark", "namespace": "rides"}
    ]


def test_peering_render(helm: Helm, tmp_path: Path) -> None:
    values = _fill(VALUE_SETS["peering"], "rides")
    values["workloadNamespaces"] = ["rides", "fraud"]
    docs = helm.template(values, tmp_path)
    kinds = _kinds(docs)
    (deployment,) = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    args = _operator_container(docs)["args"]
    assert "--peering=fk-featurekube" in args and "--standalone" not in args
    assert "--namespace=rides" in args
    assert _env(_operator_container(docs))["POD_ID"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }, "each replica names itself among its peers"
    (peering,) = kinds["KopfPeering"]
    assert (peering["metadata"]["namespace"], peering["metadata"]["name"]) == (
        "rides",
        "fk-featurekube",
    )
    assert kinds["PodDisruptionBudget"][0]["spec"]["minAvailable"] == 1
    accounts = {
        (a["metadata"]["namespace"], a["metadata"]["name"]) for a in kinds["ServiceAccount"]
    }
    for namespace in ("rides", "fraud"):
        assert (namespace, "featurekube-spark") in accounts
        assert (namespace, "featurekube-feature-server") in accounts
    assert {r["metadata"]["namespace"] for r in kinds["Role"]} == {"rides", "fraud"}

    clusterwide = _kinds(helm.template(VALUE_SETS["peering-clusterwide"], tmp_path))
    assert [p["metadata"]["name"] for p in clusterwide["ClusterKopfPeering"]] == ["fk-featurekube"]
    assert "KopfPeering" not in clusterwide


def test_monitoring_render(helm: Helm, tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from featurekube_operator import metrics

    kinds = _kinds(helm.template(VALUE_SETS["monitoring"], tmp_path))
    (monitor,) = kinds["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["honorLabels"] is True
    (service,) = kinds["Service"]
    assert (
        service["metadata"]["labels"].items() >= monitor["spec"]["selector"]["matchLabels"].items()
    )
    (pods,) = kinds["PodMonitor"]
    assert pods["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    (rule,) = kinds["PrometheusRule"]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "FeaturekubeFeatureViewStale",
        "FeaturekubeMaterializationFailed",
        "FeaturekubeFeatureDrifted",
        "FeaturekubeExpectationViolated",
        "FeaturekubeServingErrors",
        "FeaturekubeServingSlow",
    }
    # The alerts read metrics by the names and labels the operator exports.
    exported = metrics.Metrics()
    exported.windows_failed.labels("rides", "driver-profile").inc()
    exported.freshness.set("rides", "driver-profile", dt.datetime.now(dt.UTC))
    text = generate_latest(exported.registry).decode()
    for name in ("featurekube_feature_view_freshness_seconds", "featurekube_windows_failed_total"):
        assert f'{name}{{feature_view="driver-profile",namespace="rides"}}' in text, text
    assert (
        "featurekube_feature_view_freshness_seconds"
        in alerts["FeaturekubeFeatureViewStale"]["expr"]
    )
    assert "featurekube_windows_failed_total" in alerts["FeaturekubeMaterializationFailed"]["expr"]


def test_catalog_render(helm: Helm, tmp_path: Path) -> None:
    from featurekube.cli import main

    assert not [
        d for d in helm.template({}, tmp_path) if d["metadata"]["name"].endswith("-catalog")
    ]
    docs = helm.template(_fill(VALUE_SETS["catalog"], "rides"), tmp_path)
    catalog = _kinds([d for d in docs if d["metadata"]["name"] == "fk-featurekube-catalog"])
    (deployment,) = catalog["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # What the chart runs is a command line `featurekube ui` takes.
    assert container["command"] == ["python", "-m", "featurekube.cli.main"]
    args = main.build_parser().parse_args(container["args"])
    assert (args.command, args.host, args.port, args.namespace) == (
        "ui",
        "0.0.0.0",
        8080,
        ["rides"],
    )
    assert args.prometheus == "http://prometheus-operated.monitoring.svc:9090"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # Read-only: get, list and watch on exactly what the catalog reads.
    (role,) = catalog["ClusterRole"]
    assert {v for rule in role["rules"] for v in rule["verbs"]} == {"get", "list", "watch"}
    assert {r for rule in role["rules"] for r in rule["resources"]} == {
        "featureviews",
        "featureservices",
        "deployments",
        "pods",
    }
    (binding,) = catalog["ClusterRoleBinding"]
    (account,) = catalog["ServiceAccount"]
    assert (
        binding["subjects"][0]["name"] == account["metadata"]["name"] == pod["serviceAccountName"]
    )
    (service,) = catalog["Service"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"] == "http"
    (ingress,) = catalog["Ingress"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "features.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}


def test_irsa_render(helm: Helm, tmp_path: Path) -> None:
    values = copy.deepcopy(VALUE_SETS["irsa"])
    values["workloadNamespaces"] = ["rides"]
    kinds = _kinds(helm.template(values, tmp_path))
    roles = {
        a["metadata"]["name"]: (a["metadata"].get("annotations") or {}).get(IRSA)
        for a in kinds["ServiceAccount"]
    }
    assert roles == {
        "fk-featurekube-operator": ROLE_ARN.format("featurekube-operator"),
        "featurekube-feature-server": ROLE_ARN.format("featurekube-server"),
        "featurekube-spark": ROLE_ARN.format("featurekube-spark"),
    }
    assert "Secret" not in kinds


def test_secret_render(helm: Helm, tmp_path: Path) -> None:
    docs = helm.template(VALUE_SETS["secret"], tmp_path)
    (secret,) = _kinds(docs)["Secret"]
    assert secret["stringData"]["AWS_ACCESS_KEY_ID"] == "AKIA0"
    env = _env(_operator_container(docs))
    assert env["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "fk-featurekube-aws", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert env["AWS_SESSION_TOKEN"]["secretKeyRef"]["optional"] is True
    assert env["AWS_ENDPOINT_URL"] == "http://localstack.localstack.svc:4566"
    (deployment,) = _kinds(docs)["Deployment"]
    assert "checksum/aws-secret" in deployment["spec"]["template"]["metadata"]["annotations"]

    existing = {"aws": {"credentials": {"source": "secret", "existingSecret": "aws-keys"}}}
    docs = helm.template(existing, tmp_path)
    assert "Secret" not in _kinds(docs)
    assert _env(_operator_container(docs))["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"]["name"] == (
        "aws-keys"
    )


def test_feature_server_security_render(helm: Helm, tmp_path: Path) -> None:
    """By default feature servers take TLS and tokens: the operator is told so, and the
    servers' ServiceAccount in each workload namespace may review tokens."""
    docs = helm.template({"workloadNamespaces": ["rides", "fraud"]}, tmp_path)
    env = _env(_operator_container(docs))
    assert env["FEATUREKUBE_SERVER_TLS_SECRET"] == "featurekube-serving-tls"
    assert env["FEATUREKUBE_SERVER_AUTH"] == "tokenreview"
    assert env["FEATUREKUBE_SERVER_METRICS_NAMESPACES"] == ""
    kinds = _kinds(docs)
    (binding,) = [
        b for b in kinds["ClusterRoleBinding"] if b["roleRef"]["name"] == "system:auth-delegator"
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "featurekube-feature-server", "namespace": ns}
        for ns in ("rides", "fraud")
    ]
    assert "Certificate" not in kinds

    values = {
        "workloadNamespaces": ["rides"],
        "featureServer": {
            "tls": {"certManagerIssuer": {"name": "serving-ca"}},
            "metricsNamespaces": ["monitoring", "ops"],
        },
    }
    docs = helm.template(values, tmp_path)
    (certificate,) = _kinds(docs)["Certificate"]
    assert certificate["metadata"]["namespace"] == "rides"
    assert certificate["spec"]["secretName"] == "featurekube-serving-tls"
    assert certificate["spec"]["dnsNames"] == ["*.rides.svc", "*.rides.svc.cluster.local"]
    assert certificate["spec"]["issuerRef"]["name"] == "serving-ca"
    assert _env(_operator_container(docs))["FEATUREKUBE_SERVER_METRICS_NAMESPACES"] == (
        "monitoring,ops"
    )

    values = {"workloadNamespaces": ["rides"], "featureServer": {"auth": "none"}}
    kinds = _kinds(helm.template(values, tmp_path))
    assert not [
        b
        for b in kinds.get("ClusterRoleBinding", ())
        if b["roleRef"]["name"] == "system:auth-delegator"
    ]


def test_operator_settings_match_what_the_operator_reads(helm: Helm, tmp_path: Path) -> None:
    """Every FEATUREKUBE_* variable the chart sets is a setting of the operator, every
    setting is set, and the operator parses what the chart renders."""
    from featurekube_operator.settings import OperatorSettings, env_name

    container = _operator_container(helm.template(VALUE_SETS["secret"], tmp_path))
    env = {k: v for k, v in _env(container).items() if isinstance(v, str)}
    settings = {env_name(f.name) for f in dataclasses.fields(OperatorSettings)}
    # AWS_ENDPOINT_URL is set only when aws.endpointUrl is (checked elsewhere).
    set_by_chart = {k for k in env if k.startswith("FEATUREKUBE_")} | {
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
    }
    assert set_by_chart - settings == set(), "the chart sets variables the operator ignores"
    assert settings - set_by_chart == set(), "operator settings the chart's values cannot set"
    parsed = OperatorSettings.from_env(env)
    assert dict(parsed.spark_conf) == VALUE_SETS["secret"]["spark"]["conf"]
    assert parsed.backfill_window_seconds == 86400
    assert parsed.spark_image == "ghcr.io/featurekube/spark:0.1.0"
    big = helm.template({"materialization": {"backfillWindowSeconds": 34560000}}, tmp_path)
    assert _env(_operator_container(big))["FEATUREKUBE_BACKFILL_WINDOW_SECONDS"] == "34560000"


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "two replicas without peering": ({"operator": {"replicas": 2}}, "/operator/peering/enabled"),
    "secret source without a secret": (
        {"aws": {"credentials": {"source": "secret"}}},
        "/aws/credentials",
    ),
    "irsa without the operator's role": (
        {"aws": {"credentials": {"source": "irsa"}}},
        "/serviceAccounts/operator/iamRoleArn",
    ),
    "not a role ARN": (
        {"serviceAccounts": {"spark": {"iamRoleArn": "featurekube-spark"}}},
        "/serviceAccounts/spark/iamRoleArn",
    ),
    "unknown key": ({"opertor": {"replicas": 1}}, "opertor"),
    "unknown nested key": ({"operator": {"replica": 1}}, "replica"),
    "log format": ({"operator": {"logFormat": "xml"}}, "/operator/logFormat"),
    "offline store not on S3": ({"store": {"offlineUri": "gs://b/x"}}, "/store/offlineUri"),
    "comma in a Spark setting": (
        {"spark": {"conf": {"spark.jars": "a.jar,b.jar"}}},
        "/spark/conf/spark.jars",
    ),
    "no windows in flight": (
        {"materialization": {"maxWindowsInFlight": 0}},
        "/materialization/maxWindowsInFlight",
    ),
    "namespace name": ({"workloadNamespaces": ["Rides"]}, "/workloadNamespaces/0"),
    "watching kube-system": (
        {"operator": {"watchNamespaces": ["rides", "kube-system"]}},
        "/operator/watchNamespaces/1",
    ),
    "kube-public as a tenant": ({"workloadNamespaces": ["kube-public"]}, "/workloadNamespaces/0"),
    "replicas as text": ({"operator": {"replicas": "2"}}, "/operator/replicas"),
    "feature server auth": ({"featureServer": {"auth": "open"}}, "/featureServer/auth"),
    "catalog refresh": ({"catalog": {"refreshSeconds": 0}}, "/catalog/refreshSeconds"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_schema_refuses(helm: Helm, case: str, tmp_path: Path) -> None:
    values, where = REFUSED[case]
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    done = helm.run("template", "fk", str(CHART), "-f", str(path), check=False)
    assert done.returncode != 0, f"accepted: {values}"
    assert "don't meet the specifications of the schema" in done.stderr, done.stderr
    assert where in done.stderr, done.stderr


# -- one source ----------------------------------------------------------------------


def _sync_chart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_chart", REPO / "hack" / "sync_chart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_copies_are_current() -> None:
    """crds/ and the operator's manifests are copied, byte for byte, by hack/sync_chart.py."""
    sync_chart = _sync_chart()
    assert sync_chart.stale() == [], "run: python hack/sync_chart.py"
    copied = {path.name for path in (CHART / "crds").iterdir()}
    assert {p.name for p in (REPO / "crds").glob("*.yaml")} <= copied


def test_cluster_role_is_the_operators(helm: Helm, tmp_path: Path) -> None:
    (role,) = _kinds(helm.template({}, tmp_path))["ClusterRole"]
    source = yaml.safe_load((MANIFESTS / "rbac.yaml").read_text())
    assert role["rules"] == source["rules"]


def test_admission_render(helm: Helm, tmp_path: Path) -> None:
    from cryptography import x509

    docs = helm.template(_fill(VALUE_SETS["admission"], "rides"), tmp_path)
    kinds = _kinds(docs)
    (configuration,) = kinds["ValidatingWebhookConfiguration"]
    (secret,) = [s for s in kinds["Secret"] if s["type"] == "kubernetes.io/tls"]
    services = {s["metadata"]["name"]: s for s in kinds["Service"]}
    service = services["fk-featurekube-operator-admission"]
    assert service["spec"]["ports"] == [
        {"name": "admission", "port": 443, "targetPort": "admission"}
    ]
    # The API server trusts the CA that signed the certificate the operator serves,
    # issued for the Service's name.
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    served = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    served.verify_directly_issued_by(ca)
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "fk-featurekube-operator-admission.featurekube.svc" in names.get_values_for_type(
        x509.DNSName
    )
    by_path = {}
    for webhook in configuration["webhooks"]:
        client = webhook["clientConfig"]
        assert client["caBundle"] == secret["data"]["ca.crt"]
        assert client["service"]["name"] == "fk-featurekube-operator-admission"
        by_path[client["service"]["path"]] = webhook["rules"][0]["resources"]
        assert webhook["namespaceSelector"]["matchExpressions"][0]["values"] == ["rides"]
        assert webhook["failurePolicy"] == "Fail"
    # The paths are the operator's webhook handlers.
    from featurekube_operator import admission

    assert by_path == {f"/{path}": [resource] for resource, path in admission.WEBHOOKS.items()}
    container = _operator_container(docs)
    env = _env(container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env["FEATUREKUBE_ADMISSION_PORT"] == str(ports["admission"]) == "9443"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "admission"]
    assert mount["mountPath"] == env["FEATUREKUBE_ADMISSION_CERT_DIR"]
    # Off by default: no webhook, and the operator serves none.
    off = helm.template({}, tmp_path)
    assert "ValidatingWebhookConfiguration" not in _kinds(off)
    assert _env(_operator_container(off))["FEATUREKUBE_ADMISSION_PORT"] == "0"


CLUSTER_SCOPED = {"clusterkopfpeerings", "namespaces", "customresourcedefinitions"}


def test_watched_namespaces_confine_the_operators_permissions_to_them(
    helm: Helm, tmp_path: Path
) -> None:
    source = yaml.safe_load((MANIFESTS / "rbac.yaml").read_text())["rules"]
    for rule in source:
        # The chart sorts rules by their first resource: none may mix scopes.
        assert len({r in CLUSTER_SCOPED for r in rule["resources"]}) == 1, rule
    namespaced = [r for r in source if r["resources"][0] not in CLUSTER_SCOPED]
    docs = helm.template({"operator": {"watchNamespaces": ["rides", "fraud"]}}, tmp_path)
    kinds = _kinds(docs)

    (cluster_role,) = kinds["ClusterRole"]
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "namespaces",
        "customresourcedefinitions",
    }
    assert {v for rule in cluster_role["rules"] for v in rule["verbs"]} == {"list", "watch"}
    roles = {
        r["metadata"]["namespace"]: r for r in kinds["Role"] if "operator" in r["metadata"]["name"]
    }
    assert set(roles) == {"rides", "fraud"}
    assert all(role["rules"] == namespaced for role in roles.values())
    bindings = {
        b["metadata"]["namespace"]: b
        for b in kinds["RoleBinding"]
        if b["roleRef"]["name"] == "fk-featurekube-operator"
    }
    assert set(bindings) == {"rides", "fraud"}
    assert bindings["rides"]["roleRef"]["kind"] == "Role"
    assert bindings["rides"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "fk-featurekube-operator", "namespace": "featurekube"}
    ]
    container = _operator_container(docs)
    assert {"--namespace=rides", "--namespace=fraud"} <= set(container["args"])
    # Named namespaces are the tenants, the release's too if it is among them.
    assert _env(container)["FEATUREKUBE_EXCLUDED_NAMESPACES"] == (
        "kube-system,kube-public,kube-node-lease"
    )


def test_images_agree_with_the_chart_and_the_operator() -> None:
    """The Spark image's Spark is the pinned pyspark and the chart's spark.version, and
    the images' defaults are the operator's. (Where the images put the job and the
    python engine's interpreter: tests/unit/test_image_definitions.py.)"""
    from featurekube_operator.settings import OperatorSettings

    defaults = OperatorSettings()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pins = dict(
        line.split("==", 1)
        for line in tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]["spark"]
    )
    images = yaml.safe_load((REPO / "images" / "images.yaml").read_text())
    # The Spark image's Spark is pyspark's, installed from the spark extra.
    assert images["images"]["spark"]["extra"] == "spark"
    assert pins["pyspark"] == values["spark"]["version"] == defaults.spark_version
    assert defaults.spark_main_file == values["spark"]["mainApplicationFile"]
    assert values["pythonEngine"]["maxRows"] == defaults.python_max_rows
    assert str(images["version"]) == chart["appVersion"]
    for image, default in (
        (values["spark"]["image"], defaults.spark_image),
        (values["featureServer"]["image"], defaults.server_image),
    ):
        assert f"{image['repository']}:{image['tag'] or chart['appVersion']}" == default


def test_kind_config_maps_a_feature_server_port_to_the_host() -> None:
    config = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    mappings = [m for node in config["nodes"] for m in node.get("extraPortMappings", [])]
    assert {"containerPort": 30051, "hostPort": 50051} in [
        {k: m[k] for k in ("containerPort", "hostPort")} for m in mappings
    ]
    # NodePorts are 30000-32767 by default.
    assert all(30000 <= m["containerPort"] <= 32767 for m in mappings)


# -- on the API server -------------------------------------------------------------------


def _monitoring_crd(kind: str, plural: str) -> dict[str, Any]:
    """A stand-in for a Prometheus Operator CRD: its group, names and scope, any spec."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def kubectl(platform: Endpoints) -> Path:
    return local.resolve_k8s_bin_dir(local.PlatformSettings()) / "kubectl"


def _kubectl(kubectl: Path, kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(kubectl), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def cluster_prerequisites(platform: Endpoints, kubectl: Path) -> None:
    """What the chart's objects need to exist: kopf's peering CRDs (the chart's crds/
    bring them on install) and the Prometheus Operator's CRDs (never part of the
    chart), here as stand-ins with their real group, names and scope."""
    crds = [
        *yaml.safe_load_all((CHART / "crds" / "kopf.dev_peerings.yaml").read_text()),
        _monitoring_crd("ServiceMonitor", "servicemonitors"),
        _monitoring_crd("PodMonitor", "podmonitors"),
        _monitoring_crd("PrometheusRule", "prometheusrules"),
    ]
    text = yaml.safe_dump_all(crds)
    base = (kubectl, platform.kubeconfig)
    _kubectl(*base, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=text)
    _kubectl(*base, "wait", "--for=condition=Established", "--timeout=60s", "-f", "-", stdin=text)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_objects_pass_server_side_dry_run(
    helm: Helm,
    kubectl: Path,
    cluster_prerequisites: None,
    platform: Endpoints,
    namespace: str,
    name: str,
    tmp_path: Path,
) -> None:
    values = _fill(VALUE_SETS[name], namespace)
    release = f"fk-{name}"[:30]
    docs = helm.template(values, tmp_path, namespace, release, "--include-crds")
    text = yaml.safe_dump_all(docs)
    out = _kubectl(
        kubectl,
        platform.kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=helm",
        "--dry-run=server",
        "-f",
        "-",
        stdin=text,
    )
    applied = [line for line in out.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(docs), out
    kinds = {doc["kind"] for doc in docs}
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole", "ServiceAccount"} <= kinds


# -- the operator under the chart's RBAC ---------------------------------------------------

VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-profile"},
    "spec": {
        "owner": "eta-team",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/drivers/"}},
        "features": [{"name": "rating", "type": "float64"}],
        "materialization": {"schedule": "@daily", "startTime": "2026-01-01T00:00:00Z"},
        "deletionPolicy": "Delete",
    },
}
SERVICE: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureService",
    "metadata": {"name": "eta-model"},
    "spec": {"owner": "eta-team", "features": [{"featureView": "driver-profile"}]},
}


def _token_kubeconfig(
    platform: Endpoints, core: kubernetes.client.CoreV1Api, namespace: str, account: str, out: Path
) -> Path:
    token = core.create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    cluster = yaml.safe_load(platform.kubeconfig.read_text())["clusters"][0]
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"])
    out.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {"name": account, "context": {"cluster": cluster["name"], "user": account}}
                ],
                "current-context": account,
            }
        )
    )
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _operator_process(
    container: Any, kubeconfig: Path, pod: str, liveness_port: int, log: Path
) -> subprocess.Popen[bytes]:
    """The installed Deployment's container as a local process: its command, arguments
    and environment, with the liveness endpoint on loopback and metrics off (two
    replicas share this machine's ports)."""
    assert container.command == ["featurekube-operator"]
    args = [
        f"--liveness=http://127.0.0.1:{liveness_port}/healthz"
        if arg.startswith("--liveness=")
        else arg
        for arg in container.args
    ]
    env = dict(os.environ)
    for var in container.env:
        if var.value_from is None:
            env[var.name] = var.value or ""  # the API server drops empty values
        elif var.value_from.field_ref is not None:
            assert var.value_from.field_ref.field_path == "metadata.name"
            env[var.name] = pod
        else:
            pytest.fail(f"the test cannot resolve {var.name}")
    env.update({"KUBECONFIG": str(kubeconfig), "FEATUREKUBE_METRICS_PORT": "0"})
    argv = [sys.executable, "-m", "featurekube_operator", *args]
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def _status(exc_info: pytest.ExceptionInfo[kubernetes.client.exceptions.ApiException]) -> int:
    return int(exc_info.value.status)


def test_operator_runs_under_the_installed_chart(
    helm: Helm,
    platform: Endpoints,
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    table_prefix: str,
    s3_prefix: str,
    tmp_path: Path,
) -> None:
    release = f"fk-{namespace[-6:]}"
    name = f"{release}-featurekube"
    values = {
        "operator": {"replicas": 2, "peering": {"enabled": True}, "watchNamespaces": [namespace]},
        "store": {"offlineUri": s3_prefix + "offline", "tablePrefix": table_prefix},
        "aws": {"region": platform.region},
        # The whole backfill as one window, re-examined every second: one job, soon.
        "materialization": {"reconcileIntervalSeconds": 1, "backfillWindowSeconds": 34560000},
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    installed = helm.run(
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "-f",
        str(values_file),
        kubeconfig=platform.kubeconfig,
    )
    assert "kubectl get features -A" in installed.stdout, installed.stdout  # NOTES.txt
    core = kubernetes.client.CoreV1Api(kube_api)
    apps = kubernetes.client.AppsV1Api(kube_api)
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    operators: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / "operator-0.log", tmp_path / "operator-1.log"]
    pods = [f"{name}-operator-{i}" for i in range(2)]
    try:
        deployment = apps.read_namespaced_deployment(f"{name}-operator", namespace)
        assert deployment.spec.replicas == len(pods)
        (container,) = deployment.spec.template.spec.containers
        account = deployment.spec.template.spec.service_account_name
        kubeconfig = _token_kubeconfig(
            platform, core, namespace, account, tmp_path / "kubeconfig-operator"
        )
        ports = [_free_port(), _free_port()]
        operators.append(_operator_process(container, kubeconfig, pods[0], ports[0], logs[0]))
        _eventually(
            lambda: "Resuming operations" in logs[0].read_text(), 90, "the first replica acts"
        )
        operators.append(_operator_process(container, kubeconfig, pods[1], ports[1], logs[1]))

        def peers() -> dict[str, Any]:
            peering = custom.get_namespaced_custom_object(
                "kopf.dev", "v1", namespace, "kopfpeerings", name
            )
            found = peering.get("status") or {}
            return found if set(pods) <= set(found) else {}

        # Both replicas record themselves (under their pod names) in the chart's
        # KopfPeering; the one with the higher priority acts, the other pauses.
        priorities = {
            pod: peer["priority"] for pod, peer in _eventually(peers, 60, "peering").items()
        }
        actor = max(pods, key=lambda pod: priorities[pod])
        if actor == pods[1]:
            _eventually(
                lambda: "Pausing operations in favour of" in logs[0].read_text(),
                60,
                "the first replica pauses for the higher one",
            )
        # What the probes call.
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as rsp:
                assert rsp.status == 200

        # The namespace's own AWS keys, which its jobs and feature servers take (the
        # chart's default aws.credentials.workloads: namespace).
        keys: Any = {
            "metadata": {"name": "featurekube-aws"},
            "stringData": {
                "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
            },
        }
        core.create_namespaced_secret(namespace, keys)
        custom.create_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureviews", copy.deepcopy(VIEW)
        )
        custom.create_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureservices", copy.deepcopy(SERVICE)
        )
        (app, *_) = _eventually(
            lambda: custom.list_namespaced_custom_object(
                "sparkoperator.k8s.io", "v1beta2", namespace, "sparkapplications"
            )["items"],
            60,
            "a SparkApplication for the backfill",
        )
        # As the chart configured: its Spark image, and the ServiceAccount it created.
        assert app["spec"]["image"] == "ghcr.io/featurekube/spark:0.1.0"
        assert app["spec"]["driver"]["serviceAccount"] == "featurekube-spark"
        driver_env = {e["name"]: e for e in app["spec"]["driver"]["env"]}
        assert driver_env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == (
            "featurekube-aws"
        )
        core.read_namespaced_service_account("featurekube-spark", namespace)
        server = _eventually(
            lambda: [
                d
                for d in apps.list_namespaced_deployment(namespace).items
                if d.metadata.name == "eta-model"
            ],
            60,
            "the feature server's Deployment",
        )[0]
        assert server.spec.template.spec.service_account_name == "featurekube-feature-server"
        core.read_namespaced_service_account("featurekube-feature-server", namespace)

        custom.delete_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureviews", "driver-profile"
        )

        def view_gone() -> bool:
            try:
                custom.get_namespaced_custom_object(
                    "featurekube.dev", "v1alpha1", namespace, "featureviews", "driver-profile"
                )
            except kubernetes.client.exceptions.ApiException as exc:
                return exc.status == 404
            return False

        _eventually(view_gone, 60, "the finalizer runs under the chart's ServiceAccount")
        for process in operators:
            assert process.poll() is None, "both replicas keep running"
        for log in logs:
            text = log.read_text()
            assert "Forbidden" not in text and " 403" not in text, text[-3000:]
        acting, paused = (logs[0], logs[1]) if actor == pods[0] else (logs[1], logs[0])
        assert "Creation is processed" in acting.read_text()
        if actor == pods[1]:
            after_pause = paused.read_text().split("Pausing operations in favour of", 1)[1]
        else:
            after_pause = paused.read_text()
        assert "Creation is processed" not in after_pause, "the paused replica acted"

        # Outside the role: refused.
        with kubernetes.config.new_client_from_config(config_file=str(kubeconfig)) as as_operator:
            operator_core = kubernetes.client.CoreV1Api(as_operator)
            with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
                operator_core.list_namespaced_secret(namespace)
            assert _status(refused) == 403
            with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
                operator_core.create_namespaced_pod(
                    namespace,
                    {
                        "metadata": {"name": "x"},
                        "spec": {"containers": [{"name": "x", "image": "x"}]},
                    },
                )
            assert _status(refused) == 403
            with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
                kubernetes.client.CustomObjectsApi(as_operator).delete_namespaced_custom_object(
                    "featurekube.dev", "v1alpha1", namespace, "featureservices", "eta-model"
                )
            assert _status(refused) == 403, "the operator never deletes users' objects"
            # Its Role is in the namespace it watches: nothing made anywhere else.
            for elsewhere in ("kube-system", "default"):
                with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
                    kubernetes.client.AppsV1Api(as_operator).create_namespaced_deployment(
                        elsewhere,
                        {
                            "metadata": {"name": "x"},
                            "spec": {
                                "selector": {"matchLabels": {"app": "x"}},
                                "template": {
                                    "metadata": {"labels": {"app": "x"}},
                                    "spec": {"containers": [{"name": "x", "image": "x"}]},
                                },
                            },
                        },
                    )
                assert _status(refused) == 403, elsewhere
            with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
                kubernetes.client.RbacAuthorizationV1Api(as_operator).create_cluster_role_binding(
                    {
                        "metadata": {"name": f"{namespace}-escalate"},
                        "roleRef": {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "ClusterRole",
                            "name": "cluster-admin",
                        },
                        "subjects": [
                            {"kind": "ServiceAccount", "name": account, "namespace": namespace}
                        ],
                    }
                )
            assert _status(refused) == 403

        # The Spark drivers' role: executor pods in their own namespace, nothing else.
        spark_config = _token_kubeconfig(
            platform, core, namespace, "featurekube-spark", tmp_path / "kubeconfig-spark"
        )
        with kubernetes.config.new_client_from_config(config_file=str(spark_config)) as as_spark:
            review = kubernetes.client.AuthorizationV1Api(as_spark)

            def allowed(verb: str, resource: str, where: str) -> bool:
                body = {
                    "spec": {
                        "resourceAttributes": {
                            "verb": verb,
                            "resource": resource,
                            "namespace": where,
                        }
                    }
                }
                return bool(review.create_self_subject_access_review(body).status.allowed)

            assert allowed("create", "pods", namespace)
            assert allowed("deletecollection", "configmaps", namespace)
            assert not allowed("create", "pods", "default")
            assert not allowed("get", "secrets", namespace)
        # Feature servers get no token at all; their account has no rights either.
        server_config = _token_kubeconfig(
            platform, core, namespace, "featurekube-feature-server", tmp_path / "kubeconfig-server"
        )
        with kubernetes.config.new_client_from_config(config_file=str(server_config)) as as_server:
            with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
                kubernetes.client.CoreV1Api(as_server).list_namespaced_config_map(namespace)
            assert _status(refused) == 403
    finally:
        for process in operators:
            process.terminate()
        for process in operators:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        helm.run("uninstall", release, "-n", namespace, "--wait", kubeconfig=platform.kubeconfig)
    names = {
        r.metadata.name
        for r in kubernetes.client.RbacAuthorizationV1Api(kube_api).list_cluster_role().items
    }
    assert f"{name}-operator" not in names, "helm uninstall leaves no ClusterRole behind"
