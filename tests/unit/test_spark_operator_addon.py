"""The Spark Operator add-on's manifests: the chart's parts, our certificate; pure."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from featurekube._platform import spark_operator

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CA_PEM, SERVING = spark_operator.webhook_certificate(NOW)
OBJECTS = spark_operator.manifests(CA_PEM, SERVING)


def _one(kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_the_webhook_certificate_names_its_service_and_its_key_is_pkcs1_rsa() -> None:
    cert = x509.load_pem_x509_certificate(SERVING.cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "spark-operator-webhook-svc.spark-operator.svc" in names.get_values_for_type(
        x509.DNSName
    )
    assert SERVING.key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert isinstance(load_pem_private_key(SERVING.key_pem, None), rsa.RSAPrivateKey)


def test_the_webhook_reads_our_certificate_as_cert_managers_and_is_trusted_by_its_ca() -> None:
    secret = _one("Secret", spark_operator.WEBHOOK_SECRET)
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    args = _one("Deployment", spark_operator.WEBHOOK)["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    assert args[:2] == ["webhook", "start"]
    assert "--enable-cert-manager=true" in args
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for hook in _one(kind, spark_operator.WEBHOOK)["webhooks"]:
            assert base64.b64decode(hook["clientConfig"]["caBundle"]) == CA_PEM
            assert hook["clientConfig"]["service"]["name"] == "spark-operator-webhook-svc"
    paths = [
        h["clientConfig"]["service"]["path"]
        for h in _one("MutatingWebhookConfiguration", spark_operator.WEBHOOK)["webhooks"]
    ]
    assert paths == [
        "/mutate--v1-pod",
        "/mutate-sparkoperator-k8s-io-v1beta2-sparkapplication",
        "/mutate-sparkoperator-k8s-io-v1beta2-scheduledsparkapplication",
        "/mutate-sparkoperator-k8s-io-v1alpha1-sparkconnect",
    ]


def test_the_operator_runs_from_the_loaded_image_as_non_root_and_watches_every_namespace() -> None:
    for name in (spark_operator.CONTROLLER, spark_operator.WEBHOOK):
        pod = _one("Deployment", name)["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["image"] == spark_operator.IMAGE
        assert container["imagePullPolicy"] == "Never"
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert "--namespaces=" in container["args"]
        assert pod["serviceAccountName"] == name


def test_a_namespaces_spark_drivers_get_the_charts_rights_and_no_more() -> None:
    objects = spark_operator.spark_job_access("rides", "featurekube-spark")
    role = next(o for o in objects if o["kind"] == "Role")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["pods", "configmaps", "persistentvolumeclaims", "services"],
            "verbs": [
                "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
            ],
        }
    ]  # fmt: skip
    assert {o["metadata"]["namespace"] for o in objects} == {"rides"}
