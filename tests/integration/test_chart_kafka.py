"""The chart's Kafka settings as helm renders them (helm built from its Go module by
``hack/helm/build.sh``, cached): the operator's environment and the Secrets mounted
for TLS and SASL, read back by the operator's own settings; the schema refuses
settings that contradict each other."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chart_support import helm_binary
from featurekube_operator.settings import OperatorSettings

REPO = Path(__file__).parents[2]
CHART = REPO / "charts" / "featurekube"
SECURED = {
    "kafka": {
        "bootstrapServers": "b-1.kafka.example.com:9096,b-2.kafka.example.com:9096",
        "tls": {"enabled": True, "caSecret": "kafka-ca"},
        "sasl": {"mechanism": "SCRAM-SHA-512", "credentialsSecret": "kafka-user"},
    }
}


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def _template(
    helm: Path, tmp_path: Path, values: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    env = {"HOME": str(tmp_path), "HELM_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run(
        [str(helm), "template", "fk", str(CHART), "-n", "featurekube", "-f", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _operator_pod(helm: Path, tmp_path: Path, values: dict[str, Any]) -> dict[str, Any]:
    done = _template(helm, tmp_path, values)
    assert done.returncode == 0, done.stderr
    (deployment,) = [
        doc for doc in yaml.safe_load_all(done.stdout) if doc and doc["kind"] == "Deployment"
    ]
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _kafka_env(pod: dict[str, Any]) -> dict[str, str]:
    (container,) = pod["containers"]
    return {
        e["name"]: e["value"]
        for e in container["env"]
        if e["name"].startswith("FEATUREKUBE_KAFKA_")
    }


def test_by_default_no_kafka_is_configured(helm: Path, tmp_path: Path) -> None:
    pod = _operator_pod(helm, tmp_path, {})
    env = _kafka_env(pod)

    assert env["FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS"] == ""
    assert env["FEATUREKUBE_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert not {v["name"] for v in pod["volumes"]} & {"kafka-ca", "kafka-sasl"}
    settings = OperatorSettings.from_env(env)
    assert settings.kafka_bootstrap_servers == "" and not settings.kafka_tls


def test_tls_and_sasl_mount_their_secrets_and_reach_the_operator(
    helm: Path, tmp_path: Path
) -> None:
    pod = _operator_pod(helm, tmp_path, SECURED)
    env = _kafka_env(pod)
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    assert env == {
        "FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS": SECURED["kafka"]["bootstrapServers"],
        "FEATUREKUBE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "FEATUREKUBE_KAFKA_TLS_CA_SECRET": "kafka-ca",
        "FEATUREKUBE_KAFKA_TLS_CA_FILE": "/etc/featurekube/kafka-ca/ca.crt",
        "FEATUREKUBE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "FEATUREKUBE_KAFKA_SASL_SECRET": "kafka-user",
        "FEATUREKUBE_KAFKA_SASL_DIR": "/etc/featurekube/kafka-sasl",
    }
    assert mounts["kafka-ca"]["mountPath"] == "/etc/featurekube/kafka-ca"
    assert mounts["kafka-sasl"] == {
        "name": "kafka-sasl",
        "mountPath": "/etc/featurekube/kafka-sasl",
        "readOnly": True,
    }
    assert volumes["kafka-ca"]["secret"]["secretName"] == "kafka-ca"
    assert volumes["kafka-sasl"]["secret"] == {
        "secretName": "kafka-user",
        "items": [
            {"key": "username", "path": "username"},
            {"key": "password", "path": "password"},
        ],
    }
    settings = OperatorSettings.from_env(env)
    assert settings.kafka_tls and settings.kafka_sasl_mechanism == "SCRAM-SHA-512"


@pytest.mark.parametrize(
    ("tls", "mechanism", "protocol"),
    [(True, "", "SSL"), (False, "PLAIN", "SASL_PLAINTEXT"), (False, "", "PLAINTEXT")],
)
def test_the_security_protocol_follows_tls_and_sasl(
    helm: Path, tmp_path: Path, tls: bool, mechanism: str, protocol: str
) -> None:
    values = {
        "kafka": {
            "bootstrapServers": "kafka.streams.svc:9092",
            "tls": {"enabled": tls},
            "sasl": {"mechanism": mechanism, "credentialsSecret": "kafka-user"},
        }
    }
    env = _kafka_env(_operator_pod(helm, tmp_path, values))

    assert env["FEATUREKUBE_KAFKA_SECURITY_PROTOCOL"] == protocol
    OperatorSettings.from_env(env)  # the operator accepts what the chart renders


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "a mechanism without credentials": (
        {"kafka": {"sasl": {"mechanism": "PLAIN"}}},
        "/kafka/sasl/credentialsSecret",
    ),
    "a CA without TLS": ({"kafka": {"tls": {"caSecret": "kafka-ca"}}}, "/kafka/tls/enabled"),
    "an unknown mechanism": (
        {"kafka": {"sasl": {"mechanism": "GSSAPI", "credentialsSecret": "k"}}},
        "/kafka/sasl/mechanism",
    ),
    "spaces between brokers": (
        {"kafka": {"bootstrapServers": "a:9092, b:9092"}},
        "/kafka/bootstrapServers",
    ),
    "a broker without a port": (
        {"kafka": {"bootstrapServers": "kafka"}},
        "/kafka/bootstrapServers",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_schema_refuses(helm: Path, tmp_path: Path, case: str) -> None:
    values, where = REFUSED[case]
    done = _template(helm, tmp_path, values)

    assert done.returncode != 0, f"accepted: {values}"
    assert where in done.stderr, done.stderr
