"""``featurekube serve DIR --feature-service NS/NAME``: a feature server on this machine,
from a directory of YAML, without the operator; does I/O.

It renders the serving plan the operator would (:mod:`featurekube.serving_plan`),
naming each view's online table as ``featurekube materialize`` does for version 1
(``$FEATUREKUBE_TABLE_PREFIX<namespace>.<view>.v1``), and runs ``featurekube-server``
on it in a child process until Ctrl-C: against DynamoDB as the ``AWS_*`` environment
points (the local platform's after ``eval "$(featurekube dev env)"``), or with
``--memory`` against values held in memory, empty or loaded from ``--data``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from featurekube import errors, serving_plan
from featurekube.offline import layout as offline_layout
from featurekube.online import layout as online_layout
from featurekube.spec import v1alpha1

__all__ = ["register", "render_plan"]

DEFAULT_TABLE_PREFIX = "featurekube."
DEFAULT_OFFLINE_ROOT = "s3://featurekube/offline"
VERSION = 1
"""The view version whose tables are served: the one `featurekube materialize` writes."""


def register(commands: Any) -> None:
    """Add the ``serve`` command to the root parser's subcommands."""
    parser = commands.add_parser(
        "serve",
        help="run a feature server locally from YAML, without the operator",
        description="Serve a FeatureService of DIR over gRPC on this machine: render the "
        "serving plan the operator would from the service and its views' YAML, and run "
        "featurekube-server on it until Ctrl-C, reading DynamoDB as the AWS_* environment "
        "points (e.g. the local platform), or values held in memory.",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="a directory or a YAML file")
    parser.add_argument(
        "--feature-service",
        metavar="[NAMESPACE/]NAME",
        help="the service to serve (default: the only one in DIR)",
    )
    parser.add_argument("--port", type=int, default=50051, help="gRPC port (default: %(default)s)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="serve values held in memory, not DynamoDB: empty (NOT_FOUND) until pushed, "
        "or loaded from --data",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="YAML rows to serve from memory (implies --memory): one document per view, "
        "{featureView: NAME, rows: [{KEY: ..., event_timestamp: ..., FEATURE: ...}]}",
    )
    parser.add_argument(
        "--table-prefix",
        default=os.environ.get("FEATUREKUBE_TABLE_PREFIX", DEFAULT_TABLE_PREFIX),
        help="prefix of the online tables, as materialize names them "
        "(default: $FEATUREKUBE_TABLE_PREFIX or %(default)s)",
    )
    parser.add_argument(
        "--offline-uri",
        default=os.environ.get("FEATUREKUBE_OFFLINE_URI", DEFAULT_OFFLINE_ROOT),
        help="root of the offline store, where push-source views' pushed rows are appended "
        "(default: $FEATUREKUBE_OFFLINE_URI or %(default)s)",
    )
    parser.add_argument(
        "--print-plan", action="store_true", help="print the serving plan (YAML) and exit"
    )
    parser.set_defaults(run=_run)


def _service(
    services: list[v1alpha1.FeatureService], wanted: str | None, root: Path
) -> v1alpha1.FeatureService:
    def full(service: v1alpha1.FeatureService) -> str:
        return f"{service.metadata.namespace or 'default'}/{service.metadata.name}"

    names = ", ".join(full(s) for s in services) or "none"
    if wanted is None:
        if len(services) == 1:
            return services[0]
        raise errors.DefinitionsError(
            f"{root} holds {len(services)} FeatureServices ({names}): choose one with "
            "--feature-service NAMESPACE/NAME"
        )
    for service in services:
        if wanted in (full(service), service.metadata.name):
            return service
    raise errors.DefinitionsError(
        f"{root}: no FeatureService {wanted}; found {names}: check --feature-service"
    )


def render_plan(
    views: list[v1alpha1.FeatureView],
    service: v1alpha1.FeatureService,
    table_prefix: str,
    offline_root: str,
) -> dict[str, Any]:
    """The serving plan of ``service``, its views' tables named for version 1; pure."""
    by_key = {(v.metadata.namespace or "default", v.metadata.name): v for v in views}
    resolved = serving_plan.resolve_references(
        service,
        by_key,
        online_table=lambda ns, name: online_layout.table_name(table_prefix, ns, name, VERSION),
        offline_uri=lambda ns, name: offline_layout.table_uri(offline_root, ns, name, VERSION),
    )
    return serving_plan.render_serving_plan(service, resolved)


def _server_command(args: argparse.Namespace, plan_file: Path, memory: bool) -> list[str]:
    if importlib.util.find_spec("featurekube_server") is None or (
        importlib.util.find_spec("grpc") is None
    ):
        raise errors.MissingDependencyError(
            "featurekube serve runs the feature server, which is not installed: "
            "pip install 'featurekube[server]'"
        )
    command = [sys.executable, "-m", "featurekube_server", "--plan", str(plan_file)]
    command += ["--port", str(args.port), "--host", args.host, "--metrics-port", "0"]
    command += ["--store", "memory" if memory else "dynamodb", "--log-level", "warning"]
    if args.data is not None:
        command += ["--memory-data", str(args.data)]
    return command


def _run(args: argparse.Namespace) -> int:
    from featurekube.store import FeatureStore

    store = FeatureStore.from_directory(args.dir)
    service = _service(store.list_feature_services("*"), args.feature_service, args.dir)
    plan = render_plan(
        store.list_feature_views("*"), service, args.table_prefix, args.offline_uri.rstrip("/")
    )
    if args.print_plan:
        print(yaml.safe_dump(plan, sort_keys=False), end="")
        return 0
    memory = args.memory or args.data is not None
    if args.data is not None and not args.data.is_file():
        raise errors.DefinitionsError(f"--data {args.data}: no such file")
    name = f"{plan['namespace']}-{plan['featureService']}"
    plan_file = Path(tempfile.gettempdir()) / f"featurekube-serve-{name}.yaml"
    plan_file.write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
    command = _server_command(args, plan_file, memory)
    tables = ", ".join(v["onlineTable"] for v in plan["featureViews"])
    source = (
        f"memory{f' (rows from {args.data})' if args.data else ''}"
        if memory
        else (f"DynamoDB tables {tables}")
    )
    print(
        f"serving FeatureService {plan['namespace']}/{plan['featureService']} on "
        f"{args.host}:{args.port} from {source}; plan: {plan_file}; Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    child = subprocess.Popen(command)
    # Stopping this command stops the server, which drains in-flight requests first.
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    try:
        return child.wait()
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches both; a signal sent to this process alone, only it.
        child.send_signal(signal.SIGINT)
        child.wait()
        return 0
