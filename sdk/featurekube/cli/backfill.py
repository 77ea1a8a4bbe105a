"""``featurekube backfill VIEW --start --end``: ask the operator to run windows again.

    featurekube backfill driver-trip-stats -n rides --start 2026-03-01 --end 2026-03-08

Thin: it writes the view's ``featurekube.dev/backfill`` annotation (see
:mod:`featurekube.backfills`) with the time of the request as its note, so each command
is a new request, and prints how to follow it. The operator re-runs the windows of
[start, end) the view has materialized (late data is picked up; re-running a window is
idempotent), and gives windows that stopped after too many failures fresh attempts.
In a GitOps repository, write the same annotation in the view's YAML instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from kubernetes.client.exceptions import ApiException

from featurekube import backfills, errors
from featurekube.spec import v1alpha1

__all__ = ["register"]


def _time(text: str) -> dt.datetime:
    try:
        return backfills.parse_time(text, "--start/--end")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(commands: Any) -> None:
    """Add the ``backfill`` command to the root parser's subcommands."""
    parser = commands.add_parser(
        "backfill",
        help="run windows of a FeatureView again (late data, or after fixing a failure)",
        description="Ask the operator to materialize the windows of [START, END) of a "
        "FeatureView again, through its featurekube.dev/backfill annotation. Windows it "
        "has materialized run again (idempotently: each replaces what it wrote); windows "
        "that stopped after too many failures get fresh attempts. What the view serves "
        "does not change while they run.",
    )
    parser.add_argument("view", metavar="VIEW", help="the FeatureView's name")
    parser.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="its namespace (default: the kubeconfig context's namespace, else default)",
    )
    parser.add_argument("--start", required=True, type=_time, help="first instant (ISO 8601, UTC)")
    parser.add_argument("--end", required=True, type=_time, help="end, excluded (ISO 8601, UTC)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the request; returns the exit status."""
    from featurekube.planning import cluster

    if args.end <= args.start:
        raise errors.DefinitionsError(
            f"--end {args.end:%Y-%m-%dT%H:%M:%SZ} is not after --start "
            f"{args.start:%Y-%m-%dT%H:%M:%SZ}: give the window [start, end) to run again"
        )
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    text = backfills.format_request(args.start, args.end, f"requested {now}")
    with cluster.connect() as connection:
        namespace = args.namespace or connection.namespace or "default"
        where = f"FeatureView {namespace}/{args.view}"
        import kubernetes.client

        custom = kubernetes.client.CustomObjectsApi(connection.api)
        try:
            custom.patch_namespaced_custom_object(
                v1alpha1.GROUP,
                v1alpha1.VERSION,
                namespace,
                "featureviews",
                args.view,
                {"metadata": {"annotations": {backfills.ANNOTATION: text}}},
            )
        except ApiException as exc:
            if exc.status == 404:
                raise errors.ClusterError(
                    f"{where} does not exist in {connection.server}: check the name and "
                    "--namespace (kubectl get featureviews -A)"
                ) from exc
            if exc.status == 403:
                raise errors.ForbiddenError(
                    f"context {connection.context!r} may not patch {where}: grant its "
                    f"identity patch on featureviews.{v1alpha1.GROUP}"
                ) from exc
            raise errors.ClusterError(
                f"{connection.server} answered {exc.status} {exc.reason} to patching {where}"
            ) from exc
    print(
        f"asked {where} to run [{args.start:%Y-%m-%dT%H:%M:%SZ}, "
        f"{args.end:%Y-%m-%dT%H:%M:%SZ}) again (request "
        f"{backfills.parse_request(text).id}); follow it with: kubectl get featureview "
        f"{args.view} -n {namespace} -o jsonpath='{{.status.progress}}'"
    )
    return 0
