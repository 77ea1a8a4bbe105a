"""The operator's validating admission webhook for real: kopf's HTTPS server in the
running operator on loopback, registered with the platform's API server by a
ValidatingWebhookConfiguration limited to the test's namespace, so that `kubectl
apply` (here the API client) is refused what `featurekube validate` refuses."""

from __future__ import annotations

import copy
import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
from kopf.testing import KopfRunner

from featurekube._platform import pki, processes
from featurekube_operator import admission
from support import eventually

GROUP = ("featurekube.dev", "v1alpha1")
VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-profile"},
    "spec": {
        "owner": "eta-team",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/drivers/"}},
        "transformation": {"sql": "SELECT driver_id, event_timestamp, rating FROM source"},
        "features": [{"name": "rating", "type": "float64"}],
    },
}
SERVICE: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureService",
    "metadata": {"name": "eta-model"},
    "spec": {
        "owner": "eta-team",
        "features": [{"featureView": "driver-profile"}],
        "transformations": [
            {"name": "leak", "type": "float64", "expression": "SELECT rating FROM source"}
        ],
    },
}


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def webhook(
    kube_api: kubernetes.client.ApiClient, namespace: str, table_prefix: str, tmp_path: Path
) -> Iterator[None]:
    """The operator with its webhook on loopback, and the configuration that calls it
    for the test's namespace only."""
    now = dt.datetime.now(dt.UTC)
    ca = pki.new_authority("featurekube-webhook-ca", now)
    serving = pki.issue_certificate(ca, "127.0.0.1", now, hosts=("127.0.0.1",), server=True)
    (tmp_path / "tls.crt").write_bytes(serving.cert_pem)
    (tmp_path / "tls.key").write_bytes(serving.key_pem)
    port = processes.free_port()
    env = {
        "FEATUREKUBE_ADMISSION_PORT": str(port),
        "FEATUREKUBE_ADMISSION_CERT_DIR": str(tmp_path),
        "FEATUREKUBE_TABLE_PREFIX": table_prefix,
        "FEATUREKUBE_METRICS_PORT": "0",
    }
    registrations = kubernetes.client.AdmissionregistrationV1Api(kube_api)
    configuration = admission.render_webhook_configuration(
        f"featurekube-{namespace}"[:63],
        {"url": f"https://127.0.0.1:{port}"},
        ca.pair.cert_pem,
        namespaces=[namespace],
    )
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        args = ["run", "--standalone", "--namespace", namespace]
        with KopfRunner([*args, "-m", "featurekube_operator.handlers"], timeout=60) as runner:
            eventually(lambda: _listening(port), 30, "the webhook listens")
            registrations.create_validating_webhook_configuration(configuration)
            try:
                yield
            finally:
                registrations.delete_validating_webhook_configuration(
                    configuration["metadata"]["name"]
                )
    assert runner.exception is None


def _create(
    kube_api: kubernetes.client.ApiClient, namespace: str, doc: dict[str, Any]
) -> dict[str, Any]:
    plural = "featureviews" if doc["kind"] == "FeatureView" else "featureservices"
    created: dict[str, Any] = kubernetes.client.CustomObjectsApi(
        kube_api
    ).create_namespaced_custom_object(*GROUP, namespace, plural, doc)
    return created


def _refusal(kube_api: kubernetes.client.ApiClient, namespace: str, doc: dict[str, Any]) -> str:
    """The API server's answer to creating ``doc``, which must be a refusal."""

    attempts = iter(range(1000))

    def answered() -> str | None:
        # The API server may take a moment to start calling a new configuration: an
        # object it let through meanwhile is left, and the next attempt named anew.
        attempt = copy.deepcopy(doc)
        attempt["metadata"]["name"] = f"{doc['metadata']['name']}-{next(attempts)}"
        try:
            _create(kube_api, namespace, attempt)
        except kubernetes.client.exceptions.ApiException as exc:
            return f"{exc.status} {exc.body}"
        return None

    text: str = eventually(answered, 30, "the API server calls the webhook")
    return text


def test_apply_refuses_sql_outside_the_allowlist_naming_the_field(
    webhook: None, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    view = copy.deepcopy(VIEW)
    view["spec"]["transformation"]["sql"] = (
        "SELECT driver_id, event_timestamp, "
        "reflect('java.lang.System', 'getenv', 'AWS_SECRET_ACCESS_KEY') AS rating FROM source"
    )

    refused = _refusal(kube_api, namespace, view)

    assert refused.startswith("422 "), refused
    assert "denied the request: spec.transformation.sql: uses function reflect" in refused

    # What validate takes is created, and updates are checked too.
    _create(kube_api, namespace, VIEW)
    # A patch, not a replace: the operator may have written the object since (status,
    # finalizers), and a stale resourceVersion would be refused before admission.
    patch = {"spec": {"transformation": {"sql": "SELECT * FROM IDENTIFIER('other.private')"}}}
    with pytest.raises(kubernetes.client.exceptions.ApiException) as update:
        kubernetes.client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
            *GROUP, namespace, "featureviews", "driver-profile", patch
        )
    assert "function identifier" in str(update.value.body)


def test_apply_refuses_a_service_expression_that_is_a_query(
    webhook: None, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    refused = _refusal(kube_api, namespace, SERVICE)

    assert "spec.transformations[0].expression: is a SELECT statement" in refused
