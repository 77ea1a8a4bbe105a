"""Kubeconfig documents for the local API server; pure, no I/O.

Credentials are inlined (``*-data`` fields) so a kubeconfig is one self-contained file
that kubectl, kopf and the Python client all read.
"""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["render_kubeconfig"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_kubeconfig(
    *,
    server: str,
    ca_pem: bytes,
    user: str,
    client_cert_pem: bytes,
    client_key_pem: bytes,
    cluster: str = "featurekube-dev",
    namespace: str = "default",
) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user and one current context."""
    context = f"{user}@{cluster}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client_cert_pem),
                    "client-key-data": _b64(client_key_pem),
                },
            }
        ],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": cluster, "user": user, "namespace": namespace},
            }
        ],
        "current-context": context,
    }
