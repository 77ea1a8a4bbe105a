"""The local platform's Kafka as data: its configuration, command lines, the bytes of
its readiness probe, and the jars Spark loads to read Kafka; no JVM, no network."""

from __future__ import annotations

import base64
import struct
import xml.etree.ElementTree as ET
from importlib.metadata import version
from pathlib import Path

import pytest

from featurekube import spark_session
from featurekube._platform import kafka, platform
from featurekube.cli import main as cli

LAYOUT = kafka.KafkaLayout(Path("/state/kafka"))
PORTS = kafka.KafkaPorts(broker=19092, controller=19093)
JAVA = Path("/usr/bin/java")
LIBS = Path("/cache/kafka-4.4.0/libs")


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_server_properties_make_one_kraft_node_on_loopback() -> None:
    props = _properties(kafka.render_server_properties(LAYOUT, PORTS))

    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == "/state/kafka/data"
    assert "zookeeper.connect" not in props


def test_server_properties_suit_a_small_machine() -> None:
    props = _properties(kafka.render_server_properties(LAYOUT, PORTS))

    assert props["num.partitions"] == "1"
    assert props["offsets.topic.num.partitions"] == "1"
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "1", key
    assert int(props["log.segment.bytes"]) <= 16 * 1024 * 1024
    assert int(props["log.retention.bytes"]) <= 256 * 1024 * 1024
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_with_a_node_the_broker_also_listens_where_pods_reach_the_machine() -> None:
    pods = kafka.PodListener("10.250.0.1", 19094)

    props = _properties(kafka.render_server_properties(LAYOUT, PORTS, pods))

    # Each listener advertises itself: a pod bootstrapping from the link's address is
    # sent on to that address, a client of the machine to loopback.
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,NODE://10.250.0.1:19094,CONTROLLER://127.0.0.1:19093"
    )
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092,NODE://10.250.0.1:19094"
    assert props["listener.security.protocol.map"] == (
        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,NODE:PLAINTEXT"
    )
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert kafka.pods_bootstrap_servers(pods) == "10.250.0.1:19094"
    assert "0.0.0.0" not in kafka.render_server_properties(LAYOUT, PORTS, pods)


@pytest.mark.parametrize(
    ("host", "port", "why"),
    [
        ("0.0.0.0", 19094, "every address"),
        ("127.0.0.1", 19094, "loopback only"),
        ("node.local", 19094, "not an IPv4 address"),
        ("10.250.0.1", 0, "port 0"),
    ],
)
def test_the_pods_listener_is_one_address_of_the_machine(host: str, port: int, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        kafka.PodListener(host, port)


def test_bootstrap_servers_is_the_broker_listener() -> None:
    assert kafka.bootstrap_servers(PORTS) == "127.0.0.1:19092"


def test_cluster_id_is_16_bytes_in_url_safe_base64() -> None:
    first, second = kafka.new_cluster_id(), kafka.new_cluster_id()

    assert len(first) == 22 and first != second
    assert len(base64.urlsafe_b64decode(first + "==")) == 16
    with pytest.raises(ValueError, match="16 bytes"):
        kafka.new_cluster_id(b"short")


def test_broker_command_bounds_the_heap_and_runs_kafka_on_the_cached_jars() -> None:
    argv = kafka.broker_command(JAVA, LIBS, LAYOUT)

    assert argv[0] == "/usr/bin/java"
    assert "-Xmx512m" in argv
    assert argv[argv.index("-cp") + 1] == "/cache/kafka-4.4.0/libs/*"
    assert "-Dlog4j2.configurationFile=/state/kafka/log4j2.properties" in argv
    assert argv[-2:] == ["kafka.Kafka", "/state/kafka/server.properties"]
    assert not any(arg.startswith("-XX:SharedArchiveFile") for arg in argv)


def test_format_command_formats_with_the_given_cluster_id() -> None:
    argv = kafka.format_command(JAVA, LIBS, LAYOUT, "AAECAwQFBgcICQoLDA0ODw")

    start = argv.index("kafka.tools.StorageTool")
    assert argv[start:] == [
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id=AAECAwQFBgcICQoLDA0ODw",
        "--config=/state/kafka/server.properties",
    ]


def test_class_archives_are_mapped_or_recorded() -> None:
    used = kafka.broker_command(JAVA, LIBS, LAYOUT, kafka.ClassArchive(Path("/a/broker.jsa")))
    recorded = kafka.format_command(
        JAVA, LIBS, LAYOUT, "x" * 22, kafka.ClassArchive(Path("/a/format.jsa"), record=True)
    )

    assert "-XX:SharedArchiveFile=/a/broker.jsa" in used
    assert "-XX:ArchiveClassesAtExit=/a/format.jsa" in recorded
    # JVM options come before the class path and the main class.
    assert used.index("-XX:SharedArchiveFile=/a/broker.jsa") < used.index("-cp")


def test_ivy_module_asks_for_the_broker_and_its_log_binding() -> None:
    root = ET.fromstring(kafka.ivy_module("4.4.0"))
    deps = {(d.get("org"), d.get("name")): d.get("rev") for d in root.iter("dependency")}

    assert deps[("org.apache.kafka", "kafka_2.13")] == "4.4.0"
    assert ("org.apache.logging.log4j", "log4j-slf4j-impl") in deps


def test_log4j2_configuration_writes_to_standard_output() -> None:
    text = kafka.render_log4j2_properties()

    assert "appender.stdout.type = Console" in text
    assert "rootLogger.level = INFO" in text


def test_api_versions_request_bytes() -> None:
    request = kafka.api_versions_request(7)
    size, key, api_version, correlation, client_len = struct.unpack_from(">ihhih", request)

    assert (key, api_version, correlation) == (18, 0, 7)
    assert size == len(request) - 4
    assert request[14 : 14 + client_len] == b"featurekube-dev"


def _response(correlation: int, error: int, apis: list[tuple[int, int, int]]) -> bytes:
    body = struct.pack(">ihi", correlation, error, len(apis))
    return body + b"".join(struct.pack(">hhh", *api) for api in apis)


def test_api_versions_response_lists_the_apis() -> None:
    apis = kafka.parse_api_versions_response(_response(7, 0, [(0, 3, 12), (3, 0, 13)]), 7)

    assert apis == {0: (3, 12), 3: (0, 13)}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (_response(8, 0, []), "correlation id 8"),
        (_response(7, 35, []), "error code 35"),
        (_response(7, 0, [(0, 0, 1)])[:-2], "truncated"),
        (b"\x00\x00", "at least 10 bytes"),
    ],
)
def test_api_versions_response_refuses_what_is_not_an_answer(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kafka.parse_api_versions_response(payload, 7)


def _endpoints(**extra: str) -> platform.Endpoints:
    return platform.Endpoints(
        kubeconfig=Path("/s/kubeconfig"),
        kubeconfig_unprivileged=Path("/s/kubeconfig-unprivileged"),
        apiserver_url="https://127.0.0.1:6443",
        aws_endpoint_url="http://127.0.0.1:5000",
        region="us-east-1",
        pids={},
        log_dir=Path("/s/logs"),
        **extra,
    )


def test_environment_names_kafka_only_when_it_runs() -> None:
    with_kafka = _endpoints(kafka_bootstrap_servers="127.0.0.1:19092").environment()
    without = _endpoints().environment()

    assert with_kafka["FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19092"
    assert "FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS" not in without
    assert "FEATUREKUBE_KAFKA_PODS_BOOTSTRAP_SERVERS" not in with_kafka


def test_with_a_node_the_environment_also_names_kafka_where_pods_reach_it() -> None:
    env = _endpoints(
        kafka_bootstrap_servers="127.0.0.1:19092",
        kafka_pods_bootstrap_servers="10.250.0.1:19094",
    ).environment()

    # The machine's clients keep loopback; the pods' address is for the chart.
    assert env["FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19092"
    assert env["FEATUREKUBE_KAFKA_PODS_BOOTSTRAP_SERVERS"] == "10.250.0.1:19094"


def test_endpoints_recorded_before_kafka_still_read() -> None:
    recorded = (
        _endpoints()
        .to_json()
        .replace(', "kafka_bootstrap_servers": ""', "")
        .replace(', "kafka_pods_bootstrap_servers": ""', "")
    )

    assert "kafka" not in recorded
    read = platform.Endpoints.from_json(recorded)
    assert read.kafka_bootstrap_servers == read.kafka_pods_bootstrap_servers == ""


def test_dev_up_runs_kafka_unless_told_not_to() -> None:
    from featurekube.cli import dev

    parser = cli.build_parser()
    on = parser.parse_args(["dev", "up", "--state-dir", "/s"])
    off = parser.parse_args(["dev", "up", "--no-kafka", "--state-dir", "/s"])

    assert dev._platform(on).settings.kafka is True
    assert dev._platform(off).settings.kafka is False


def test_spark_loads_its_kafka_source_at_pyspark_version() -> None:
    assert version("pyspark") == spark_session.SPARK_VERSION
    assert (
        f"org.apache.spark:spark-sql-kafka-0-10_2.13:{spark_session.SPARK_VERSION}"
        in spark_session.SPARK_PACKAGES
    )
    conf = spark_session.render_spark_conf(spark_session.SparkSettings(), {})
    assert "spark-sql-kafka-0-10_2.13" in conf["spark.jars.packages"]


def test_operator_settings_take_the_users_kafka() -> None:
    from featurekube_operator.settings import OperatorSettings

    settings = OperatorSettings.from_env(
        {
            "FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS": "b-1:9096,b-2:9096",
            "FEATUREKUBE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "FEATUREKUBE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "FEATUREKUBE_KAFKA_SASL_SECRET": "kafka-user",
            "FEATUREKUBE_KAFKA_SASL_DIR": "/etc/featurekube/kafka-sasl",
            "FEATUREKUBE_KAFKA_TLS_CA_FILE": "/etc/featurekube/kafka-ca/ca.crt",
        }
    )

    assert settings.kafka_bootstrap_servers == "b-1:9096,b-2:9096"
    assert settings.kafka_tls
    assert OperatorSettings().kafka_security_protocol == "PLAINTEXT"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FEATUREKUBE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "is not one of PLAINTEXT, SSL"),
        ({"FEATUREKUBE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "which SASL_SSL needs"),
        (
            {
                "FEATUREKUBE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "FEATUREKUBE_KAFKA_SASL_MECHANISM": "PLAIN",
            },
            "the Secret holding the username and password",
        ),
        ({"FEATUREKUBE_KAFKA_SASL_MECHANISM": "PLAIN"}, "use SASL_SSL or SASL_PLAINTEXT"),
        ({"FEATUREKUBE_KAFKA_TLS_CA_FILE": "/ca.crt"}, "uses no TLS"),
    ],
)
def test_operator_settings_refuse_contradicting_kafka_settings(
    env: dict[str, str], message: str
) -> None:
    from featurekube_operator.settings import OperatorSettings

    with pytest.raises(ValueError, match=message):
        OperatorSettings.from_env(env)
