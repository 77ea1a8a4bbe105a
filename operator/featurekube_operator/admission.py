"""The checks of ``featurekube validate`` that need one object only, run on an object as
the API server holds it; pure.

The CRDs' schema and CEL rules refuse most junk at ``kubectl apply``, but not all that
``validate`` refuses: the transformation SQL's allowlist (no reflection, no file
readers, no tables but ``source``), request-time expressions, reserved names. An object
can also reach the API server without the CRDs' current rules (created before an
upgrade, or written by a client that skipped validation). So the operator runs these
checks on every object before acting on it: what fails them is ``InvalidSpec`` and
runs nothing. Checks across objects (references, sharing) stay with the reconcile.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurekube.spec import loader
from featurekube.validation import report

__all__ = ["WEBHOOKS", "Refusal", "check_object", "describe", "render_webhook_configuration"]

WEBHOOKS = {"featureviews": "featureviews", "featureservices": "featureservices"}
"""Resource -> the webhook's path on the operator's admission server (kopf's handler id)."""

_KEPT_METADATA = ("name", "namespace", "labels", "annotations")
"""What of an object's metadata the checks read; the rest (uid, managedFields, ...) is
the API server's bookkeeping."""


@dataclass(frozen=True)
class Refusal:
    """One reason an object is refused, at a field of it."""

    path: str | None
    """The field (``spec.transformation.sql``), or None for the object as a whole."""
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def check_object(body: Mapping[str, Any]) -> list[Refusal]:
    """What ``featurekube validate`` refuses in ``body`` (a FeatureView or FeatureService
    as read from the API server) on its own: schema, SQL, expressions, names. Empty when
    nothing is wrong."""
    metadata = body.get("metadata") or {}
    kind, name = body.get("kind") or "object", metadata.get("name") or ""
    document = loader.Document(
        path=Path(f"{kind}/{name}"),
        index=0,
        body={
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": {k: metadata[k] for k in _KEPT_METADATA if k in metadata},
            "spec": body.get("spec"),
        },
    )
    # complete=False: the views a service references are not at hand, and not refused.
    return [
        Refusal(problem.path, problem.message)
        for problem in report.check_documents([document], complete=False)
    ]


def describe(refusals: list[Refusal], limit: int = 3) -> str:
    """The first ``limit`` refusals in one line, and how many more there are."""
    text = "; ".join(str(r) for r in refusals[:limit])
    more = len(refusals) - limit
    return f"{text} (and {more} more)" if more > 0 else text


def render_webhook_configuration(
    name: str,
    client_config: Mapping[str, Any],
    ca_bundle: bytes,
    namespaces: list[str] | None = None,
    failure_policy: str = "Fail",
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration that sends creates and updates of FeatureViews
    and FeatureServices to the operator's webhook: ``client_config`` is where it is
    (``{"url": "https://127.0.0.1:9443"}``, or ``{"service": {...}}``) without the
    path, ``ca_bundle`` the PEM of the CA that signed its certificate; ``namespaces``
    limits it to those namespaces (None: all)."""
    selector = (
        {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}
            ]
        }
        if namespaces is not None
        else {}
    )
    webhooks = []
    for resource, path in WEBHOOKS.items():
        config = dict(client_config)
        if "url" in config:
            config["url"] = f"{str(config['url']).rstrip('/')}/{path}"
        else:
            config["service"] = {**config["service"], "path": f"/{path}"}
        config["caBundle"] = base64.b64encode(ca_bundle).decode()
        webhooks.append(
            {
                "name": f"{resource}.validate.featurekube.dev",
                "rules": [
                    {
                        "apiGroups": ["featurekube.dev"],
                        "apiVersions": ["v1alpha1"],
                        "resources": [resource],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
                "clientConfig": config,
                "namespaceSelector": selector,
                "failurePolicy": failure_policy,
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10,
            }
        )
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": webhooks,
    }
