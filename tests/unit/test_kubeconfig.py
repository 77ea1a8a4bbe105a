from __future__ import annotations

import base64

from featurekube._platform.kubeconfig import render_kubeconfig


def test_a_kubeconfig_inlines_its_credentials_under_one_current_context() -> None:
    doc = render_kubeconfig(
        server="https://127.0.0.1:6443",
        ca_pem=b"CA",
        user="admin",
        client_cert_pem=b"CERT",
        client_key_pem=b"KEY",
    )

    (cluster,) = doc["clusters"]
    (user,) = doc["users"]
    (context,) = doc["contexts"]
    assert doc["current-context"] == context["name"]
    assert context["context"] == {
        "cluster": cluster["name"],
        "user": "admin",
        "namespace": "default",
    }
    assert cluster["cluster"]["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == b"CA"
    assert base64.b64decode(user["user"]["client-certificate-data"]) == b"CERT"
    assert base64.b64decode(user["user"]["client-key-data"]) == b"KEY"
