"""``featurekube-operator``: run the operator against the cluster in KUBECONFIG, or the
one it runs in."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Sequence

import kopf

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The operator's command line."""
    parser = argparse.ArgumentParser(prog="featurekube-operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="act without peering (one replica only); default: peer through KopfPeering",
    )
    parser.add_argument(
        "--peering", default="featurekube", help="name of the peering object (default %(default)s)"
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority; default: random, so that of several replicas the one "
        "with the highest acts and the others pause (an exact tie pauses both)",
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="liveness endpoint URL (default %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=["json", "full", "plain"],
        default="json",
        help="log lines as JSON objects (default, for log collectors) or text",
    )
    parser.add_argument("--verbose", action="store_true", help="log at debug level")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run until interrupted; returns the exit status."""
    args = build_parser().parse_args(argv)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])

    from featurekube_operator import handlers  # noqa: F401  (registers the handlers)

    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=args.standalone,
            priority=args.priority if args.priority is not None else secrets.randbelow(2**31),
            # A peering name makes peering mandatory, even when told to stand alone.
            peering_name=None if args.standalone else args.peering,
            liveness_endpoint=args.liveness,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
