"""Serving is authenticated and authorized: a feature server over TLS that takes
ServiceAccount tokens, verified by the real kube-apiserver's TokenReview as the
server's own ServiceAccount (bound to system:auth-delegator, as the chart binds it),
and the plan's access lists; the real gRPC server on loopback, through the SDK's
client, over the in-memory store."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import support
from featurekube.online import client
from featurekube_server import auth, plan, server
from featurekube_server.stores import memory

LIVE_SPEC: dict[str, Any] = {
    "owner": "dispatch-platform@rides.example.com",
    "entities": [{"name": "driver_id", "type": "int64"}],
    "source": {"push": {"timestampField": "event_timestamp"}},
    "features": [{"name": "current_zone_id", "type": "int64"}],
    "materialization": {"online": True, "offline": False},
}
ROWS = {"driver_id": [1], "event_timestamp": [dt.datetime.now(dt.UTC)], "current_zone_id": [7]}


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(
    directory: Path, name: str
) -> tuple[Path, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA: its certificate file, certificate and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert, key


def make_server_cert(
    directory: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> server.TlsFiles:
    """A certificate for the Service's DNS name and loopback, signed by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("fraud-model.fraud.svc"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("fraud-model.fraud.svc"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = server.TlsFiles(directory / "tls.crt", directory / "tls.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(_pem(key))
    return files


@dataclass
class Accounts:
    """ServiceAccounts of the test's namespace and a token file of each."""

    namespace: str
    tokens: dict[str, Path]


@pytest.fixture
def accounts(
    kube_api: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> Iterator[Accounts]:
    core = kubernetes.client.CoreV1Api(kube_api)
    tokens = {}
    for name in ("reader", "pusher", "stranger"):
        path = tmp_path / f"{name}.token"
        path.write_text(support.service_account_token(core, namespace, name))
        tokens[name] = path
    yield Accounts(namespace, tokens)


@pytest.fixture
def server_api(
    kube_api: kubernetes.client.ApiClient, namespace: str, platform: Any, tmp_path: Path
) -> Iterator[kubernetes.client.ApiClient]:
    """An API client as the feature server's ServiceAccount, which may only review
    tokens (ClusterRole system:auth-delegator)."""
    with support.token_reviewer(kube_api, namespace, platform.kubeconfig, tmp_path) as api:
        yield api


@dataclass
class Target:
    address: str
    ca: Path
    other_ca: Path
    accounts: Accounts
    authenticator: auth.Authenticator
    store: memory.MemoryStore
    health_address: str

    def call(self, method: str, *args: Any, token: str | None = None, **kwargs: Any) -> Any:
        with client.OnlineClient(
            self.address, ca_file=self.ca, token_file=self.accounts.tokens.get(token or "")
        ) as online:
            return getattr(online, method)(*args, **kwargs)


@pytest_asyncio.fixture
async def target(
    accounts: Accounts, server_api: kubernetes.client.ApiClient, tmp_path: Path
) -> AsyncIterator[Target]:
    ns = accounts.namespace
    ca_path, ca, ca_key = make_ca(tmp_path, "serving-ca")
    other_ca, _, _ = make_ca(tmp_path, "other-ca")
    tls = make_server_cert(tmp_path, ca, ca_key)
    serving = plan.parse_plan(
        {
            "featureService": "fraud-model",
            "namespace": ns,
            "access": {"read": [f"{ns}/reader", f"{ns}/pusher"], "push": [f"{ns}/pusher"]},
            "featureViews": [
                {
                    "name": "flags",
                    "onlineTable": "flags",
                    "entities": [{"name": "driver_id", "type": "int64"}],
                    "features": [{"name": "zone", "source": "current_zone_id", "type": "int64"}],
                    "push": {"spec": LIVE_SPEC, "offlineUri": None},
                }
            ],
        }
    )
    store = memory.MemoryStore()
    store.create_table("flags")
    authenticator = auth.Authenticator(auth.KubernetesReviewer(server_api), ttl=30)
    feature_server = server.FeatureServer(
        serving, store, writer=store, health_interval=0.1, tls=tls, authenticator=authenticator
    )
    port = await feature_server.start("127.0.0.1:0")
    health_port = await feature_server.serve_health("127.0.0.1:0")
    try:
        await asyncio.wait_for(feature_server.ready.wait(), 30)
        yield Target(
            f"127.0.0.1:{port}",
            ca_path,
            other_ca,
            accounts,
            authenticator,
            store,
            f"127.0.0.1:{health_port}",
        )
    finally:
        await feature_server.stop(0)


async def _refused(target: Target, method: str, *args: Any, **kwargs: Any) -> Any:
    with pytest.raises(client.FeatureServerError) as refused:
        await asyncio.to_thread(target.call, method, *args, **kwargs)
    return refused.value


READ = {"columns": {"driver_id": [1]}, "features": ["zone"]}


@pytest.mark.asyncio
async def test_the_plaintext_health_port_answers_health_checks_and_nothing_else(
    target: Target,
) -> None:
    """What the kubelet's gRPC probe does: plaintext health checks, which the TLS port
    refuses; the health port serves no features, with a token or without."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(target.health_address) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        features = channel.unary_unary(f"/{server.SERVICE_NAME}/GetOnlineFeatures")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await features(b"", timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    async with grpc.aio.insecure_channel(target.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.asyncio
async def test_a_call_without_a_token_or_with_a_forged_one_is_unauthenticated(
    target: Target, tmp_path: Path
) -> None:
    refused = await _refused(target, "get_online_features", **READ)
    assert refused.code == "UNAUTHENTICATED"
    assert "no token" in str(refused)

    forged = tmp_path / "forged.token"
    text = target.accounts.tokens["reader"].read_text()
    forged.write_text(text[:-4] + ("AAAA" if not text.endswith("AAAA") else "BBBB"))
    target.accounts.tokens["forged"] = forged
    refused = await _refused(target, "get_online_features", token="forged", **READ)
    assert refused.code == "UNAUTHENTICATED"
    assert "does not accept the token" in str(refused)


@pytest.mark.asyncio
async def test_a_service_account_not_listed_is_denied_reading_and_pushing(target: Target) -> None:
    ns = target.accounts.namespace

    refused = await _refused(target, "get_online_features", token="stranger", **READ)
    assert refused.code == "PERMISSION_DENIED"
    assert f"system:serviceaccount:{ns}:stranger may not read FeatureService {ns}/fraud-model" in (
        str(refused)
    )
    refused = await _refused(target, "push", "flags", ROWS, token="stranger")
    assert refused.code == "PERMISSION_DENIED"
    assert target.store.tables["flags"] == {}


@pytest.mark.asyncio
async def test_a_reader_reads_and_may_not_push_and_a_pusher_pushes(target: Target) -> None:
    ns = target.accounts.namespace

    refused = await _refused(target, "push", "flags", ROWS, token="reader")
    assert refused.code == "PERMISSION_DENIED"
    assert f"its spec.access.push grants system:serviceaccount:{ns}:pusher" in str(refused)
    assert target.store.tables["flags"] == {}

    assert await asyncio.to_thread(target.call, "push", "flags", ROWS, token="pusher") == 1
    result = await asyncio.to_thread(target.call, "get_online_features", token="reader", **READ)
    assert result.values == {"zone": [7]}
    # Each token was reviewed once, whatever the number of calls.
    for _ in range(3):
        await asyncio.to_thread(target.call, "get_online_features", token="reader", **READ)
    assert target.authenticator.reviews == 2


@pytest.mark.asyncio
async def test_a_client_that_does_not_trust_the_server_certificate_cannot_call(
    target: Target,
) -> None:
    def call(**kwargs: Any) -> Any:
        token = target.accounts.tokens["reader"]
        with client.OnlineClient(target.address, token_file=token, timeout=3, **kwargs) as online:
            return online.get_online_features(**READ)

    for kwargs in ({"ca_file": target.other_ca}, {}):
        with pytest.raises(client.ServerUnavailableError) as refused:
            await asyncio.to_thread(call, **kwargs)
        assert refused.value.code == "UNAVAILABLE"
    result = await asyncio.to_thread(
        call, ca_file=target.ca, tls_server_name="fraud-model.fraud.svc"
    )
    assert result.values == {"zone": [None]}
    assert target.authenticator.reviews == 1, "no call reached the server without TLS"


@pytest.mark.asyncio
async def test_a_renewed_certificate_is_served_at_the_next_handshake_without_a_restart(
    target: Target, tmp_path: Path
) -> None:
    def call(ca: Path) -> Any:
        token = target.accounts.tokens["reader"]
        with client.OnlineClient(target.address, ca_file=ca, token_file=token, timeout=3) as c:
            return c.get_online_features(**READ)

    renewed = tmp_path / "renewed"
    renewed.mkdir()
    new_ca, ca, ca_key = make_ca(renewed, "renewed-ca")
    files = make_server_cert(renewed, ca, ca_key)
    # What the kubelet does when the Secret changes: the files are replaced.
    (tmp_path / "tls.key").write_bytes(files.key.read_bytes())
    (tmp_path / "tls.crt").write_bytes(files.cert.read_bytes())

    assert (await asyncio.to_thread(call, new_ca)).values == {"zone": [None]}
    with pytest.raises(client.ServerUnavailableError):
        await asyncio.to_thread(call, target.ca)
