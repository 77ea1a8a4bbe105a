"""``featurekube dev up | down | env``: the local platform for development and tests."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from featurekube._platform import platform, spark_operator

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the ``dev`` command group to the root parser's subcommands."""
    parser = commands.add_parser(
        "dev",
        help="run the local platform (Kubernetes API, S3, DynamoDB, Kafka) in the background",
        description="The local platform: a real kube-apiserver, etcd and "
        "kube-controller-manager, moto's S3 and DynamoDB, and a Kafka broker, on loopback.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the platform keeps its files (default: $FEATUREKUBE_STATE_DIR "
        "or ~/.local/state/featurekube/dev)",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    up = actions.add_parser(
        "up",
        parents=[common],
        help="start the platform (or find it running) and print its environment",
    )
    up.add_argument(
        "--crds",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="also install the CRDs in DIR (repeatable)",
    )
    up.add_argument(
        "--operator",
        metavar="OFFLINE_URI",
        default=None,
        help="also run featurekube's operator, keeping offline tables under OFFLINE_URI "
        "(e.g. s3://featurekube-demo/offline)",
    )
    up.add_argument(
        "--node",
        action="store_true",
        help="also run a real node: kube-scheduler, containerd, the kubelet, kube-proxy "
        "and CoreDNS (one per machine; the first start builds them, about 10 minutes)",
    )
    up.add_argument(
        "--no-spark-operator",
        action="store_true",
        help="with --node, do not install the Kubeflow Spark Operator (installed by "
        "default when `make spark-operator` has built its image)",
    )
    up.add_argument(
        "--no-kafka",
        action="store_true",
        help="do not run Kafka (it needs Java 17 and pyspark's Ivy to fetch its jars; "
        "without it the platform starts with one JVM less)",
    )
    up.set_defaults(run=_up)
    down = actions.add_parser(
        "down",
        parents=[common],
        help="stop the platform, unless another process holds it",
        description="Stop the platform of the state directory. A platform held by another "
        "live process (a test run, `make demo` while it runs) is not stopped: the command "
        "names that process and exits 1, unless --force.",
    )
    down.add_argument(
        "--force",
        action="store_true",
        help="stop the platform even while other processes hold it",
    )
    down.set_defaults(run=_down)
    env = actions.add_parser(
        "env", parents=[common], help="print `export` lines for the running platform"
    )
    env.set_defaults(run=_env)


def _platform(args: argparse.Namespace) -> platform.LocalPlatform:
    state_dir = args.state_dir or platform.default_state_dir()
    crds = tuple(getattr(args, "crds", ()))
    settings = platform.PlatformSettings(
        state_dir=state_dir,
        crd_dirs=crds,
        operator_offline_uri=getattr(args, "operator", None),
        node=getattr(args, "node", False),
        kafka=not getattr(args, "no_kafka", False),
        spark_operator=not getattr(args, "no_spark_operator", False),
    )
    return platform.LocalPlatform(settings)


def _print_env(endpoints: platform.Endpoints) -> None:
    for key, value in endpoints.environment().items():
        print(f"export {key}={shlex.quote(value)}")


def _up(args: argparse.Namespace) -> int:
    local = _platform(args)
    started = time.monotonic()
    running = local.endpoints()
    if running is None:
        print(f"starting the local platform in {local.layout.root} ...", file=sys.stderr)
        endpoints = local.start()
        print(f"ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
    else:
        local.check_reusable(running)
        endpoints = running
        print(describe_reuse(local.layout.root, running), file=sys.stderr)
    print(f"# Kubernetes API: {endpoints.apiserver_url}", file=sys.stderr)
    if endpoints.node:
        print(
            f"# node: {endpoints.node} (kubelet, containerd, kube-proxy, CoreDNS)", file=sys.stderr
        )
        print(f"# Spark Operator: {_describe_spark_operator(local, endpoints)}", file=sys.stderr)
    print(f"# S3 and DynamoDB: {endpoints.aws_endpoint_url}", file=sys.stderr)
    if endpoints.kafka_bootstrap_servers:
        print(f"# Kafka: {endpoints.kafka_bootstrap_servers} (KRaft, one broker)", file=sys.stderr)
        if endpoints.kafka_pods_bootstrap_servers:
            print(
                f"# Kafka for the node's pods: {endpoints.kafka_pods_bootstrap_servers}",
                file=sys.stderr,
            )
    elif local.settings.kafka:
        print(
            "# Kafka: not running (this platform was started without it; `featurekube dev "
            f"down{_state_flag(args)}` and `featurekube dev up` start one with it)",
            file=sys.stderr,
        )
    buckets = ", ".join(f"s3://{bucket}" for bucket in local.settings.buckets)
    print(f"# buckets: {buckets} (featurekube materialize's default)", file=sys.stderr)
    print(f"# logs: {endpoints.log_dir}", file=sys.stderr)
    print('# eval "$(featurekube dev env)" to use it from this shell', file=sys.stderr)
    print(f"# stop it: featurekube dev down{_state_flag(args)}", file=sys.stderr)
    _print_env(endpoints)
    return 0


def _describe_spark_operator(local: platform.LocalPlatform, endpoints: platform.Endpoints) -> str:
    if endpoints.spark_operator:
        return f"{endpoints.spark_operator} in namespace {spark_operator.NAMESPACE}"
    if not local.settings.spark_operator:
        return "not installed (--no-spark-operator)"
    return f"not installed: {spark_operator.NOT_BUILT}"


def describe_reuse(state_dir: Path, running: platform.Endpoints) -> str:
    """The line saying that a platform already running is reused, and whose it is."""
    started = running.describe_start()
    return (
        f"already running: reusing the local platform in {state_dir}"
        + (f" ({started})" if started else "")
        + "; it is shared with whoever else uses this state directory (--state-dir or "
        "$FEATUREKUBE_STATE_DIR picks another)"
    )


def _state_flag(args: argparse.Namespace) -> str:
    return f" --state-dir {shlex.quote(str(args.state_dir))}" if args.state_dir else ""


def _down(args: argparse.Namespace) -> int:
    local = _platform(args)
    if local.stop(force=args.force):
        print(f"stopped the local platform in {local.layout.root}", file=sys.stderr)
    else:
        print(f"no local platform was running in {local.layout.root}", file=sys.stderr)
    return 0


def _env(args: argparse.Namespace) -> int:
    endpoints = _platform(args).endpoints()
    if endpoints is None:
        print("the local platform is not running: `featurekube dev up` starts it", file=sys.stderr)
        return 1
    _print_env(endpoints)
    return 0
