"""The feature server process: a grpc.aio server with the FeatureServing service,
standard health checking and reflection, Prometheus metrics over HTTP, JSON logs, and
a graceful stop on SIGTERM (network I/O).

Health: NOT_SERVING until the plan is loaded and the online store answers for every
table of the plan (checked every ``health_interval`` seconds until it does), SERVING
from then on, NOT_SERVING again while draining. A store outage after start does not
flip it: the pods' probes would restart every replica at once for nothing, while
requests already answer UNAVAILABLE quickly.

Security: with a certificate and key (``tls_cert``, ``tls_key``, mounted from a TLS
Secret) the gRPC port takes TLS only; with ``auth="tokenreview"`` every call of
FeatureServing needs a ServiceAccount token the Kubernetes API accepts, from a caller
the plan's access lists name (:mod:`.auth`). Health and reflection stay open to the
kubelet's probes, which speak plaintext gRPC only: with TLS, a second, plaintext port
(``health_port``) serves the health service and nothing else. Without them the port
is plaintext and anyone may call: for local development only, and logged as such at
start.

Stopping: on SIGTERM (or SIGINT) health turns NOT_SERVING, new requests are refused,
and in-flight ones get up to ``grace_period`` seconds to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from featurekube._proto.featurekube.serving.v1 import serving_pb2 as pb
from featurekube_server import auth, errors, metrics, plan, servicer
from featurekube_server.stores import base, dynamodb, memory, memory_data
from featurekube_server.stores import writer as pushing

__all__ = [
    "STORES",
    "FeatureServer",
    "ServerSettings",
    "TlsFiles",
    "configure_logging",
    "serve",
]

log = logging.getLogger("featurekube_server")

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["FeatureServing"].full_name

STORES: Mapping[str, Callable[[], base.OnlineStore]] = {
    "dynamodb": dynamodb.DynamoDBStore,
    "memory": memory.MemoryStore,
}
"""Online store backends by the name ``--store`` takes."""


@dataclass(frozen=True)
class ServerSettings:
    """How the server runs; the command line's options."""

    plan_path: Path
    """The serving plan (YAML), mounted from the FeatureService's ConfigMap."""
    port: int = 50051
    """gRPC port; 0 picks a free one."""
    host: str = "[::]"
    """Address to listen on."""
    metrics_port: int | None = 9090
    """Port of the Prometheus metrics (HTTP /metrics); None: not served."""
    health_port: int | None = None
    """A plaintext port serving gRPC health checking alone, for the kubelet's gRPC
    probes when the gRPC port takes TLS; None: not served."""
    store: str = "dynamodb"
    """Online store backend, a key of :data:`STORES`."""
    serving: servicer.ServingSettings = field(default_factory=servicer.ServingSettings)
    grace_period: float = 20.0
    """Seconds in-flight requests get to finish after SIGTERM (keep it below the
    pod's terminationGracePeriodSeconds, 30 by default)."""
    health_interval: float = 1.0
    """Seconds between checks of the store until it first answers."""
    max_response_bytes: int = 64 * 1024 * 1024
    """Largest response, in bytes (10,000 rows of 20 features fit). The largest
    request is ``serving.max_message_bytes``, by default derived from the plan."""
    memory_data: Path | None = None
    """With the memory store: a YAML file of rows to start with
    (:mod:`featurekube_server.stores.memory_data`)."""
    tls_cert: Path | None = None
    """PEM certificate chain of the gRPC port (``tls.crt`` of a TLS Secret); None:
    plaintext, for local development only."""
    tls_key: Path | None = None
    """Its PEM private key (``tls.key``)."""
    auth: str = "none"
    """``tokenreview``: callers send ServiceAccount tokens, checked with the Kubernetes
    API and the plan's access lists; ``none``: anyone may call (local development)."""
    token_cache_seconds: float = 60.0
    """How long an accepted token is taken without asking the API again."""
    token_audiences: tuple[str, ...] = ()
    """Audiences a token must be for (empty: the API server's own)."""


@dataclass(frozen=True)
class TlsFiles:
    """The PEM certificate chain and private key of a TLS port."""

    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes]:
        """The key and certificate chain, PEM."""
        try:
            return self.key.read_bytes(), self.cert.read_bytes()
        except OSError as exc:
            raise errors.PlanError(
                f"cannot read the TLS certificate or key ({self.cert}, {self.key}): "
                f"{exc.strerror or exc}; mount a kubernetes.io/tls Secret there"
            ) from exc

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that take a renewed certificate (the files changed) at
        the next handshake, without a restart."""
        current = [self.read()]

        def fetch() -> Any:
            try:
                pair = self.read()
            except errors.PlanError as exc:  # mid-update: keep the last good pair
                log.warning("cannot read the TLS files", extra={"fields": {"error": str(exc)}})
                return None
            if pair == current[0]:
                return None
            current[0] = pair
            log.info("TLS certificate reloaded", extra={"fields": {"cert": str(self.cert)}})
            return grpc.ssl_server_certificate_configuration([pair])

        return grpc.dynamic_ssl_server_credentials(
            grpc.ssl_server_certificate_configuration(current), fetch
        )


class FeatureServer:
    """One gRPC server over a plan and a store; start, then stop (tests run several in
    one process, each with its own metrics registry)."""

    def __init__(
        self,
        serving: plan.ServingPlan,
        store: base.OnlineStore,
        *,
        writer: base.PushWriter | None = None,
        settings: servicer.ServingSettings | None = None,
        server_metrics: metrics.ServerMetrics | None = None,
        clock: Callable[[], int] | None = None,
        health_interval: float = 1.0,
        max_response_bytes: int = 64 * 1024 * 1024,
        tls: TlsFiles | None = None,
        authenticator: auth.Authenticator | None = None,
    ) -> None:
        self.plan = serving
        self.tls = tls
        self.authenticator = authenticator
        self.store = store
        self.metrics = server_metrics or metrics.ServerMetrics(serving.feature_service)
        self.health = health.aio.HealthServicer()
        self.ready = asyncio.Event()
        self._health_interval = health_interval
        extra = {"clock": clock} if clock is not None else {}
        self.servicer = servicer.FeatureServingServicer(
            serving, store, self.metrics, settings, writer, authenticator=authenticator, **extra
        )
        # gRPC itself refuses, before reading them, requests over twice the limit; the
        # servicer refuses those in between, saying what to do.
        options = [
            ("grpc.max_receive_message_length", 2 * self.servicer.max_message_bytes),
            ("grpc.max_send_message_length", max_response_bytes),
        ]
        self._server = grpc.aio.server(options=options)
        methods = self.servicer.method_handlers()
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, methods),)
        )
        self._server.add_registered_method_handlers(SERVICE_NAME, methods)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self._readiness: asyncio.Task[None] | None = None
        self._health_server: grpc.aio.Server | None = None

    async def serve_health(self, address: str) -> int:
        """Also answer health checks, and nothing else, in plaintext on ``address``
        (the kubelet's gRPC probes cannot speak TLS); returns the port."""
        self._health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health_server)
        port = self._health_server.add_insecure_port(address)
        await self._health_server.start()
        return port

    async def start(self, address: str = "127.0.0.1:0") -> int:
        """Listen on ``address`` and start answering; returns the port. Health turns
        SERVING once the store answers (in the background)."""
        if self.tls is None:
            port = self._server.add_insecure_port(address)
        else:
            port = self._server.add_secure_port(address, self.tls.credentials())
        if self.tls is None or self.authenticator is None:
            log.warning(
                "this feature server is open: for local development only",
                extra={
                    "fields": {
                        "tls": self.tls is not None,
                        "authentication": self.authenticator is not None,
                    }
                },
            )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()
        self._readiness = asyncio.create_task(self._become_ready())
        sizes = self.servicer.request_sizes
        if sizes.largest > self.servicer.max_message_bytes:
            log.warning(
                "the largest request of the plan is over the message limit: requests of "
                "fewer rows than max_rows, or shorter values, fit",
                extra={
                    "fields": {
                        "largest_request_bytes": sizes.largest,
                        "max_message_bytes": self.servicer.max_message_bytes,
                        "max_rows": sizes.max_rows,
                    }
                },
            )
        log.info(
            "feature server started",
            extra={
                "fields": {
                    "feature_service": f"{self.plan.namespace}/{self.plan.feature_service}",
                    "address": address,
                    "port": port,
                    "features": len(self.plan.feature_names),
                    "max_message_bytes": self.servicer.max_message_bytes,
                    "largest_request_bytes": self.servicer.request_sizes.largest,
                    "max_in_flight_bytes": self.servicer.gate.capacity,
                    "tls": self.tls is not None,
                    "readers": list(self.plan.readers) if self.authenticator else None,
                    "pushers": list(self.plan.pushers) if self.authenticator else None,
                }
            },
        )
        return port

    async def _become_ready(self) -> None:
        tables = [v.online_table for v in self.plan.feature_views]
        failures = 0
        while True:
            try:
                await self.store.check(tables)
                break
            except errors.StoreUnavailableError as exc:
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    log.warning("online store not ready", extra={"fields": {"error": str(exc)}})
                await asyncio.sleep(self._health_interval)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.ready.set()
        log.info("serving", extra={"fields": {"tables": tables}})

    async def stop(self, grace: float | None) -> None:
        """Turn NOT_SERVING, refuse new requests, and give in-flight ones ``grace``
        seconds to finish (None: cancel them now)."""
        if self._readiness is not None:
            self._readiness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._readiness
        await self.health.enter_graceful_shutdown()
        started = time.perf_counter()
        await self._server.stop(grace)
        if self._health_server is not None:
            await self._health_server.stop(None)
        log.info(
            "feature server stopped",
            extra={"fields": {"drained_seconds": round(time.perf_counter() - started, 3)}},
        )

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


async def serve(settings: ServerSettings) -> None:
    """Load the plan, open the store, serve until SIGTERM or SIGINT, then drain."""
    serving = plan.load_plan(settings.plan_path)
    factory = STORES.get(settings.store)
    if factory is None:
        raise errors.PlanError(f"unknown store {settings.store!r}; choose one of {list(STORES)}")
    store = factory()
    if isinstance(store, memory.MemoryStore):
        rows = (
            []
            if settings.memory_data is None
            else memory_data.read_rows(settings.memory_data, serving)
        )
        kept = memory_data.fill(store, serving, rows)
        log.info("memory store filled", extra={"fields": {"rows": kept}})
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(store, dynamodb.DynamoDBStore):
            await stack.enter_async_context(store)
        # The memory store keeps pushed rows itself; otherwise they take the write path.
        writer: base.PushWriter = (
            store if isinstance(store, memory.MemoryStore) else pushing.WritePathPusher()
        )
        server = FeatureServer(
            serving,
            store,
            writer=writer,
            settings=settings.serving,
            health_interval=settings.health_interval,
            max_response_bytes=settings.max_response_bytes,
            tls=_tls(settings),
            authenticator=_authenticator(settings),
        )
        if settings.metrics_port is not None:
            stack.callback(metrics.serve(server.metrics, settings.metrics_port))
        await server.start(f"{settings.host}:{settings.port}")
        if settings.health_port is not None:
            await server.serve_health(f"{settings.host}:{settings.health_port}")
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stopping.set)
        await stopping.wait()
        log.info("stopping", extra={"fields": {"grace_period": settings.grace_period}})
        await server.stop(settings.grace_period)


def _tls(settings: ServerSettings) -> TlsFiles | None:
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise errors.PlanError("give both a TLS certificate and its key, or neither")
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    return TlsFiles(settings.tls_cert, settings.tls_key)


def _authenticator(settings: ServerSettings) -> auth.Authenticator | None:
    if settings.auth == "none":
        return None
    if settings.auth != "tokenreview":
        raise errors.PlanError(f"unknown auth {settings.auth!r}; choose tokenreview or none")
    try:
        reviewer = auth.KubernetesReviewer(audiences=settings.token_audiences)
    except Exception as exc:  # the kubernetes client's configuration errors vary
        raise errors.PlanError(
            f"--auth tokenreview needs the Kubernetes API (in a pod, or a kubeconfig): {exc}"
        ) from exc
    return auth.Authenticator(reviewer, ttl=settings.token_cache_seconds)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's
    ``fields`` (pass ``extra={"fields": {...}}``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Log JSON lines to stderr, times in UTC."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
