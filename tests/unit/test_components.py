from __future__ import annotations

from pathlib import Path

import pytest

from featurekube._platform import components

LAYOUT = components.Layout(Path("/state"))
PORTS = components.Ports(etcd_client=2379, etcd_peer=2380, apiserver=6443, moto=5000)


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(
        a.removeprefix("--").split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a
    )


@pytest.mark.parametrize(
    "argv",
    [
        components.etcd_command(Path("/bin/etcd"), LAYOUT, PORTS),
        components.apiserver_command(Path("/bin/kube-apiserver"), LAYOUT, PORTS),
        components.moto_command(Path("/usr/bin/python3"), PORTS),
    ],
    ids=["etcd", "kube-apiserver", "moto"],
)
def test_every_server_listens_on_loopback_only(argv: list[str]) -> None:
    addresses = [a for a in argv if "url" in a or "address" in a] + [
        argv[i + 1] for i, a in enumerate(argv) if a == "-H"
    ]
    assert addresses
    assert all("127.0.0.1" in a for a in addresses), addresses


def test_the_apiserver_uses_tls_client_certificates_and_rbac() -> None:
    flags = _flags(components.apiserver_command(Path("/bin/kube-apiserver"), LAYOUT, PORTS))

    assert flags["authorization-mode"] == "RBAC"
    assert flags["client-ca-file"] == "/state/pki/client-ca.crt"
    assert flags["tls-cert-file"] == "/state/pki/apiserver.crt"
    assert flags["etcd-servers"] == "http://127.0.0.1:2379"
    assert flags["secure-port"] == "6443"
    assert flags["service-account-signing-key-file"] == "/state/pki/sa.key"


def test_the_controller_manager_runs_the_controllers_tests_rely_on() -> None:
    flags = _flags(components.controller_manager_command(Path("/bin/kcm"), LAYOUT))

    assert set(flags["controllers"].split(",")) == {
        "garbage-collector-controller",
        "namespace-controller",
        "deployment-controller",
        "replicaset-controller",
        "job-controller",
    }
    assert flags["kubeconfig"] == "/state/kubeconfig-controller-manager"
    assert flags["leader-elect"] == "false"
