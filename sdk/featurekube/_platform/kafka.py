"""The local platform's Kafka: one KRaft node (broker and controller in one JVM, no
ZooKeeper) on loopback, run from Apache Kafka's Maven Central jars. With a node, the
broker also listens on the machine's end of the node's link (:class:`PodListener`), the
address the node's pods reach the platform at, and tells clients that reach it there
that address; the machine's clients keep the loopback listener.

The first half is pure (what to fetch, the configuration files, the command lines,
the wire bytes of the readiness probe); the second does I/O: it resolves the jars with
Apache Ivy, the resolver Spark's ``spark.jars.packages`` uses (pyspark carries its
jar), into a cache keyed by Kafka's version, formats the node's storage with a fresh
cluster id, starts the broker, and waits until it answers a request.

Loading and verifying Kafka's classes is most of a JVM's start on two cores, so the
first start on a machine also records them in class-data-sharing archives (AppCDS,
kept beside the jars, keyed by the Java installation) by starting and stopping a
throwaway node; later starts map the archives instead, several seconds faster on a
loaded machine. A JVM that cannot use an archive ignores it.

The settings suit tests on a small machine: one partition and one replica by default,
small log segments and a bounded retention, a bounded heap, few threads.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from featurekube import errors
from featurekube._platform import processes

__all__ = [
    "KAFKA_VERSION",
    "ClassArchive",
    "ClassArchives",
    "KafkaLayout",
    "KafkaPorts",
    "PodListener",
    "api_versions_request",
    "bootstrap_servers",
    "broker_command",
    "class_archives",
    "format_command",
    "ivy_module",
    "new_cluster_id",
    "parse_api_versions_response",
    "pods_bootstrap_servers",
    "prepare",
    "ready",
    "render_log4j2_properties",
    "render_server_properties",
    "resolve_jars",
    "spawn",
]

KAFKA_VERSION = "4.4.0"
"""Apache Kafka's version (artifact ``org.apache.kafka:kafka_2.13``)."""

# Kafka logs through SLF4J 1.7; without this binding its log would be empty.
LOG4J_VERSION = "2.25.5"

LOOPBACK = "127.0.0.1"
NODE_ID = 1
BROKER_HEAP = "512m"
# The storage tool runs for a second or two: a small heap and no optimizing compiler.
FORMAT_JVM_OPTIONS = ("-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
# A test broker's heap is small and mostly idle: the serial collector keeps its
# footprint down where Kafka's usual G1 would reserve more, and the quick compiler
# alone starts it sooner and uses less memory; a broker on loopback is never the
# slow part of a test or a benchmark at the rates a laptop can produce.
BROKER_JVM_OPTIONS = (
    "-Xms64m",
    f"-Xmx{BROKER_HEAP}",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)
API_VERSIONS_KEY = 18
METADATA_KEY = 3
CLIENT_ID = "featurekube-dev"
# An answer to the probe is a few hundred bytes; anything larger is not Kafka.
MAX_PROBE_RESPONSE = 64 * 1024
# About 45 MB from Maven Central, and the storage tool: generous bounds for a slow
# network and a loaded machine.
RESOLVE_TIMEOUT_SECONDS = 900.0
FORMAT_TIMEOUT_SECONDS = 180.0


@dataclass(frozen=True)
class KafkaPorts:
    """Loopback TCP ports of the node: clients' (the broker's) and the controller's."""

    broker: int
    controller: int


@dataclass(frozen=True)
class KafkaLayout:
    """Where the node keeps its files, under ``root`` in the platform's state directory."""

    root: Path

    @property
    def data(self) -> Path:
        """The log directory: topics' segments and the KRaft metadata log."""
        return self.root / "data"

    @property
    def server_properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j2_properties(self) -> Path:
        return self.root / "log4j2.properties"


@dataclass(frozen=True)
class PodListener:
    """The broker's second listener, for the node's pods: ``host`` is one address of
    this machine (the machine's end of the node's link), never a wildcard or loopback,
    so the broker is reachable by the node and by nothing beyond the machine's own
    addresses; ``port`` differs from the loopback listener's, as Kafka requires."""

    host: str
    port: int

    def __post_init__(self) -> None:
        try:
            address = ipaddress.IPv4Address(self.host)
        except ValueError:
            raise ValueError(
                f"Kafka's listener for the node's pods: {self.host!r} is not an IPv4 address"
            ) from None
        if address.is_unspecified or address.is_loopback:
            raise ValueError(
                f"Kafka's listener for the node's pods: {self.host} would listen on "
                "every address or on loopback only; give the machine's end of the node's link"
            )
        if not 0 < self.port < 65536:
            raise ValueError(f"Kafka's listener for the node's pods: port {self.port}")


def bootstrap_servers(ports: KafkaPorts) -> str:
    """What the machine's clients are given as ``bootstrap.servers``."""
    return f"{LOOPBACK}:{ports.broker}"


def pods_bootstrap_servers(listener: PodListener) -> str:
    """What the node's pods are given as ``bootstrap.servers``."""
    return f"{listener.host}:{listener.port}"


def new_cluster_id(seed: bytes | None = None) -> str:
    """A KRaft cluster id: 16 bytes, URL-safe base64 without padding (22 characters),
    as ``kafka-storage random-uuid`` prints. ``seed`` (16 bytes) makes it repeatable.

    >>> new_cluster_id(bytes(range(16)))
    'AAECAwQFBgcICQoLDA0ODw'
    """
    raw = seed if seed is not None else uuid.uuid4().bytes
    if len(raw) != 16:
        raise ValueError(f"a Kafka cluster id is 16 bytes, got {len(raw)}")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def ivy_module(version: str = KAFKA_VERSION) -> str:
    """An Ivy module file whose dependencies are the broker's runtime classpath."""
    return f"""<ivy-module version="2.0">
  <info organisation="dev.featurekube" module="kafka-broker" revision="{version}"/>
  <dependencies>
    <dependency org="org.apache.kafka" name="kafka_2.13" rev="{version}" conf="default->default"/>
    <dependency org="org.apache.logging.log4j" name="log4j-slf4j-impl" rev="{LOG4J_VERSION}"
                conf="default->default"/>
  </dependencies>
</ivy-module>
"""


def render_server_properties(
    layout: KafkaLayout, ports: KafkaPorts, pods: PodListener | None = None
) -> str:
    """``server.properties`` of a combined broker and controller on loopback, with
    ``pods`` also a listener ``NODE`` there, advertised as itself: a client that
    bootstraps from either address is sent on to the same one.

    Internal topics get one partition and one replica (the defaults of 50 offsets
    partitions would make the first consumer group wait seconds), new topics one
    partition, and a partition's log is kept in 16 MiB segments, at most 256 MiB or
    one day of it.
    """
    broker = f"PLAINTEXT://{LOOPBACK}:{ports.broker}"
    controller = f"{LOOPBACK}:{ports.controller}"
    node = [f"NODE://{pods_bootstrap_servers(pods)}"] if pods is not None else []
    settings: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": NODE_ID,
        "controller.quorum.voters": f"{NODE_ID}@{controller}",
        "listeners": ",".join([broker, *node, f"CONTROLLER://{controller}"]),
        "advertised.listeners": ",".join([broker, *node]),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": ",".join(
            ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT", *(["NODE:PLAINTEXT"] if node else [])]
        ),
        "log.dirs": str(layout.data),
        "num.partitions": 1,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "share.coordinator.state.topic.num.partitions": 1,
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "true",
        "log.segment.bytes": 16 * 1024 * 1024,
        "log.retention.bytes": 256 * 1024 * 1024,
        "log.retention.ms": 24 * 3600 * 1000,
        "log.retention.check.interval.ms": 60_000,
        "num.network.threads": 2,
        "num.io.threads": 2,
        "background.threads": 2,
        "num.recovery.threads.per.data.dir": 1,
        "num.replica.fetchers": 1,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def render_log4j2_properties() -> str:
    """Log4j 2 configuration: INFO to standard output (the component's log file), but
    requests and the dumps of every client's configuration only when they go wrong."""
    return """status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.request.additivity = false
logger.request.appenderRef.stdout.ref = STDOUT
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""


@dataclass(frozen=True)
class ClassArchive:
    """How a JVM uses a class-data-sharing archive: map ``path``, or with ``record``
    write the classes it loaded there as it exits."""

    path: Path
    record: bool = False

    def option(self) -> str:
        flag = "ArchiveClassesAtExit" if self.record else "SharedArchiveFile"
        return f"-XX:{flag}={self.path}"


def _java_base(
    java: Path, libs: Path, layout: KafkaLayout, archive: ClassArchive | None
) -> list[str]:
    return [
        str(java),
        *([archive.option()] if archive is not None else []),
        f"-Dlog4j2.configurationFile={layout.log4j2_properties}",
        # The JVM expands a classpath entry ending in '*' to every jar in the directory.
        "-cp",
        str(libs / "*"),
    ]


def format_command(
    java: Path,
    libs: Path,
    layout: KafkaLayout,
    cluster_id: str,
    archive: ClassArchive | None = None,
) -> list[str]:
    """``kafka-storage format``: write the node's identity and the cluster's first
    metadata into an empty log directory."""
    base = _java_base(java, libs, layout, archive)
    return [
        base[0],
        *FORMAT_JVM_OPTIONS,
        *base[1:],
        "kafka.tools.StorageTool",
        "format",
        f"--cluster-id={cluster_id}",
        f"--config={layout.server_properties}",
    ]


def broker_command(
    java: Path, libs: Path, layout: KafkaLayout, archive: ClassArchive | None = None
) -> list[str]:
    """The node itself: ``kafka-server-start server.properties``."""
    base = _java_base(java, libs, layout, archive)
    return [base[0], *BROKER_JVM_OPTIONS, *base[1:], "kafka.Kafka", str(layout.server_properties)]


def api_versions_request(correlation_id: int) -> bytes:
    """An ApiVersions v0 request, size-prefixed: the first thing every client sends,
    and one a broker answers only once it is processing requests."""
    client = CLIENT_ID.encode()
    body = struct.pack(">hhih", API_VERSIONS_KEY, 0, correlation_id, len(client)) + client
    return struct.pack(">i", len(body)) + body


def parse_api_versions_response(payload: bytes, correlation_id: int) -> dict[int, tuple[int, int]]:
    """The APIs a broker serves (key to lowest and highest version) from an ApiVersions
    v0 response without its size prefix; ValueError if it is not one, or an error."""
    if len(payload) < 10:
        raise ValueError(f"an ApiVersions response is at least 10 bytes, got {len(payload)}")
    got_id, error_code, count = struct.unpack_from(">ihi", payload)
    if got_id != correlation_id:
        raise ValueError(f"correlation id {got_id} answers no request of ours ({correlation_id})")
    if error_code != 0:
        raise ValueError(f"the broker answered ApiVersions with error code {error_code}")
    if count < 0 or len(payload) < 10 + 6 * count:
        raise ValueError(f"an ApiVersions response announces {count} APIs but is truncated")
    apis = {}
    for i in range(count):
        key, low, high = struct.unpack_from(">hhh", payload, 10 + 6 * i)
        apis[key] = (low, high)
    return apis


# -- I/O ---------------------------------------------------------------------------------


def cache_root() -> Path:
    """``$FEATUREKUBE_CACHE``, else ``~/.cache/featurekube`` (Spark's jars live there too)."""
    env = os.environ.get("FEATUREKUBE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "featurekube"


def find_java() -> Path:
    """``$JAVA_HOME/bin/java``, else ``java`` on the PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return Path(home) / "bin" / "java"
    found = shutil.which("java")
    if found is None:
        raise errors.PlatformError(
            "Kafka needs Java 17 or later and none was found: set JAVA_HOME or put java on "
            "the PATH (`featurekube dev up --no-kafka` starts the platform without Kafka)"
        )
    return Path(found)


def _ivy_jar() -> Path:
    # pyspark's installation is found without importing it: the platform needs no Spark.
    spec = importlib.util.find_spec("pyspark")
    jars = (
        sorted((Path(spec.origin).parent / "jars").glob("ivy-*.jar"))
        if spec is not None and spec.origin is not None
        else []
    )
    if not jars:
        raise errors.PlatformError(
            "Kafka's jars are resolved from Maven Central with Apache Ivy, which pyspark "
            "carries, and pyspark is not installed: pip install 'featurekube[spark]' "
            "(or `featurekube dev up --no-kafka`)"
        )
    return jars[-1]


def resolve_jars(java: Path, log: Path, version: str = KAFKA_VERSION) -> Path:
    """The directory of the broker's jars: ``<cache>/kafka-<version>/libs``, resolved
    from Maven Central on first use (about 45 MB).

    Each resolution works in a directory of its own and renames it into place when
    complete, so starts that race, or one that was interrupted, never leave a
    half-filled cache behind.
    """
    final = cache_root() / f"kafka-{version}"
    libs = final / "libs"
    if (final / "complete").is_file():
        return libs
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.parent / f"kafka-{version}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        work.mkdir()
        (work / "ivy.xml").write_text(ivy_module(version))
        argv = [
            str(java),
            "-jar",
            str(_ivy_jar()),
            "-ivy",
            str(work / "ivy.xml"),
            "-confs",
            "default",
            "-cache",
            str(work / "ivy-cache"),
            "-retrieve",
            str(work / "libs" / "[artifact]-[revision](-[classifier]).[ext]"),
            "-warn",
        ]
        with log.open("ab") as out:
            out.write(f"resolving Kafka {version}'s jars: {' '.join(argv)}\n".encode())
            out.flush()
            status = _run(argv, out, RESOLVE_TIMEOUT_SECONDS)
        if status != "exited 0" or not any((work / "libs").glob("kafka_2.13-*.jar")):
            raise errors.ComponentStartError(
                "kafka",
                f"resolving its jars from Maven Central failed (Ivy {status})",
                processes.tail(log),
            )
        shutil.rmtree(work / "ivy-cache", ignore_errors=True)
        (work / "complete").write_text(version + "\n")
        try:
            work.rename(final)
        except OSError:
            # Another start finished first: its copy is as good as ours.
            if not (final / "complete").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return libs


def prepare(
    layout: KafkaLayout,
    ports: KafkaPorts,
    java: Path,
    libs: Path,
    log: Path,
    archive: ClassArchive | None = None,
    pods: PodListener | None = None,
) -> None:
    """Write the configuration (``pods``: the listener for the node's pods, if any)
    and format an empty log directory with a new cluster id."""
    shutil.rmtree(layout.root, ignore_errors=True)
    layout.data.mkdir(parents=True)
    layout.server_properties.write_text(render_server_properties(layout, ports, pods))
    layout.log4j2_properties.write_text(render_log4j2_properties())
    argv = format_command(java, libs, layout, new_cluster_id(), archive)
    with log.open("ab") as out:
        status = _run(argv, out, FORMAT_TIMEOUT_SECONDS)
    if status != "exited 0":
        raise errors.ComponentStartError(
            "kafka",
            f"formatting its storage in {layout.data} failed (the storage tool {status})",
            processes.tail(log),
        )


def _run(argv: list[str], out: BinaryIO, timeout: float) -> str:
    """Run ``argv`` to its end, output to ``out``: ``exited N``, or that it timed out."""
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return f"did not finish within {timeout:.0f} s"
    return f"exited {done.returncode}"


def spawn(
    layout: KafkaLayout,
    java: Path,
    libs: Path,
    log: Path,
    archive: ClassArchive | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start the node in the background; its pid."""
    return processes.spawn(broker_command(java, libs, layout, archive), log, env=env)


@dataclass(frozen=True)
class ClassArchives:
    """The class-data-sharing archives of the storage tool and the broker."""

    directory: Path

    @property
    def format(self) -> Path:
        return self.directory / "format.jsa"

    @property
    def broker(self) -> Path:
        return self.directory / "broker.jsa"


def class_archives(java: Path, libs: Path, log: Path, timeout: float) -> ClassArchives | None:
    """The archives for ``java`` and ``libs``, recorded by a throwaway node first if
    need be; None when recording failed (the log says why; Kafka starts without)."""
    real = java.resolve()
    stat = real.stat()
    key = hashlib.sha256(f"{real}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    final = ClassArchives(libs.parent / "class-archives" / f"java-{key}")
    if (final.directory / "complete").is_file():
        return final
    final.directory.parent.mkdir(parents=True, exist_ok=True)
    work = ClassArchives(
        final.directory.parent / f"java-{key}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    )
    node = KafkaLayout(work.directory / "node")
    ports = KafkaPorts(processes.free_port(), processes.free_port())
    with log.open("ab") as out:
        out.write(f"recording Kafka's classes in {final.directory} for later starts\n".encode())
    try:
        prepare(node, ports, java, libs, log, ClassArchive(work.format, record=True))
        pid = spawn(node, java, libs, log, ClassArchive(work.broker, record=True))
        try:
            processes.wait_until(
                lambda: ready(ports), timeout, abort=lambda: not processes.is_running(pid)
            )
        finally:
            # The JVM writes the archive as it exits, which takes a few seconds.
            processes.stop(pid, "java", timeout=60.0)
        if not (work.format.is_file() and work.broker.is_file()):
            return None
        shutil.rmtree(node.root, ignore_errors=True)
        (work.directory / "complete").write_text(f"{real}\n")
        try:
            work.directory.rename(final.directory)
        except OSError:
            if not (final.directory / "complete").is_file():
                return None
        return final
    except errors.PlatformError:
        return None
    finally:
        shutil.rmtree(work.directory, ignore_errors=True)


def ready(ports: KafkaPorts, timeout: float = 2.0) -> bool:
    """Whether the broker answers ApiVersions and serves Metadata; raises if it cannot
    be reached (as :func:`processes.http_ok` does)."""
    correlation_id = 1
    with socket.create_connection((LOOPBACK, ports.broker), timeout=timeout) as sock:
        sock.sendall(api_versions_request(correlation_id))
        size = struct.unpack(">i", _read_exactly(sock, 4))[0]
        if not 0 < size <= MAX_PROBE_RESPONSE:
            raise ValueError(f"a {size}-byte answer to ApiVersions is not Kafka's")
        apis = parse_api_versions_response(_read_exactly(sock, size), correlation_id)
    return METADATA_KEY in apis


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the broker closed the connection mid-answer")
        chunks += chunk
    return bytes(chunks)


def remove_data(layout: KafkaLayout) -> None:
    """Remove the node's configuration and data (its topics): they do not outlive it."""
    with contextlib.suppress(OSError):
        shutil.rmtree(layout.root)
