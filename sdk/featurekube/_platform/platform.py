"""The local platform as a whole: start, find again, stop; does I/O.

A platform lives in a state directory: certificates, logs, etcd's data, kubeconfigs,
and ``platform.json`` with its endpoints and process ids. Start order matters: etcd
before the API server, the API server before the controller-manager and the CRDs;
moto's server and Kafka are independent and start alongside (Kafka's jars are resolved
and its storage formatted in a background thread meanwhile).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from featurekube import errors
from featurekube._platform import (
    components,
    holders,
    kafka,
    kubeconfig,
    node,
    node_config,
    pki,
    processes,
    spark_operator,
)

__all__ = ["Endpoints", "LocalPlatform", "PlatformSettings", "default_state_dir"]

K8S_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
NODE_K8S_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler")
# Stopped in the reverse of this order.
START_ORDER = (
    "moto",
    "kafka",
    "node-namespace",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
    "runtime",
    "operator",
)

# With a node (endpoints kept by leases), the API server's graceful stop may wait up to
# 20 s to withdraw its own endpoint from the `kubernetes` Service (here it took the
# full 15 s every time); the platform's data goes with it, so nothing is lost by not
# waiting.
_STOP_GRACE = {"kube-apiserver": 3.0}
# How long a new CRD may go without any condition before `kubectl wait` can wait on it.
_CRD_CONDITIONS_SECONDS = 60.0

# moto accepts any credentials; these are the values its documentation uses.
AWS_ACCESS_KEY_ID = "testing"
AWS_SECRET_ACCESS_KEY = "testing"


def default_state_dir() -> Path:
    """``$FEATUREKUBE_STATE_DIR``, else ``~/.local/state/featurekube/dev``."""
    env = os.environ.get("FEATUREKUBE_STATE_DIR")
    return Path(env) if env else Path.home() / ".local" / "state" / "featurekube" / "dev"


@dataclass(frozen=True)
class PlatformSettings:
    """How to start a local platform."""

    state_dir: Path = field(default_factory=default_state_dir)
    """Where the platform keeps certificates, logs, data and its endpoints."""

    k8s_bin_dir: Path | None = None
    """Directory with etcd, kube-apiserver, kube-controller-manager and kubectl.
    None: ``$FEATUREKUBE_K8S_BIN``, else built or found by ``hack/k8s/build.sh``."""

    crd_dirs: tuple[Path, ...] = ()
    """Extra directories of CRD manifests to install, besides the Spark Operator's."""

    region: str = "us-east-1"
    """AWS region name the clients are told; moto serves any."""

    runtime: bool = True
    """Run the local runtime, which runs SparkApplications with spark-submit and
    feature-server Deployments as local processes. Tests that play those parts
    themselves turn it off."""

    operator_offline_uri: str | None = None
    """Also run featurekube's operator, with this offline store root (e.g.
    s3://featurekube-demo/offline); None: no operator."""

    audit: bool = False
    """Write the API server's audit log (request metadata) to logs/audit.log; for
    measuring who calls the API how often."""

    buckets: tuple[str, ...] = ("featurekube",)
    """S3 buckets made as the platform starts: by default the one of featurekube's
    default offline store (s3://featurekube/offline), where `featurekube materialize`
    writes unless told otherwise."""

    node: bool = False
    """Also run a real node: kube-scheduler, containerd with runc, the CNI bridge, the
    kubelet, kube-proxy and CoreDNS, in namespaces of their own (see
    :mod:`featurekube._platform.node_config`), with the controller-manager's default
    controllers. One machine runs one such node at a time."""

    spark_operator: bool = True
    """With a node, also install the Kubeflow Spark Operator there (see
    :mod:`featurekube._platform.spark_operator`) with the Spark image its applications
    run, when their images are built (``make spark-operator``); without them the node
    starts without it, and :attr:`Endpoints.spark_operator` is ''."""

    image_dir: Path | None = None
    """Where the built image archives are; None: ``hack/images/build.py``'s cache
    (:func:`featurekube._platform.spark_operator.default_image_dir`)."""

    kafka: bool = True
    """Also run Kafka: one KRaft node (broker and controller) on loopback, from Apache
    Kafka's Maven Central jars on this machine's Java (the first start downloads them,
    about 45 MB). Its address is ``FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS`` in
    :meth:`Endpoints.environment`."""

    start_timeout: float = 180.0
    """Seconds each component may take to become ready (the API server is the slow one)."""


@dataclass(frozen=True)
class Endpoints:
    """How to reach a running platform."""

    kubeconfig: Path
    kubeconfig_unprivileged: Path
    apiserver_url: str
    aws_endpoint_url: str
    region: str
    pids: Mapping[str, int]
    log_dir: Path
    started_by: str = ""
    """The command line of the process that started the platform."""
    started_at: str = ""
    """When it was started, ISO 8601 UTC."""
    node: str = ""
    """The name of the platform's node, '' when it runs none."""
    kafka_bootstrap_servers: str = ""
    """Kafka's ``host:port`` for clients' ``bootstrap.servers``, '' when it runs none."""
    kafka_pods_bootstrap_servers: str = ""
    """Kafka's ``host:port`` for the node's pods (the machine's end of the node's link),
    '' without a node or Kafka."""
    spark_operator: str = ""
    """The version of the Spark Operator installed on the node, '' when none is."""

    def describe_start(self) -> str:
        """``started at ... by `...` `` as far as it is known."""
        parts = []
        if self.started_at:
            parts.append(f"at {self.started_at}")
        if self.started_by:
            parts.append(f"by `{self.started_by}`")
        return "started " + " ".join(parts) if parts else ""

    def environment(self) -> dict[str, str]:
        """The variables that point kubectl, kopf, boto3, pyarrow, deltalake and Spark
        here, and Kafka's clients to ``$FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS``; with a
        node, ``$FEATUREKUBE_KAFKA_PODS_BOOTSTRAP_SERVERS`` is the address its pods reach
        Kafka at (the chart's ``kafka.bootstrapServers`` there)."""
        return {
            **_aws_environment(self.kubeconfig, self.aws_endpoint_url, self.region),
            **_kafka_environment(self.kafka_bootstrap_servers),
            **_kafka_pods_environment(self.kafka_pods_bootstrap_servers),
        }

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str) -> Endpoints:
        data = json.loads(text)
        for key in ("kubeconfig", "kubeconfig_unprivileged", "log_dir"):
            data[key] = Path(data[key])
        return cls(**data)


def _find_repo_root() -> Path | None:
    for start in (Path.cwd(), Path(__file__).resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "hack" / "k8s" / "build.sh").is_file():
                return candidate
    return None


def resolve_k8s_bin_dir(settings: PlatformSettings) -> Path:
    """The directory holding the Kubernetes binaries, building them if need be."""
    if settings.k8s_bin_dir is not None:
        bin_dir = settings.k8s_bin_dir
    elif os.environ.get("FEATUREKUBE_K8S_BIN"):
        bin_dir = Path(os.environ["FEATUREKUBE_K8S_BIN"])
    else:
        root = _find_repo_root()
        if root is None:
            raise errors.PlatformError(
                "cannot find the Kubernetes binaries: set FEATUREKUBE_K8S_BIN to a directory "
                "holding etcd, kube-apiserver, kube-controller-manager and kubectl, or run "
                "from a featurekube checkout (hack/k8s/build.sh builds them)"
            )
        built = subprocess.run(
            [str(root / "hack" / "k8s" / "build.sh")], stdout=subprocess.PIPE, text=True
        )
        if built.returncode != 0:
            raise errors.PlatformError(
                f"hack/k8s/build.sh failed with exit status {built.returncode}; "
                "its output above says why"
            )
        bin_dir = Path(built.stdout.strip().splitlines()[-1])
    wanted = (*K8S_BINARIES, *NODE_K8S_BINARIES) if settings.node else K8S_BINARIES
    missing = [b for b in wanted if not (bin_dir / b).is_file()]
    if missing:
        raise errors.PlatformError(
            f"{bin_dir} lacks {', '.join(missing)}: run `make platform-bin` to build them"
        )
    return bin_dir


class LocalPlatform:
    """A Kubernetes API (etcd, kube-apiserver, kube-controller-manager), moto's S3 and
    DynamoDB, and Kafka on loopback, as background processes of one state directory."""

    def __init__(self, settings: PlatformSettings | None = None) -> None:
        self.settings = settings or PlatformSettings()
        self.layout = components.Layout(self.settings.state_dir)

    # -- finding a running platform ------------------------------------------------

    def endpoints(self) -> Endpoints | None:
        """The endpoints of the platform running in this state directory, or None."""
        try:
            found = Endpoints.from_json(self.layout.state_file.read_text())
        except (OSError, ValueError, TypeError):
            return None
        if all(processes.is_running(pid, _executable(name)) for name, pid in found.pids.items()):
            return found
        return None

    # -- starting ------------------------------------------------------------------

    def start(self) -> Endpoints:
        """Start every component, wait until each is ready, and return the endpoints.

        Idempotent: a platform already running in the state directory is returned as
        is, unless it lacks the node these settings ask for (then
        :class:`~featurekube.errors.PlatformError`). A component that fails stops the
        ones already started and raises :class:`~featurekube.errors.ComponentStartError`
        with the tail of its log.
        """
        running = self.endpoints()
        if running is not None:
            self.check_reusable(running)
            return running
        self.stop()  # whatever is left of an earlier, broken start
        if self.settings.node:
            node.check_free(self.layout.root)
        bin_dir = resolve_k8s_bin_dir(self.settings)
        node_bin_dir = node.resolve_node_bin_dir(_find_repo_root()) if self.settings.node else None
        self._reset_state_dir()
        ports = components.Ports(*(processes.free_port() for _ in range(4)))
        kafka_ports = (
            kafka.KafkaPorts(processes.free_port(), processes.free_port())
            if self.settings.kafka
            else None
        )
        kafka_pods = (
            kafka.PodListener(node_config.HOST_IP, processes.free_port())
            if kafka_ports is not None and self.settings.node
            else None
        )
        self._write_pki(ports)
        pids: dict[str, int] = {}
        spark_operator_version = ""
        try:
            if node_bin_dir is not None:
                self._start_node_namespace(node_bin_dir, pids)
            self._start_components(bin_dir, ports, pids, kafka_ports, kafka_pods)
            if node_bin_dir is not None:
                self._start_node(bin_dir, node_bin_dir, pids)
                spark_operator_version = self._start_spark_operator(bin_dir, node_bin_dir, pids)
        except BaseException:
            self._stop_pids(pids)
            raise
        found = Endpoints(
            kubeconfig=self.layout.kubeconfig,
            kubeconfig_unprivileged=self.layout.kubeconfig_unprivileged,
            apiserver_url=self._apiserver_url(ports),
            aws_endpoint_url=self._moto_url(ports),
            region=self.settings.region,
            pids=pids,
            log_dir=self.layout.logs,
            started_by=holders.process_command(os.getpid()),
            started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            node=node_config.NODE_NAME if self.settings.node else "",
            kafka_bootstrap_servers=(
                kafka.bootstrap_servers(kafka_ports) if kafka_ports is not None else ""
            ),
            kafka_pods_bootstrap_servers=(
                kafka.pods_bootstrap_servers(kafka_pods) if kafka_pods is not None else ""
            ),
            spark_operator=spark_operator_version,
        )
        self.layout.state_file.write_text(found.to_json())
        return found

    def check_reusable(self, running: Endpoints) -> None:
        """Refuse a running platform without a node when these settings ask for one.

        One without Kafka is reused as it is: its ``environment()`` names no broker, and
        ``featurekube dev up`` says so.
        """
        if self.settings.node and not running.node:
            raise errors.PlatformError(
                f"the local platform in {self.layout.root} is running without a node: stop "
                f"it (featurekube dev down --state-dir {self.layout.root}) and start it "
                "again with --node, or use another --state-dir"
            )

    def load_images(self, archives: Sequence[Path]) -> None:
        """Import OCI image archives (:func:`featurekube._platform.oci.write_image`)
        into the running node, where pods use them with ``imagePullPolicy: Never``."""
        running = self.endpoints()
        if running is None or not running.node:
            raise errors.PlatformError(
                f"no local platform with a node runs in {self.layout.root}: "
                "`featurekube dev up --node` starts one"
            )
        node_bin_dir = node.resolve_node_bin_dir(_find_repo_root())
        node.import_images(
            running.pids["node-namespace"],
            node_bin_dir / "ctr",
            self.node_layout.containerd_socket,
            list(archives),
        )

    # -- holding ---------------------------------------------------------------------

    def hold(self) -> contextlib.AbstractContextManager[holders.Holder]:
        """While the block runs, this process holds the platform: another process's
        :meth:`stop` refuses to stop it unless forced."""
        return holders.hold(self.layout.root)

    def holders(self) -> list[holders.Holder]:
        """The live processes other than this one that hold the platform."""
        return holders.live_holders(self.layout.root)

    def _reset_state_dir(self) -> None:
        root = self.layout.root
        for child in (
            self.layout.etcd_data,
            self.layout.pki,
            self.layout.logs,
            self.node_layout.root,
            self.kafka_layout.root,
        ):
            shutil.rmtree(child, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        self.layout.pki.mkdir(mode=0o700)
        self.layout.logs.mkdir()

    def _write_pki(self, ports: components.Ports) -> None:
        now = dt.datetime.now(dt.UTC)
        serving_ca = pki.new_authority("featurekube-dev-serving-ca", now)
        client_ca = pki.new_authority("featurekube-dev-client-ca", now)
        # The names and addresses a real cluster's API server certificate carries, so
        # that in-cluster clients (Service IP, kubernetes.default.svc...) verify it.
        hosts = (
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{node_config.CLUSTER_DOMAIN}",
            node_config.KUBERNETES_SERVICE_IP,
        ) + ((node_config.HOST_IP,) if self.settings.node else ())
        serving = pki.issue_certificate(serving_ca, "kube-apiserver", now, hosts=hosts, server=True)
        sa = pki.new_rsa_key()
        files = {
            "serving-ca.crt": serving_ca.pair.cert_pem,
            "client-ca.crt": client_ca.pair.cert_pem,
            "apiserver.crt": serving.cert_pem,
            "apiserver.key": serving.key_pem,
            "sa.pub": sa.cert_pem,
            "sa.key": sa.key_pem,
        }
        users: dict[str, tuple[str, tuple[str, ...], Path]] = {
            # name: (user, groups, kubeconfig path)
            "admin": ("admin", ("system:masters",), self.layout.kubeconfig),
            "unprivileged": (
                "featurekube-dev-unprivileged",
                ("featurekube:unprivileged",),
                self.layout.kubeconfig_unprivileged,
            ),
            # Its own identity, so audit and logs tell it apart; full rights, since the
            # garbage collector must see and delete every kind.
            "controller-manager": (
                "system:kube-controller-manager",
                ("system:masters",),
                self.layout.controller_manager_kubeconfig,
            ),
        }
        if self.settings.node:
            node_layout = self.node_layout
            users |= {
                # Each node part with its own identity and no more rights than a real
                # cluster gives it: the kubelet as a node (Node authorizer and
                # NodeRestriction), the others through Kubernetes' default roles.
                "kubelet": (
                    f"system:node:{node_config.NODE_NAME}",
                    ("system:nodes",),
                    node_layout.kubeconfig("kubelet"),
                ),
                "kube-proxy": ("system:kube-proxy", (), node_layout.kubeconfig("kube-proxy")),
                "kube-scheduler": (
                    "system:kube-scheduler",
                    (),
                    node_layout.kubeconfig("kube-scheduler"),
                ),
            }
            # The API server's identity towards the kubelet, and the kubelet's serving
            # certificate, which the API server checks against the serving CA.
            kubelet_client = pki.issue_certificate(
                client_ca, "kube-apiserver-kubelet-client", now, organizations=("system:masters",)
            )
            kubelet_serving = pki.issue_certificate(
                serving_ca,
                f"system:node:{node_config.NODE_NAME}",
                now,
                hosts=(node_config.NODE_IP, node_config.NODE_NAME),
                server=True,
            )
            files |= {
                "apiserver-kubelet-client.crt": kubelet_client.cert_pem,
                "apiserver-kubelet-client.key": kubelet_client.key_pem,
                "kubelet-serving.crt": kubelet_serving.cert_pem,
                "kubelet-serving.key": kubelet_serving.key_pem,
            }
        for key, (user, groups, path) in users.items():
            cert = pki.issue_certificate(client_ca, user, now, organizations=groups)
            files[f"{key}.crt"] = cert.cert_pem
            files[f"{key}.key"] = cert.key_pem
            doc = kubeconfig.render_kubeconfig(
                server=self._apiserver_url(ports),
                ca_pem=serving_ca.pair.cert_pem,
                user=user,
                client_cert_pem=cert.cert_pem,
                client_key_pem=cert.key_pem,
            )
            _write_private(path, yaml.safe_dump(doc, sort_keys=False).encode())
        files["audit-policy.yaml"] = components.AUDIT_POLICY.encode()
        for name, data in files.items():
            _write_private(self.layout.pki_file(name), data)

    def _start_components(
        self,
        bin_dir: Path,
        ports: components.Ports,
        pids: dict[str, int],
        kafka_ports: kafka.KafkaPorts | None,
        kafka_pods: kafka.PodListener | None = None,
    ) -> None:
        # Leaving the block waits for the background start, so a failure anywhere still
        # finds Kafka's pid in `pids` to stop; `abandon` cuts that wait short.
        abandon = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(1, "featurekube-kafka") as background:
            kafka_started = (
                background.submit(self._start_kafka, kafka_ports, kafka_pods, pids, abandon)
                if kafka_ports is not None
                else None
            )
            try:
                self._start_core(bin_dir, ports, pids)
            except BaseException:
                abandon.set()
                raise
            if kafka_ports is not None and kafka_started is not None:
                kafka_started.result()
                self._await(
                    "kafka",
                    pids["kafka"],
                    self.settings.start_timeout,
                    lambda: kafka.ready(kafka_ports),
                )
        self._start_featurekube(ports, pids, kafka_ports)

    @property
    def kafka_layout(self) -> kafka.KafkaLayout:
        return kafka.KafkaLayout(self.layout.root / "kafka")

    def _start_kafka(
        self,
        kafka_ports: kafka.KafkaPorts,
        kafka_pods: kafka.PodListener | None,
        pids: dict[str, int],
        abandon: threading.Event,
    ) -> None:
        log = self.layout.log("kafka")
        java = kafka.find_java()
        libs = kafka.resolve_jars(java, log)
        if abandon.is_set():
            return
        archives = kafka.class_archives(java, libs, log, self.settings.start_timeout)
        if abandon.is_set():
            return
        kafka.prepare(
            self.kafka_layout,
            kafka_ports,
            java,
            libs,
            log,
            kafka.ClassArchive(archives.format) if archives is not None else None,
            # With a node, pods reach the broker where they reach moto.
            pods=kafka_pods,
        )
        pids["kafka"] = kafka.spawn(
            self.kafka_layout,
            java,
            libs,
            log,
            kafka.ClassArchive(archives.broker) if archives is not None else None,
        )

    def _start_core(self, bin_dir: Path, ports: components.Ports, pids: dict[str, int]) -> None:
        layout, timeout = self.layout, self.settings.start_timeout
        pids["moto"] = processes.spawn(
            components.moto_command(Path(sys.executable), ports, self._moto_host),
            layout.log("moto"),
        )
        pids["etcd"] = processes.spawn(
            components.etcd_command(bin_dir / "etcd", layout, ports), layout.log("etcd")
        )
        etcd_health = f"http://{components.LOOPBACK}:{ports.etcd_client}/health"
        self._await("etcd", pids["etcd"], timeout, lambda: processes.http_ok(etcd_health))
        pids["kube-apiserver"] = processes.spawn(
            components.apiserver_command(
                bin_dir / "kube-apiserver",
                layout,
                ports,
                audit=self.settings.audit,
                node=self.settings.node,
            ),
            layout.log("kube-apiserver"),
        )
        self._await(
            "kube-apiserver",
            pids["kube-apiserver"],
            timeout,
            lambda: (
                self._api_ok(ports, "/readyz") and self._api_ok(ports, "/api/v1/namespaces/default")
            ),
        )
        pids["kube-controller-manager"] = processes.spawn(
            components.controller_manager_command(
                bin_dir / "kube-controller-manager", layout, node=self.settings.node
            ),
            layout.log("kube-controller-manager"),
        )
        moto_ready = f"{self._moto_url(ports)}/moto-api/"
        self._await("moto", pids["moto"], timeout, lambda: processes.http_ok(moto_ready))
        self._create_buckets(self._moto_url(ports))
        self._install_crds(bin_dir / "kubectl")
        # The controller-manager has no health port here (--secure-port=0); that it
        # is still up after the CRDs went in shows it got past its start-up checks.
        if not processes.is_running(pids["kube-controller-manager"]):
            raise errors.ComponentStartError(
                "kube-controller-manager",
                "it exited",
                processes.tail(layout.log("kube-controller-manager")),
            )

    def _start_featurekube(
        self, ports: components.Ports, pids: dict[str, int], kafka_ports: kafka.KafkaPorts | None
    ) -> None:
        layout = self.layout
        platform_env = _environment(layout, ports, self.settings.region) | _kafka_environment(
            kafka.bootstrap_servers(kafka_ports) if kafka_ports is not None else ""
        )
        if self.settings.runtime:
            environment = {**os.environ, **platform_env}
            pids["runtime"] = processes.spawn(
                components.runtime_command(Path(sys.executable), layout),
                layout.log("runtime"),
                env=environment,
            )
        if self.settings.operator_offline_uri:
            operator_env = components.operator_environment(
                self.settings.operator_offline_uri, processes.free_port()
            )
            pids["operator"] = processes.spawn(
                components.operator_command(Path(sys.executable)),
                layout.log("operator"),
                env={**os.environ, **platform_env, **operator_env},
            )

    @property
    def _moto_host(self) -> str:
        """Where moto listens: on loopback, or with a node on the machine's end of the
        node's link, so that pods (the Spark drivers and executors, the feature
        servers) reach S3 and DynamoDB there as the host's clients do."""
        return node_config.HOST_IP if self.settings.node else components.LOOPBACK

    def _moto_url(self, ports: components.Ports) -> str:
        return f"http://{self._moto_host}:{ports.moto}"

    def _apiserver_url(self, ports: components.Ports) -> str:
        host = node_config.HOST_IP if self.settings.node else components.LOOPBACK
        return f"https://{host}:{ports.apiserver}"

    # -- the node ----------------------------------------------------------------------

    @property
    def node_layout(self) -> node_config.NodeLayout:
        return node_config.NodeLayout(self.layout.root / "node")

    def _start_node_namespace(self, node_bin_dir: Path, pids: dict[str, int]) -> None:
        """The node's namespaces and link first: the API server listens on that link."""
        node.prepare(self.node_layout, node_bin_dir / "cni", node_config.Images(), self.layout.pki)
        pids["node-namespace"] = node.create_namespace(
            self.node_layout, self.layout.root, self.layout.log("node-namespace")
        )

    def _start_node(self, bin_dir: Path, node_bin_dir: Path, pids: dict[str, int]) -> None:
        layout, node_layout, timeout = self.layout, self.node_layout, self.settings.start_timeout
        images = node_config.Images()
        holder = pids["node-namespace"]
        archives = node.build_images(node_bin_dir, images)
        pids["kube-scheduler"] = processes.spawn(
            components.scheduler_command(
                bin_dir / "kube-scheduler", node_layout.kubeconfig("kube-scheduler")
            ),
            layout.log("kube-scheduler"),
        )
        # containerd finds its shim, runc and nft (kube-proxy's) on the PATH.
        environment = {
            "PATH": f"{node_bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TMPDIR": str(node_layout.tmp),
        }
        pids["containerd"] = processes.spawn(
            components.in_node(
                holder, components.containerd_command(node_bin_dir / "containerd", node_layout)
            ),
            layout.log("containerd"),
            env=environment,
        )
        ctr = [
            *components.in_node(holder, [str(node_bin_dir / "ctr")]),
            f"--address={node_layout.containerd_socket}",
            "version",
        ]
        self._await(
            "containerd",
            pids["containerd"],
            timeout,
            lambda: subprocess.run(ctr, capture_output=True).returncode == 0,
        )
        node.import_images(holder, node_bin_dir / "ctr", node_layout.containerd_socket, archives)
        pids["kubelet"] = processes.spawn(
            components.in_node(
                holder, components.kubelet_command(bin_dir / "kubelet", node_layout)
            ),
            layout.log("kubelet"),
            env=environment,
        )
        kubectl = [str(bin_dir / "kubectl"), f"--kubeconfig={layout.kubeconfig}"]
        ready = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        node_ready = [*kubectl, "get", "node", node_config.NODE_NAME, "-o", ready]
        self._await(
            "kubelet",
            pids["kubelet"],
            timeout,
            lambda: subprocess.run(node_ready, capture_output=True, text=True).stdout == "True",
        )
        pids["kube-proxy"] = processes.spawn(
            components.in_node(
                holder, components.kube_proxy_command(bin_dir / "kube-proxy", node_layout)
            ),
            layout.log("kube-proxy"),
            env=environment,
        )
        proxy_health = components.in_node(holder, ["nft", "list", "table", "ip", "kube-proxy"])
        self._await(
            "kube-proxy",
            pids["kube-proxy"],
            timeout,
            lambda: subprocess.run(proxy_health, capture_output=True).returncode == 0,
        )
        manifest = node_layout.manifests / "coredns.yaml"
        manifest.write_text(node_config.manifest_text(node_config.coredns_manifests(images)))
        for args in (
            ["apply", "--server-side", "-f", str(manifest)],
            [
                "-n",
                "kube-system",
                "rollout",
                "status",
                "deployment/coredns",
                f"--timeout={timeout:.0f}s",
            ],
        ):
            done = subprocess.run([*kubectl, *args], capture_output=True, text=True)
            if done.returncode != 0:
                raise errors.ComponentStartError(
                    "coredns",
                    f"`kubectl {' '.join(args)}` exited with {done.returncode}",
                    done.stdout + done.stderr + "\n" + processes.tail(layout.log("kubelet")),
                )

    def _start_spark_operator(
        self, bin_dir: Path, node_bin_dir: Path, pids: Mapping[str, int]
    ) -> str:
        """Load the Spark Operator's image and the Spark image into the node and install
        the operator; return its version, or '' when it is not wanted or not built."""
        if not self.settings.spark_operator:
            return ""
        archives = spark_operator.find_archives(
            self.settings.image_dir or spark_operator.default_image_dir()
        )
        if archives is None:
            return ""
        node.import_images(
            pids["node-namespace"],
            node_bin_dir / "ctr",
            self.node_layout.containerd_socket,
            archives.all(),
        )
        spark_operator.install(
            bin_dir / "kubectl",
            self.layout.kubeconfig,
            self.node_layout.manifests / "spark-operator.yaml",
            self.settings.start_timeout,
        )
        return spark_operator.VERSION

    def _await(self, name: str, pid: int, timeout: float, ready: Callable[[], bool]) -> None:
        if processes.wait_until(ready, timeout, abort=lambda: not processes.is_running(pid)):
            return
        reason = (
            "it exited"
            if not processes.is_running(pid)
            else f"it was not ready within {timeout:.0f} s"
        )
        raise errors.ComponentStartError(name, reason, processes.tail(self.layout.log(name)))

    def _create_buckets(self, endpoint: str) -> None:
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=self.settings.region,
            aws_access_key_id=AWS_ACCESS_KEY_ID,
            aws_secret_access_key=AWS_SECRET_ACCESS_KEY,
        )
        where = (
            {}
            if self.settings.region == "us-east-1"
            else {"CreateBucketConfiguration": {"LocationConstraint": self.settings.region}}
        )
        for bucket in self.settings.buckets:
            s3.create_bucket(Bucket=bucket, **where)

    def _api_ok(self, ports: components.Ports, path: str) -> bool:
        context = ssl.create_default_context(cafile=self.layout.pki_file("serving-ca.crt"))
        context.load_cert_chain(
            self.layout.pki_file("admin.crt"), self.layout.pki_file("admin.key")
        )
        return processes.http_ok(self._apiserver_url(ports) + path, context)

    def _install_crds(self, kubectl: Path) -> None:
        crd_dirs = [_bundled_crd_dir(), *self.settings.crd_dirs]
        for crd_dir in crd_dirs:
            if not any(crd_dir.glob("*.yaml")):
                continue
            base = [str(kubectl), f"--kubeconfig={self.layout.kubeconfig}"]
            _kubectl(base, ["apply", "--server-side", "--force-conflicts", "-f", str(crd_dir)])
            wait = ["wait", "--for=condition=Established", "--timeout=60s", "-f", str(crd_dir)]
            # A CRD read before the API server has set any condition has none at all,
            # which `kubectl wait` reports as an error rather than waiting on.
            deadline = time.monotonic() + _CRD_CONDITIONS_SECONDS
            while (done := _kubectl(base, wait, check=False)).returncode != 0:
                if "accessor error" not in done.stderr or time.monotonic() > deadline:
                    raise _crd_error(wait, done)
                time.sleep(1)

    # -- stopping --------------------------------------------------------------------

    def stop(self, *, force: bool = False) -> bool:
        """Stop every component recorded in the state directory; keep the logs. Returns
        whether anything was recorded there to stop.

        Raises :class:`~featurekube.errors.PlatformInUseError`, stopping nothing, when
        another live process holds the platform (:meth:`hold`), unless ``force``.
        """
        try:
            recorded = Endpoints.from_json(self.layout.state_file.read_text())
        except (OSError, ValueError, TypeError):
            return False
        users = self.holders()
        if users and not force and self.endpoints() is not None:
            raise errors.PlatformInUseError(
                f"the local platform in {self.layout.root} is in use by "
                + ", ".join(holder.describe() for holder in users)
                + ": stop that first, or run `featurekube dev down --force` to stop the "
                "platform anyway"
            )
        self._stop_pids(dict(recorded.pids))
        kafka.remove_data(self.kafka_layout)
        self.layout.state_file.unlink(missing_ok=True)
        return True

    def _stop_pids(self, pids: Mapping[str, int]) -> None:
        for name in reversed(START_ORDER):
            if name == "node-namespace" and name in pids:
                # The node's parts have stopped: remove what they leave behind.
                node.cleanup(pids[name], self.layout.root)
            elif name in pids:
                processes.stop(pids[name], _executable(name), timeout=_STOP_GRACE.get(name, 15.0))


def _aws_environment(kubeconfig: Path, aws_endpoint_url: str, region: str) -> dict[str, str]:
    return {
        "KUBECONFIG": str(kubeconfig),
        "AWS_ENDPOINT_URL": aws_endpoint_url,
        "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        # delta-rs (object_store) refuses plain HTTP endpoints unless told.
        "AWS_ALLOW_HTTP": "true",
    }


def _kafka_environment(bootstrap_servers: str) -> dict[str, str]:
    return {"FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers} if bootstrap_servers else {}


def _kafka_pods_environment(bootstrap_servers: str) -> dict[str, str]:
    return (
        {"FEATUREKUBE_KAFKA_PODS_BOOTSTRAP_SERVERS": bootstrap_servers} if bootstrap_servers else {}
    )


def _environment(layout: components.Layout, ports: components.Ports, region: str) -> dict[str, str]:
    return _aws_environment(layout.kubeconfig, f"http://{components.LOOPBACK}:{ports.moto}", region)


def _executable(component: str) -> str:
    if component == "node-namespace":
        return "sleep"
    if component == "kafka":
        return "java"
    return "python" if component in ("moto", "runtime", "operator") else component


def _bundled_crd_dir() -> Path:
    return Path(str(resources.files("featurekube._platform") / "crds"))


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _kubectl(
    base: Sequence[str], args: Sequence[str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``kubectl`` (``base`` holds the binary and kubeconfig) with ``args``; with
    ``check``, a failure raises the CRD installation's error."""
    done = subprocess.run([*base, *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise _crd_error(args, done)
    return done


def _crd_error(
    args: Sequence[str], done: subprocess.CompletedProcess[str]
) -> errors.ComponentStartError:
    return errors.ComponentStartError(
        "CRD installation",
        f"`kubectl {' '.join(args)}` exited with {done.returncode}",
        done.stdout + done.stderr,
    )
