"""The Spark Operator add-on's manifests: the chart's parts, our certificate; pure."""

from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from featurekube._platform import oci, spark_operator

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


def _archive(directory: Path, file_name: str, image: str, mtime: float) -> Path:
    rootfs = directory / "rootfs"
    rootfs.mkdir(exist_ok=True)
    archive = directory / file_name
    oci.write_image(rootfs, oci.ImageConfig(image), archive)
    os.utime(archive, (mtime, mtime))
    return archive


def test_the_newest_operator_image_of_this_version_and_spark_image_are_found(
    tmp_path: Path,
) -> None:
    old = _archive(tmp_path, f"spark-operator-{'1' * 16}.oci.tar", spark_operator.IMAGE, 1000)
    new = _archive(tmp_path, f"spark-operator-{'2' * 16}.oci.tar", spark_operator.IMAGE, 2000)
    # Newer, but another version's: not this platform's operator.
    _archive(tmp_path, f"spark-operator-{'3' * 16}.oci.tar", "x/spark-operator:v9", 3000)
    spark = _archive(tmp_path, f"spark-{'4' * 16}.oci.tar", "ghcr.io/featurekube/spark:0", 10)
    _archive(tmp_path, "spark-operator-partial.oci.tar", spark_operator.IMAGE, 4000)

    found = spark_operator.find_archives(tmp_path)

    assert found == spark_operator.Archives(operator=new, spark=spark)
    assert found.all() == [new, spark]
    assert old not in found.all()


def test_without_the_operators_image_nothing_is_found_and_the_hint_says_how_to_build_it(
    tmp_path: Path,
) -> None:
    _archive(tmp_path, f"spark-{'4' * 16}.oci.tar", "ghcr.io/featurekube/spark:0", 10)

    assert spark_operator.find_archives(tmp_path) is None
    assert spark_operator.find_archives(tmp_path / "missing") is None
    assert "make spark-operator" in spark_operator.NOT_BUILT


def test_the_spark_image_is_optional_and_then_only_the_operator_is_loaded(tmp_path: Path) -> None:
    operator = _archive(tmp_path, f"spark-operator-{'1' * 16}.oci.tar", spark_operator.IMAGE, 1)

    found = spark_operator.find_archives(tmp_path)

    assert found is not None and found.all() == [operator]
