from __future__ import annotations

import ipaddress
from pathlib import Path

from featurekube._platform import components, node_config

LAYOUT = components.Layout(Path("/state"))
NODE = node_config.NodeLayout(Path("/state/node"))
PORTS = components.Ports(etcd_client=2379, etcd_peer=2380, apiserver=6443, moto=5000)


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(
        a.removeprefix("--").split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a
    )


def test_the_node_addresses_are_private_and_apart_from_each_other() -> None:
    link = ipaddress.ip_network(f"{node_config.HOST_IP}/{node_config.LINK_PREFIX}", strict=False)
    pods = ipaddress.ip_network(node_config.POD_CIDR)
    services = ipaddress.ip_network(node_config.SERVICE_CIDR)

    assert ipaddress.ip_address(node_config.NODE_IP) in link
    assert all(n.is_private for n in (link, pods, services))
    assert not link.overlaps(pods) and not link.overlaps(services) and not pods.overlaps(services)
    assert ipaddress.ip_address(node_config.KUBERNETES_SERVICE_IP) in services
    assert ipaddress.ip_address(node_config.DNS_SERVICE_IP) in services


def test_service_ips_not_programmed_are_unreachable_inside_the_node() -> None:
    commands = node_config.namespace_commands(NODE)

    assert ["ip", "route", "add", "unreachable", node_config.SERVICE_CIDR] in commands
    # No default route is ever added: a pod's packet has nowhere to go but the node.
    assert not [c for c in commands if c[:3] == ["ip", "route", "add"] and "default" in c]


def test_the_kubelets_machine_wide_sysctls_and_directories_are_private_files() -> None:
    commands = node_config.namespace_commands(NODE)
    binds = {c[-1]: c[-2] for c in commands if c[:2] == ["mount", "--bind"]}
    overlays = [c[-1] for c in commands if c[:3] == ["mount", "-t", "overlay"]]

    for tunable in ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"):
        assert binds[f"/proc/sys/{tunable}"].startswith("/state/node/")
    assert overlays == ["/run", "/var/lib", "/var/log"]
    assert all("upperdir=/state/node/" in " ".join(c) for c in commands if "overlay" in c)


def test_the_apiserver_serves_a_node_as_a_real_cluster_does() -> None:
    argv = components.apiserver_command(Path("/bin/kube-apiserver"), LAYOUT, PORTS, node=True)
    flags = _flags(argv)

    assert flags["bind-address"] == flags["advertise-address"] == node_config.HOST_IP
    assert flags["authorization-mode"] == "Node,RBAC"
    assert "NodeRestriction" in flags["enable-admission-plugins"]
    assert "disable-admission-plugins" not in flags  # ServiceAccount admission is on
    assert "endpoint-reconciler-type" not in flags  # the kubernetes Service has endpoints
    assert flags["kubelet-certificate-authority"] == "/state/pki/serving-ca.crt"
    assert flags["service-cluster-ip-range"] == node_config.SERVICE_CIDR


def test_without_a_node_the_apiserver_stays_on_loopback_as_before() -> None:
    flags = _flags(components.apiserver_command(Path("/bin/kube-apiserver"), LAYOUT, PORTS))

    assert flags["bind-address"] == "127.0.0.1"
    assert flags["disable-admission-plugins"] == "ServiceAccount"
    assert flags["endpoint-reconciler-type"] == "none"


def test_with_a_node_the_controller_manager_runs_its_default_controllers() -> None:
    flags = _flags(components.controller_manager_command(Path("/bin/kcm"), LAYOUT, node=True))

    assert flags["controllers"] == "*"
    assert flags["service-account-private-key-file"] == "/state/pki/sa.key"
    assert flags["root-ca-file"] == "/state/pki/serving-ca.crt"


def test_the_kubelet_authenticates_callers_and_asks_the_api_server_who_may_do_what() -> None:
    config = node_config.kubelet_config(NODE, Path("/state/pki"))

    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authentication"]["webhook"] == {"enabled": True}
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["address"] == node_config.NODE_IP
    assert config["clusterDNS"] == [node_config.DNS_SERVICE_IP]
    assert config["makeIPTablesUtilChains"] is False
    assert config["protectKernelDefaults"] is False


def test_node_processes_run_inside_the_node_namespaces() -> None:
    kubelet = components.kubelet_command(Path("/bin/kubelet"), NODE)
    argv = components.in_node(4242, kubelet)

    assert argv[:5] == ["nsenter", "--target=4242", "--mount", "--net", "--"]
    assert _flags(kubelet)["kubeconfig"] == "/state/node/kubeconfig-kubelet"
    assert _flags(kubelet)["node-ip"] == node_config.NODE_IP


def test_kube_proxy_uses_nftables_and_leaves_conntrack_sysctls_alone() -> None:
    config = node_config.kube_proxy_config(NODE)

    assert config["mode"] == "nftables"
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["conntrack"]["min"] == 0


def test_the_cluster_dns_answers_cluster_names_only() -> None:
    assert "forward" not in node_config.COREFILE
    assert f"kubernetes {node_config.CLUSTER_DOMAIN}" in node_config.COREFILE
    service = next(
        m for m in node_config.coredns_manifests(node_config.Images()) if m["kind"] == "Service"
    )
    assert service["spec"]["clusterIP"] == node_config.DNS_SERVICE_IP


def test_containerd_keeps_its_files_in_the_node_and_clamps_oom_score_adj() -> None:
    text = node_config.containerd_config(NODE, Path("/cache/cni"), node_config.Images())

    assert "restrict_oom_score_adj = true" in text
    assert "root = '/state/node/containerd/root'" in text
    assert "bin_dirs = ['/cache/cni']" in text
    assert "sandbox = 'registry.k8s.io/pause:3.10.2'" in text
