"""``featurekube-server --plan PLAN.yaml --port N``: serve one FeatureService's features.

The operator's Deployment runs it with the plan mounted from the service's ConfigMap;
AWS settings (region, credentials, ``AWS_ENDPOINT_URL``) come from the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from featurekube import errors as featurekube_errors
from featurekube_server import server, servicer

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featurekube-server", description=__doc__)
    parser.add_argument("--plan", type=Path, required=True, help="the serving plan (YAML)")
    parser.add_argument("--port", type=int, default=50051, help="gRPC port (default %(default)s)")
    parser.add_argument("--host", default="[::]", help="address to listen on (default %(default)s)")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9090,
        help="Prometheus metrics port, HTTP /metrics; 0 turns them off (default %(default)s)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=0,
        help="a plaintext port answering gRPC health checks alone, for the kubelet's "
        "probes when the gRPC port takes TLS; 0: none (default %(default)s)",
    )
    parser.add_argument(
        "--store",
        choices=sorted(server.STORES),
        default="dynamodb",
        help="online store backend (default %(default)s)",
    )
    parser.add_argument(
        "--memory-data",
        type=Path,
        metavar="FILE",
        help="with --store memory: a YAML file of rows to start with (default: none; every "
        "entity is NOT_FOUND until pushed)",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=10_000,
        help="most entity rows in one request (default %(default)s)",
    )
    parser.add_argument(
        "--max-string-bytes",
        type=int,
        default=1024,
        help="most bytes (UTF-8) of one string value: join keys, request fields, pushed "
        "features (default %(default)s)",
    )
    parser.add_argument(
        "--max-array-length",
        type=int,
        default=2048,
        help="most values of one float64 array (default %(default)s)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        metavar="BYTES",
        help="largest request; larger ones are refused with RESOURCE_EXHAUSTED (default: "
        "the plan's largest request of --max-rows rows with values at their limits, plus a "
        "quarter, between 1 and 16 MiB)",
    )
    parser.add_argument(
        "--max-in-flight-bytes",
        type=int,
        default=16 * 1024 * 1024,
        metavar="BYTES",
        help="bytes of requests decoded and answered at once; others wait their turn "
        "(default %(default)s; decoding takes 5 to 7 bytes per byte received)",
    )
    parser.add_argument(
        "--max-waiting-bytes",
        type=int,
        default=48 * 1024 * 1024,
        metavar="BYTES",
        help="bytes of requests waiting their turn; beyond it they are refused with "
        "RESOURCE_EXHAUSTED (default %(default)s; the defaults fit a pod memory limit of "
        "512Mi)",
    )
    parser.add_argument(
        "--default-timeout",
        type=float,
        default=10.0,
        help="seconds a request may take when its caller sets no deadline (default %(default)s)",
    )
    parser.add_argument(
        "--grace-period",
        type=float,
        default=20.0,
        help="seconds in-flight requests get to finish on SIGTERM (default %(default)s)",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        help="PEM certificate chain of the gRPC port, e.g. tls.crt of a mounted TLS Secret "
        "(with --tls-key; default: plaintext, for local development only)",
    )
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help="its PEM private key")
    parser.add_argument(
        "--auth",
        choices=["tokenreview", "none"],
        default="none",
        help="tokenreview: each call needs a ServiceAccount token the Kubernetes API "
        "accepts, from a caller the plan's access lists name; none: anyone may call, for "
        "local development only (default %(default)s)",
    )
    parser.add_argument(
        "--token-cache-seconds",
        type=float,
        default=60.0,
        help="how long an accepted token is taken without asking the Kubernetes API again "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--token-audience",
        action="append",
        default=[],
        metavar="AUDIENCE",
        help="an audience tokens must be for (repeatable; default: the API server's)",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="least severe log level written (default %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM; returns the exit status."""
    args = build_parser().parse_args(argv)
    server.configure_logging(getattr(logging, args.log_level.upper()))
    settings = server.ServerSettings(
        plan_path=args.plan,
        port=args.port,
        host=args.host,
        metrics_port=args.metrics_port or None,
        health_port=args.health_port or None,
        store=args.store,
        serving=servicer.ServingSettings(
            max_rows=args.max_rows,
            default_timeout=args.default_timeout,
            max_string_bytes=args.max_string_bytes,
            max_array_length=args.max_array_length,
            max_message_bytes=args.max_message_bytes,
            max_in_flight_bytes=args.max_in_flight_bytes,
            max_waiting_bytes=args.max_waiting_bytes,
        ),
        grace_period=args.grace_period,
        memory_data=args.memory_data,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        auth=args.auth,
        token_cache_seconds=args.token_cache_seconds,
        token_audiences=tuple(args.token_audience),
    )
    try:
        asyncio.run(server.serve(settings))
    except featurekube_errors.FeaturekubeError as exc:
        logging.getLogger("featurekube_server").error(
            "cannot serve", extra={"fields": {"error": str(exc)}}
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
