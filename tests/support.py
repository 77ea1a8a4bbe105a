"""Helpers the integration and end-to-end tests share (importable as ``support``:
pytest puts this folder on sys.path with its conftest)."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
import yaml

__all__ = [
    "STREAM_VIEW",
    "eventually",
    "example_data_generator",
    "service_account_token",
    "stream_view",
    "token_reviewer",
]

REPO = Path(__file__).parents[1]

STREAM_VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-trips", "namespace": "rides"},
    "spec": {
        "owner": "eta-team",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {
            "batch": {"path": "s3://lake/raw/trips/"},
            "stream": {
                "kafka": {
                    "topic": "trips",
                    "fields": [
                        {"name": "driver_id", "type": "int64"},
                        {"name": "fare", "type": "float64"},
                        {"name": "event_timestamp", "type": "timestamp"},
                    ],
                }
            },
        },
        "features": [{"name": "fare", "type": "float64"}],
    },
}
"""A streaming FeatureView: drivers' fares from the Kafka topic ``trips``, with the
batch source of their history beside it. Copy it (:func:`stream_view`) to change it."""


def stream_view(**kafka: Any) -> dict[str, Any]:
    """A copy of :data:`STREAM_VIEW` whose ``source.stream.kafka`` takes ``kafka``'s
    fields; a field given as None is removed."""
    body = copy.deepcopy(STREAM_VIEW)
    stream = body["spec"]["source"]["stream"]["kafka"]
    stream.update(kafka)
    for key in [k for k, v in kafka.items() if v is None]:
        del stream[key]
    return body


def example_data_generator() -> ModuleType:
    """``examples/generate_data.py``, imported once, by path (examples/ is not a
    package)."""
    name = "featurekube_examples_generate_data"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "examples" / "generate_data.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
    return sys.modules[name]


def eventually(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    interval: float = 0.5,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``check`` until it returns something true, and return that; fail the test
    with ``what`` after ``timeout`` seconds. Exceptions in ``ignore`` count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if result := check():
                return result
        except ignore:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)


def service_account_token(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> str:
    """Make the ServiceAccount ``name`` in ``namespace`` and return an hour's token of it."""
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    request = {"spec": {"expirationSeconds": 3600}}
    token: str = core.create_namespaced_service_account_token(name, namespace, request).status.token
    return token


@contextlib.contextmanager
def token_reviewer(
    kube_api: kubernetes.client.ApiClient, namespace: str, admin_kubeconfig: Path, tmp_path: Path
) -> Iterator[kubernetes.client.ApiClient]:
    """An API client as a feature server's ServiceAccount (``feature-server`` in
    ``namespace``), which may only review tokens: system:auth-delegator, as the chart
    binds it. The binding goes with the block."""
    core = kubernetes.client.CoreV1Api(kube_api)
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube_api)
    token = service_account_token(core, namespace, "feature-server")
    binding = f"{namespace}-auth-delegator"
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": binding},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:auth-delegator",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "feature-server", "namespace": namespace}
            ],
        }
    )
    cluster = yaml.safe_load(admin_kubeconfig.read_text())["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "server", "user": {"token": token}}],
        "contexts": [{"name": "server", "context": {"cluster": cluster["name"], "user": "server"}}],
        "current-context": "server",
    }
    path = tmp_path / "kubeconfig-server"
    path.write_text(yaml.safe_dump(config))
    api = kubernetes.config.new_client_from_config(config_file=str(path))
    try:
        yield api
    finally:
        api.close()
        rbac.delete_cluster_role_binding(binding)
