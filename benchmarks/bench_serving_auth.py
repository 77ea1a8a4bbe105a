"""Serving with TLS and ServiceAccount tokens beside serving open, in one run: p50 and
p99 latency of GetOnlineFeatures for 1 and 100 entity rows of a service of one view
of 10 features, over the in-memory store.

Two feature servers run side by side, each in a process of its own
(``featurekube-server --store memory``): one plaintext without authentication
(``--auth none``), one with TLS and ``--auth tokenreview`` against a real
kube-apiserver (the local platform's, started here), with a plan whose access lists
name the calling ServiceAccount. The load comes from this process, sequential, over
loopback, through the SDK's OnlineClient, one channel per server kept open (as clients
do); rounds alternate between the two servers so that both see the same machine. The
token is reviewed once, then taken from the server's cache: what a request pays is
the TLS record layer and the lookup of the cached token and access lists.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import kubernetes.client
import kubernetes.config
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks import _harness
from featurekube._platform import platform
from featurekube.online import client

NAMESPACE = "bench"
ENTITIES = 1000
FEATURES = 10
ROW_COUNTS = (1, 100)
ROUNDS = 6
REQUESTS_PER_ROUND = 250
WARMUP = 100
OPEN = "open (plaintext, no auth)"
SECURED = "TLS + token (TokenReview)"
HOST = "fraud-model.bench.svc"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for HOST and 127.0.0.1 it signed: the CA file,
    the certificate file and the key file."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("bench-ca"))
        .issuer_name(_name("bench-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(HOST))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(HOST), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.crt", directory / "tls.crt", directory / "tls.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _plan_and_data(directory: Path) -> tuple[Path, Path]:
    features = [f"f{i}" for i in range(FEATURES)]
    plan = {
        "featureService": "fraud-model",
        "namespace": NAMESPACE,
        "access": {"read": [f"{NAMESPACE}/client"], "push": []},
        "featureViews": [
            {
                "name": "stats",
                "onlineTable": "stats",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "features": [{"name": n, "type": "int64"} for n in features],
            }
        ],
    }
    rows = [
        {
            "driver_id": i,
            "event_timestamp": "now-10m",
            **{n: i * 10 + k for k, n in enumerate(features)},
        }
        for i in range(ENTITIES)
    ]
    plan_path, data_path = directory / "plan.yaml", directory / "data.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    data_path.write_text(yaml.safe_dump({"featureView": "stats", "rows": rows}))
    return plan_path, data_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _server(arguments: list[str], environment: dict[str, str], log: Path) -> Iterator[int]:
    """A feature server process on a free port, until the block ends."""
    port = _free_port()
    command = [sys.executable, "-m", "featurekube_server", "--port", str(port), *arguments]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out, env=environment)
    try:
        yield port
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_serving(channel: grpc.Channel, log: Path) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 60
    while True:
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the feature server did not start; see {log}:\n{log.read_text()}")
        time.sleep(0.2)


def run() -> _harness.Report:
    report = _harness.Report(
        name="serving_auth",
        description=f"GetOnlineFeatures, 1 view of {FEATURES} features, memory store: "
        "TLS + token vs open, one run",
        baseline=OPEN,
    )
    with _harness.scratch_platform() as (endpoints, tmp):
        _measure(report, endpoints, tmp)
    return report


def _measure(report: _harness.Report, endpoints: platform.Endpoints, tmp: Path) -> None:
    api = kubernetes.config.new_client_from_config(str(endpoints.kubeconfig))
    core = kubernetes.client.CoreV1Api(api)
    k8s = kubernetes.client
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=NAMESPACE)))
    core.create_namespaced_service_account(
        NAMESPACE, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="client"))
    )
    request = k8s.AuthenticationV1TokenRequest(
        spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    status = core.create_namespaced_service_account_token("client", NAMESPACE, request).status
    assert status is not None and status.token
    token_file = tmp / "client.token"
    token_file.write_text(status.token)
    ca, cert, key = _certificates(tmp)
    plan, data = _plan_and_data(tmp)
    environment = {**os.environ, "KUBECONFIG": str(endpoints.kubeconfig)}
    common = ["--plan", str(plan), "--store", "memory", "--memory-data", str(data)]
    common += ["--metrics-port", "0", "--log-level", "warning"]
    secured_arguments = [*common, "--tls-cert", str(cert), "--tls-key", str(key)]
    secured_arguments += ["--auth", "tokenreview"]
    with (
        _server([*common, "--auth", "none"], environment, tmp / "open.log") as open_port,
        _server(secured_arguments, environment, tmp / "secured.log") as secured_port,
        client.OnlineClient(f"127.0.0.1:{open_port}", timeout=10) as open_client,
        client.OnlineClient(
            f"127.0.0.1:{secured_port}", timeout=10, ca_file=ca, token_file=token_file
        ) as secured_client,
    ):
        _wait_serving(open_client._channel, tmp / "open.log")
        _wait_serving(secured_client._channel, tmp / "secured.log")
        clients = {OPEN: open_client, SECURED: secured_client}
        for rows in ROW_COUNTS:
            latencies = _load(clients, rows)
            label = f"{rows} row{'s' if rows > 1 else ''}"
            for subject, samples in latencies.items():
                report.add(
                    subject, f"p50 latency, {label}", "ms", [statistics.median(samples) * 1000]
                )
                report.add(
                    subject,
                    f"p99 latency, {label}",
                    "ms",
                    [_harness.percentile(samples, 0.99) * 1000],
                )
    report.notes["load"] = (
        f"sequential, {ROUNDS} alternating rounds of {REQUESTS_PER_ROUND} requests per "
        f"server and row count after {WARMUP} warm-up requests; one kept-open channel each"
    )


def _load(clients: dict[str, client.OnlineClient], rows: int) -> dict[str, list[float]]:
    keys: dict[str, Any] = {"driver_id": list(range(rows))}
    for online in clients.values():
        for _ in range(WARMUP):
            online.get_online_features(columns=keys)
    latencies: dict[str, list[float]] = {subject: [] for subject in clients}
    for _ in range(ROUNDS):
        for subject, online in clients.items():
            for _ in range(REQUESTS_PER_ROUND):
                started = time.perf_counter()
                result = online.get_online_features(columns=keys)
                latencies[subject].append(time.perf_counter() - started)
            assert len(result) == rows and result.values["f1"][0] == 1
    return latencies
