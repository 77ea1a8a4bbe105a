"""What each process of the local platform is: its command line; pure, no I/O.

Flags follow controller-runtime's envtest, which runs the same binaries for
Kubebuilder projects' controller tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from featurekube._platform import node_config

__all__ = [
    "Layout",
    "Ports",
    "apiserver_command",
    "containerd_command",
    "controller_manager_command",
    "etcd_command",
    "in_node",
    "kube_proxy_command",
    "kubelet_command",
    "moto_command",
    "operator_command",
    "operator_environment",
    "runtime_command",
    "scheduler_command",
]

LOOPBACK = "127.0.0.1"

# The controllers a feature store's tests lean on: owned objects garbage-collected,
# namespaces deleted, Deployments turned into ReplicaSets and Pods, Jobs into Pods and
# back into a Job's status (the pods stay Pending: nothing here schedules or runs pods
# but the local runtime, or a test playing the kubelet).
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "deployment-controller",
    "replicaset-controller",
    "job-controller",
)


@dataclass(frozen=True)
class Ports:
    """Loopback TCP ports of one platform instance."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    moto: int


@dataclass(frozen=True)
class Layout:
    """Where one platform instance keeps its files, under ``root``."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def kubeconfig(self) -> Path:
        """Admin credentials (group system:masters)."""
        return self.root / "kubeconfig"

    @property
    def kubeconfig_unprivileged(self) -> Path:
        """A user bound to no role, for checking that RBAC refuses what it should."""
        return self.root / "kubeconfig-unprivileged"

    @property
    def controller_manager_kubeconfig(self) -> Path:
        return self.root / "kubeconfig-controller-manager"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (JSON lines), when auditing is on."""
        return self.logs / "audit.log"

    @property
    def runtime_dir(self) -> Path:
        """The local runtime's work: job logs, mounted ConfigMaps, endpoints.json."""
        return self.root / "runtime"

    @property
    def state_file(self) -> Path:
        """Endpoints and process ids of the running platform (JSON)."""
        return self.root / "platform.json"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def pki_file(self, name: str) -> Path:
        return self.pki / name


def etcd_command(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    """etcd as a single member on loopback; fsync off, since the data is throwaway."""
    client = f"http://{LOOPBACK}:{ports.etcd_client}"
    peer = f"http://{LOOPBACK}:{ports.etcd_peer}"
    return [
        str(binary),
        "--name=featurekube-dev",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=featurekube-dev={peer}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""
"""Record who made each request, and nothing of its body."""


def apiserver_command(
    binary: Path, layout: Layout, ports: Ports, *, audit: bool = False, node: bool = False
) -> list[str]:
    """kube-apiserver with TLS, x509 client auth and RBAC, serving on loopback only.

    With ``node``, it serves as a real cluster's does for the platform's node: on the
    machine's end of the node's link (:data:`node_config.HOST_IP`), advertised there as
    the ``kubernetes`` Service's endpoint, with the Node authorizer and the
    ServiceAccount and NodeRestriction admission plugins, and calling the kubelet
    with a client certificate of its own.

    With ``audit``, every request's metadata goes to :attr:`Layout.audit_log` (the
    policy file ``audit-policy.yaml`` must exist in the pki directory).
    """
    pki = layout.pki_file
    audit_flags = (
        [
            f"--audit-policy-file={pki('audit-policy.yaml')}",
            f"--audit-log-path={layout.audit_log}",
            "--audit-log-format=json",
        ]
        if audit
        else []
    )
    address = node_config.HOST_IP if node else LOOPBACK
    cluster_flags = (
        [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={pki('apiserver-kubelet-client.crt')}",
            f"--kubelet-client-key={pki('apiserver-kubelet-client.key')}",
            f"--kubelet-certificate-authority={pki('serving-ca.crt')}",
            "--kubelet-preferred-address-types=InternalIP",
            # Service IPs exist only inside the node's namespace; the machine routes the
            # pod network, so the API server calls Service-backed admission webhooks at
            # their endpoints' pod IPs.
            "--enable-aggregator-routing=true",
        ]
        if node
        else [
            "--authorization-mode=RBAC",
            # No token controller runs, so pods must not require a service-account token.
            "--disable-admission-plugins=ServiceAccount",
            # One API server, no Service endpoints to keep for it.
            "--endpoint-reconciler-type=none",
        ]
    )
    return [
        str(binary),
        *audit_flags,
        f"--etcd-servers=http://{LOOPBACK}:{ports.etcd_client}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={layout.pki}",
        f"--tls-cert-file={pki('apiserver.crt')}",
        f"--tls-private-key-file={pki('apiserver.key')}",
        f"--client-ca-file={pki('client-ca.crt')}",
        f"--service-account-issuer=https://{address}:{ports.apiserver}/",
        f"--service-account-key-file={pki('sa.pub')}",
        f"--service-account-signing-key-file={pki('sa.key')}",
        f"--service-cluster-ip-range={node_config.SERVICE_CIDR}",
        "--allow-privileged=true",
        *cluster_flags,
        "--v=1",
    ]


def controller_manager_command(binary: Path, layout: Layout, *, node: bool = False) -> list[str]:
    """kube-controller-manager running only the controllers in :data:`CONTROLLERS`, or
    with ``node`` all of its default ones (ServiceAccounts and their tokens, node
    lifecycle, endpoints and EndpointSlices, ...), as a real cluster runs it."""
    controllers = (
        [
            "--controllers=*",
            f"--service-account-private-key-file={layout.pki_file('sa.key')}",
            f"--root-ca-file={layout.pki_file('serving-ca.crt')}",
        ]
        if node
        else [f"--controllers={','.join(CONTROLLERS)}"]
    )
    return [
        str(binary),
        f"--kubeconfig={layout.controller_manager_kubeconfig}",
        "--leader-elect=false",
        "--secure-port=0",
        *controllers,
        "--v=1",
    ]


def scheduler_command(binary: Path, kubeconfig: Path) -> list[str]:
    """kube-scheduler as user system:kube-scheduler, alone (no leader election)."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        f"--bind-address={LOOPBACK}",
        "--secure-port=0",
        "--v=1",
    ]


def in_node(holder: int, argv: list[str]) -> list[str]:
    """``argv`` run inside the node's mount and network namespaces, held by ``holder``."""
    return ["nsenter", f"--target={holder}", "--mount", "--net", "--", *argv]


def containerd_command(binary: Path, node: node_config.NodeLayout) -> list[str]:
    return [str(binary), f"--config={node.containerd_config}"]


def kubelet_command(binary: Path, node: node_config.NodeLayout) -> list[str]:
    """The kubelet as node :data:`node_config.NODE_NAME`, with its own node credentials."""
    return [
        str(binary),
        f"--config={node.kubelet_config}",
        f"--kubeconfig={node.kubeconfig('kubelet')}",
        f"--root-dir={node.kubelet_root}",
        f"--hostname-override={node_config.NODE_NAME}",
        f"--node-ip={node_config.NODE_IP}",
        "--v=1",
    ]


def kube_proxy_command(binary: Path, node: node_config.NodeLayout) -> list[str]:
    return [str(binary), f"--config={node.kube_proxy_config}", "--v=1"]


def moto_command(python: Path, ports: Ports, host: str = LOOPBACK) -> list[str]:
    """moto's server: S3 and DynamoDB (and the rest of AWS) in one process, on
    ``host`` (with a node: the machine's end of its link, where pods reach it too)."""
    return [str(python), "-m", "moto.server", "-H", host, "-p", str(ports.moto)]


def runtime_command(python: Path, layout: Layout) -> list[str]:
    """The local runtime, standing in for the Spark Operator and the kubelet."""
    return [
        str(python),
        "-m",
        "featurekube._platform.runtime",
        f"--kubeconfig={layout.kubeconfig}",
        f"--work-dir={layout.runtime_dir}",
    ]


def operator_command(python: Path) -> list[str]:
    """featurekube's operator, alone (no peering), for the local platform."""
    return [
        str(python),
        "-m",
        "featurekube_operator",
        "--standalone",
        "--liveness",
        "",
        "--log-format",
        "plain",
    ]


def operator_environment(offline_uri: str, metrics_port: int) -> dict[str, str]:
    """Operator settings suited to a laptop: one backfill job per view, quick rounds."""
    return {
        "FEATUREKUBE_OFFLINE_URI": offline_uri,
        "FEATUREKUBE_TABLE_PREFIX": "featurekube.",
        "FEATUREKUBE_BACKFILL_WINDOW_SECONDS": str(400 * 86400),
        "FEATUREKUBE_RECONCILE_INTERVAL_SECONDS": "5",
        "FEATUREKUBE_MAX_WINDOWS_IN_FLIGHT": "1",
        "FEATUREKUBE_METRICS_PORT": str(metrics_port),
    }
