"""``featurekube ui --port N``: the web catalog of the current kubeconfig's cluster; does I/O.

    featurekube ui --port 8080
    featurekube ui --port 8080 --namespace rides --namespace payments \\
        --prometheus http://prometheus.monitoring.svc:9090

Serves :mod:`featurekube.catalog` until Ctrl-C: search across the namespaces the
kubeconfig's identity may list, each view's and service's page, and lineage. It
connects as ``featurekube plan`` and the SDK's ``FeatureStore.from_cluster`` do
(``--kubeconfig``, else ``$KUBECONFIG``, else ~/.kube/config; in a pod without one,
its ServiceAccount), and only reads.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from typing import Any

from featurekube import _deps, errors

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the ``ui`` command to the root parser's subcommands."""
    parser = commands.add_parser(
        "ui",
        help="serve the web catalog of the cluster's features",
        description="Serve the web catalog: search FeatureViews and FeatureServices by "
        "name, entity, owner, tag or description across the namespaces you may list, and "
        "see each one's features, health, statistics, drift and lineage. Read-only.",
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="HTTP port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s; 0.0.0.0 in a pod)",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NAMESPACE",
        help="list only this namespace (repeatable; default: every namespace you may list)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=None,
        help="the kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config; in a pod "
        "without one, its ServiceAccount)",
    )
    parser.add_argument(
        "--prometheus",
        metavar="URL",
        default=os.environ.get("FEATUREKUBE_PROMETHEUS_URL"),
        help="a Prometheus server to ask for request rate and latency (default: "
        "$FEATUREKUBE_PROMETHEUS_URL; without it, the feature servers' own /metrics)",
    )
    parser.add_argument(
        "--refresh",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long a listing of the cluster is reused (default: %(default)s)",
    )
    parser.set_defaults(run=_run)


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.port <= 65535:
        raise errors.FeaturekubeError(f"--port {args.port}: expected a TCP port, 1 to 65535")
    if not 0.5 <= args.refresh <= 600:
        raise errors.FeaturekubeError(
            f"--refresh {args.refresh}: expected 0.5 to 600 seconds between listings"
        )
    if args.prometheus and not args.prometheus.startswith(("http://", "https://")):
        raise errors.FeaturekubeError(
            f"--prometheus {args.prometheus!r}: expected an http:// or https:// URL, e.g. "
            "http://prometheus.monitoring.svc:9090"
        )
    try:
        ipaddress.ip_address(args.host)
    except ValueError:
        if args.host != "localhost":
            raise errors.FeaturekubeError(
                f"--host {args.host!r}: expected an IP address to listen on, e.g. 127.0.0.1"
            ) from None


def _run(args: argparse.Namespace) -> int:
    _check(args)
    _deps.import_optional("aiohttp", extra="ui")
    from aiohttp import web

    from featurekube.catalog import cluster, server
    from featurekube.planning import cluster as planning_cluster

    # The same connection as FeatureStore.from_cluster: kubeconfig, else the pod's own.
    with planning_cluster.connect_here(args.kubeconfig) as connection:
        source = cluster.Source(
            connection,
            namespaces=args.namespace,
            ttl=args.refresh,
            max_stale=max(60.0, args.refresh * 4),
        )
        listing = source.listing()  # fail now, not on the first page, if the cluster is not there
        app = server.create_app(source, server.CatalogSettings(prometheus_url=args.prometheus))
        shown = ", ".join(listing.catalog.namespaces) or "none"
        print(
            f"featurekube catalog of {connection.server} (namespaces: {shown}) at "
            f"http://{_url_host(args.host)}:{args.port}/",
            flush=True,
        )
        try:
            web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
        except OSError as exc:
            raise errors.FeaturekubeError(
                f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}. Choose "
                "another --port"
            ) from exc
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
