"""Which AWS credentials the pods of a namespace run with; pure, no I/O.

With the setting ``aws_credentials: namespace`` each namespace brings its own, and the
jobs and feature servers the operator runs there take them and nothing else:

- a Secret named ``aws_credentials_secret`` (default ``featurekube-aws``) in the
  namespace, whose ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and optional
  ``AWS_SESSION_TOKEN``) become the pods' environment, each by ``secretKeyRef``; or
- an IAM role on the pod's ServiceAccount in the namespace (the annotation
  ``eks.amazonaws.com/role-arn``: IRSA), which EKS hands to the pod itself.

With neither, nothing runs there and the object's condition says so
(:data:`MISSING`); there is no fallback to the operator's own credentials. With
``aws_credentials: ambient`` the pods take whatever their environment gives the AWS
SDK's default chain (EKS Pod Identity, a node role; the local platform).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AMBIENT",
    "IRSA_ANNOTATION",
    "MISSING",
    "MODES",
    "NAMESPACE",
    "SECRET_KEYS",
    "Credentials",
    "missing_message",
    "resolve",
]

NAMESPACE = "namespace"
AMBIENT = "ambient"
MODES = (NAMESPACE, AMBIENT)
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
MISSING = "CredentialsMissing"
"""The Ready=False reason of an object whose namespace has no credentials."""
SECRET_KEYS = (
    ("AWS_ACCESS_KEY_ID", False),
    ("AWS_SECRET_ACCESS_KEY", False),
    ("AWS_SESSION_TOKEN", True),
)
"""The keys the pods take from the namespace's Secret, and whether each is optional."""


@dataclass(frozen=True)
class Credentials:
    """How a pod gets AWS credentials: from ``secret`` (a Secret in its namespace), or,
    when that is empty, from its ServiceAccount's role or its environment."""

    secret: str = ""
    role_arn: str = ""

    def env(self) -> list[dict[str, Any]]:
        """The container env that takes the Secret's keys (only those: nothing else in
        the Secret reaches the pod); [] without a Secret."""
        if not self.secret:
            return []
        return [
            {
                "name": key,
                "valueFrom": {
                    "secretKeyRef": {
                        "name": self.secret,
                        "key": key,
                        **({"optional": True} if optional else {}),
                    }
                },
            }
            for key, optional in SECRET_KEYS
        ]


def resolve(
    mode: str,
    secret_name: str,
    secret: Mapping[str, Any] | None,
    service_account: Mapping[str, Any] | None,
) -> Credentials | None:
    """The credentials of a pod running as ``service_account`` in a namespace holding
    ``secret`` (each None when it does not exist there): the Secret first, then the
    ServiceAccount's IRSA role; None when the namespace has neither (nothing may run).
    In ``ambient`` mode, the environment's: an empty :class:`Credentials`."""
    if mode == AMBIENT:
        return Credentials()
    if secret is not None:
        return Credentials(secret=secret_name)
    annotations = ((service_account or {}).get("metadata") or {}).get("annotations") or {}
    role = annotations.get(IRSA_ANNOTATION, "")
    if role:
        return Credentials(role_arn=role)
    return None


def missing_message(namespace: str, secret_name: str, service_account: str) -> str:
    """What to do about a namespace without credentials."""
    return (
        f"namespace {namespace} has no AWS credentials for featurekube: create the Secret "
        f"{secret_name} (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) there, or annotate "
        f"its ServiceAccount {service_account} with {IRSA_ANNOTATION}; nothing runs until "
        "then"
    )
