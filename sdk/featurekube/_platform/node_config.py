"""What the local platform's node is: addresses, files and manifests; pure, no I/O.

The node runs in a network and mount namespace of its own, joined to the machine by
one veth pair, so that nothing it does reaches the machine's own network, firewall,
sysctls or directories:

- the machine's end of the pair (:data:`HOST_LINK`, :data:`HOST_IP`) is where the API
  server listens and advertises itself: the ``kubernetes`` Service's endpoint;
- the node's end (:data:`NODE_IP`) is the kubelet's address; behind it, the bridge
  ``cni0`` holds the pods (:data:`POD_CIDR`);
- Service IPs (:data:`SERVICE_CIDR`) exist only as kube-proxy's nftables rules in the
  node's namespace; an ``unreachable`` route there makes sure a packet to a Service IP
  not (yet) programmed fails rather than follows any other route;
- the node's namespace has no default route and the machine does not forward, so no
  packet of a pod can leave the machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CLUSTER_DOMAIN",
    "DNS_SERVICE_IP",
    "HOST_IP",
    "HOST_LINK",
    "KERNEL_TUNABLES",
    "KUBERNETES_SERVICE_IP",
    "NODE_IP",
    "NODE_NAME",
    "OVERLAID_DIRS",
    "POD_CIDR",
    "SERVICE_CIDR",
    "Images",
    "NodeLayout",
    "cni_config",
    "containerd_config",
    "coredns_manifests",
    "kube_proxy_config",
    "kubelet_config",
    "namespace_commands",
]

NODE_NAME = "featurekube-node"
HOST_LINK = "fk-node0"
"""The machine's end of the veth pair. One name per machine, so a second platform with a
node finds it taken and is refused; its alias names the state directory that owns it."""
NODE_LINK = "eth0"
LINK_PREFIX = 30
HOST_IP = "10.250.0.1"
NODE_IP = "10.250.0.2"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"
DNS_SERVICE_IP = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"

KERNEL_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
"""The machine-wide sysctls the kubelet sets to its liking (it has no mode that only
warns): in the node's mount namespace each is a plain file bind-mounted over its
/proc/sys entry, so the kubelet writes that file and the machine's value stays."""

OVERLAID_DIRS = ("/run", "/var/lib", "/var/log")
"""Directories the node's processes write to by fixed paths (/var/log/containers,
/var/lib/cni, /run/containerd...): in the node's mount namespace each is an overlay
whose upper directory is in the state directory."""


@dataclass(frozen=True)
class Images:
    """Image references of the node's own images."""

    pause: str = "registry.k8s.io/pause:3.10.2"
    """The tag containerd uses for pod sandboxes by default."""
    coredns: str = "featurekube.dev/node/coredns:v1.15.0"
    probe: str = "featurekube.dev/node/probe:dev"


@dataclass(frozen=True)
class NodeLayout:
    """Where the node keeps its files, under ``root`` (in the platform's state directory)."""

    root: Path

    @property
    def containerd_root(self) -> Path:
        # Not under an overlay: containerd's overlayfs snapshots need a plain file system.
        return self.root / "containerd"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def containerd_socket(self) -> str:
        """Inside the node's /run overlay: short, and private to the namespace."""
        return "/run/featurekube/containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni"

    @property
    def resolv_conf(self) -> Path:
        """An empty resolv.conf for the kubelet: pods learn only the cluster DNS."""
        return self.root / "resolv.conf"

    @property
    def tunables(self) -> Path:
        return self.root / "sysctl"

    @property
    def overlays(self) -> Path:
        return self.root / "overlay"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def tunable_file(self, tunable: str) -> Path:
        return self.tunables / tunable.replace("/", ".")

    def overlay_dirs(self, target: str) -> tuple[Path, Path]:
        """Upper and work directory of the overlay on ``target``."""
        base = self.overlays / target.strip("/").replace("/", "-")
        return base / "upper", base / "work"

    def kubeconfig(self, user: str) -> Path:
        return self.root / f"kubeconfig-{user}"


def namespace_commands(layout: NodeLayout) -> list[list[str]]:
    """Commands run inside the node's fresh mount and network namespaces, in order, to
    make them what the node needs (the namespaces' holder is already running)."""
    commands: list[list[str]] = []
    for target in OVERLAID_DIRS:
        upper, work = layout.overlay_dirs(target)
        options = f"lowerdir={target},upperdir={upper},workdir={work}"
        commands.append(["mount", "-t", "overlay", "overlay", "-o", options, target])
    for tunable in KERNEL_TUNABLES:
        commands.append(
            ["mount", "--bind", str(layout.tunable_file(tunable)), f"/proc/sys/{tunable}"]
        )
    commands += [
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", f"{NODE_IP}/{LINK_PREFIX}", "dev", NODE_LINK],
        ["ip", "link", "set", NODE_LINK, "up"],
        # A Service IP kube-proxy has not programmed fails here instead of going anywhere.
        ["ip", "route", "add", "unreachable", SERVICE_CIDR],
        # The namespace's own forwarding switch (net.* sysctls are per namespace).
        ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
    ]
    return commands


def containerd_config(layout: NodeLayout, cni_bin_dir: Path, images: Images) -> str:
    """containerd's config.toml: everything under the node's layout, runc from Debian."""
    root = layout.containerd_root
    return f"""# Generated by featurekube's local platform; rewritten at every start.
version = 4
root = '{root / "root"}'
state = '/run/featurekube/containerd'
temp = '{layout.tmp}'

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{images.pause}'

  [plugins.'io.containerd.cri.v1.runtime']
    disable_apparmor = true
    # No process on this machine may lower its oom_score_adj (CAP_SYS_RESOURCE is
    # dropped from every bounding set): clamp the sandboxes' value to containerd's own.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '/usr/sbin/runc'
          Root = '/run/featurekube/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['{cni_bin_dir}']
      conf_dir = '{layout.cni_conf_dir}'

  [plugins.'io.containerd.nri.v1.nri']
    disable = true

  [plugins.'io.containerd.server.v1.grpc']
    address = '{layout.containerd_socket}'

  [plugins.'io.containerd.server.v1.ttrpc']
    address = '{layout.containerd_socket}.ttrpc'

  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = '/run/featurekube/s'

  [plugins.'io.containerd.internal.v1.opt']
    path = '{root / "opt"}'
"""


def cni_config() -> dict[str, Any]:
    """The pod network: one bridge, addresses from :data:`POD_CIDR`."""
    return {
        "cniVersion": "1.0.0",
        "name": "featurekube",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                # The machine routes POD_CIDR back to the node, so no masquerading.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": "/var/lib/cni/networks",
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(layout: NodeLayout, pki: Path) -> dict[str, Any]:
    """The kubelet's KubeletConfiguration for this machine (cgroup v1, no swap limits)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This machine mounts cgroup v1; Kubernetes >= 1.35 refuses it unless told.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "address": NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        # As in a real cluster: the API server presents its kubelet-client certificate;
        # everyone else is checked with the API server (TokenReview, SubjectAccessReview).
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "client-ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(layout.resolv_conf),
        "podLogsDir": str(layout.root / "pod-logs"),
        "volumePluginDir": str(layout.root / "volume-plugins"),
        "protectKernelDefaults": False,
        # kube-proxy runs in nftables mode: no iptables chains of the kubelet's.
        "makeIPTablesUtilChains": False,
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "shutdownGracePeriod": "0s",
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        # A developer's disk is often fuller than a server's: neither evict pods nor
        # collect the imported images (they cannot be pulled again) for want of space.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
    }


def kube_proxy_config(layout: NodeLayout) -> dict[str, Any]:
    """kube-proxy in nftables mode, touching no conntrack sysctl."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig("kube-proxy"))},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_CIDR,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # 0: leave nf_conntrack_max and the timeouts as the machine has them.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


COREFILE = f""".:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
    }}
    cache 30
    loadbalance
}}
"""
"""Cluster names only: there is no ``forward``, so no query leaves the machine."""


def coredns_manifests(images: Images) -> list[dict[str, Any]]:
    """CoreDNS as the cluster DNS (the ``kube-dns`` Service at :data:`DNS_SERVICE_IP`),
    reading the API through the ``kubernetes`` Service with its own ServiceAccount."""
    labels = {"k8s-app": "kube-dns"}
    meta = {"name": "coredns", "namespace": "kube-system"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "featurekube:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "featurekube:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "featurekube:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", **meta}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "priorityClassName": "system-cluster-critical",
                        "dnsPolicy": "Default",
                        "containers": [
                            {
                                "name": "coredns",
                                "image": images.coredns,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 2,
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": 8080},
                                    "periodSeconds": 10,
                                },
                                "resources": {"limits": {"memory": "128Mi"}},
                                "volumeMounts": [
                                    {
                                        "name": "config",
                                        "mountPath": "/etc/coredns",
                                        "readOnly": True,
                                    }
                                ],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "clusterIP": DNS_SERVICE_IP,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        },
    ]


def manifest_text(documents: list[dict[str, Any]]) -> str:
    """Documents as one multi-document YAML stream (JSON is valid YAML)."""
    return "---\n".join(json.dumps(document) + "\n" for document in documents)
