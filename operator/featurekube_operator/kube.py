"""The Kubernetes API as the operator uses it; does I/O.

Owned objects are written with server-side apply under one field manager, so re-applying
the same body is a no-op and fields other managers own (an HPA's replicas, kubectl's
annotations) are left alone. SparkApplications are only ever created: a window's job
never changes once started.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import kubernetes.client
import kubernetes.config
import kubernetes.dynamic
from kubernetes.client.exceptions import ApiException

from featurekube.spec import v1alpha1

__all__ = ["FIELD_MANAGER", "Kube"]

FIELD_MANAGER = "featurekube-operator"
SPARK = ("sparkoperator.k8s.io/v1beta2", "SparkApplication")


class Kube:
    """A thin layer over the dynamic client: apply, create, get, find, delete."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.api = api
        self.dynamic = kubernetes.dynamic.DynamicClient(api)

    @classmethod
    def from_environment(cls) -> Kube:
        """In-cluster configuration when running in a pod, else KUBECONFIG."""
        try:
            kubernetes.config.load_incluster_config()
            return cls(kubernetes.client.ApiClient())
        except kubernetes.config.ConfigException:
            # Read KUBECONFIG now: the client library reads it once, when imported.
            return cls(kubernetes.config.new_client_from_config(os.environ.get("KUBECONFIG")))

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def apply(self, body: Mapping[str, Any]) -> Any:
        """Server-side apply ``body`` as the operator's field manager."""
        resource = self._resource(body["apiVersion"], body["kind"])
        return resource.server_side_apply(
            body=dict(body),
            name=body["metadata"]["name"],
            namespace=body["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )

    def create(self, body: Mapping[str, Any]) -> bool:
        """Create ``body``; False if an object of that name exists already."""
        resource = self._resource(body["apiVersion"], body["kind"])
        try:
            resource.create(body=dict(body), namespace=body["metadata"].get("namespace"))
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as a dict, or None if it does not exist."""
        try:
            found = self._resource(api_version, kind).get(name=name, namespace=namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        body: dict[str, Any] = found.to_dict()
        return body

    def find(
        self, api_version: str, kind: str, namespace: str, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace with all of ``labels``."""
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        found = self._resource(api_version, kind).get(namespace=namespace, label_selector=selector)
        return [item.to_dict() for item in found.items]

    def find_everywhere(self, api_version: str, kind: str) -> list[dict[str, Any]]:
        """Objects of a kind in every namespace."""
        found = self._resource(api_version, kind).get()
        return [item.to_dict() for item in found.items]

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """Delete an object (in the background); gone already is fine."""
        try:
            self._resource(api_version, kind).delete(
                name=name, namespace=namespace, propagation_policy="Background"
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def get_feature_view(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A FeatureView's body, or None."""
        return self.get(v1alpha1.API_VERSION, "FeatureView", namespace, name)

    def patch_metadata(
        self, api_version: str, kind: str, namespace: str, name: str, metadata: Mapping[str, Any]
    ) -> None:
        """Merge-patch the object's metadata (labels, annotations; None removes one)."""
        self._resource(api_version, kind).patch(
            body={"metadata": dict(metadata)},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
        )

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        """Merge-patch the status subresource."""
        resource = self._resource(api_version, kind)
        resource.status.patch(
            body={"status": dict(status)},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
        )
