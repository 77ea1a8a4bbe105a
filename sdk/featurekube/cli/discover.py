"""``featurekube list`` and ``featurekube describe``: find features from the command line.

    featurekube list -A --tag team=rides --entity driver_id
    featurekube describe fv/driver-profile -n rides -o json

Thin: it reads the FeatureViews and FeatureServices the kubeconfig's identity may list
(as the web catalog does: cluster-wide when allowed, else each namespace it may list),
and prints what :mod:`featurekube.discovery` makes of them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from featurekube import discovery, errors

__all__ = ["register"]


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="the namespace (default: the kubeconfig context's, else default)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="table (default) or json",
    )


def register(commands: Any) -> None:
    """Add the ``list`` and ``describe`` commands to the root parser's subcommands."""
    listing = commands.add_parser(
        "list",
        help="list FeatureViews and FeatureServices, by owner, tag or entity",
        description="List the FeatureViews and FeatureServices of a namespace, or of every "
        "namespace you may list (-A), with their owner, entities, readiness, serving version, "
        "freshness and tags. Filters combine: an object is shown when it matches all.",
    )
    _add_common(listing)
    listing.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="every namespace the kubeconfig's identity may list",
    )
    listing.add_argument("--owner", help="only those of this owner (spec.owner, any case)")
    listing.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only those with this tag (KEY alone: any value); repeatable",
    )
    listing.add_argument(
        "--entity",
        metavar="JOIN_KEY",
        help="only views of this entity (join key), and services serving one",
    )
    listing.set_defaults(run=run_list)

    describe = commands.add_parser(
        "describe",
        help="show one FeatureView or FeatureService: spec, versions, health",
        description="Show a FeatureView (fv/NAME) or FeatureService (fs/NAME): its spec in "
        "brief, versions, status conditions, freshness, expectation verdicts and drift (a "
        "view), or its features, endpoint and parity check (a service). A name alone means "
        "whichever of the two exists.",
    )
    describe.add_argument("reference", metavar="VIEW|SERVICE", help="fv/NAME, fs/NAME or NAME")
    _add_common(describe)
    describe.set_defaults(run=run_describe)


def _read(namespace: str | None, everywhere: bool) -> tuple[Any, str]:
    """The catalog of ``namespace`` (default: the kubeconfig context's, else default),
    or of every namespace the identity may list; and the namespace meant."""
    from featurekube.catalog import cluster as catalog_cluster
    from featurekube.planning import cluster

    with cluster.connect() as connection:
        meant = namespace or connection.namespace or "default"
        source = catalog_cluster.Source(connection, namespaces=() if everywhere else (meant,))
        catalog = source.listing().catalog
    for skipped in catalog.skipped:
        print(f"featurekube: not listed: {skipped}", file=sys.stderr)
    return catalog, meant


def run_list(args: argparse.Namespace) -> int:
    """List; returns the exit status."""
    if len(args.tag) > discovery.MAX_TAG_FILTERS:
        raise errors.CatalogQueryError(
            f"{len(args.tag)} --tag filters: give at most {discovery.MAX_TAG_FILTERS}"
        )
    filters = discovery.Filters(
        owner=args.owner,
        tags=tuple(discovery.parse_tag(t) for t in args.tag),
        entity=args.entity,
    )
    catalog, namespace = _read(args.namespace, args.all_namespaces)
    rows = discovery.list_rows(catalog.views.values(), catalog.services.values(), filters)
    if args.output == "json":
        print(discovery.render_json(rows))
    elif rows:
        print(discovery.render_table(rows))
    else:
        where = "any namespace you may list" if args.all_namespaces else namespace
        print(f"no FeatureViews or FeatureServices match in {where}", file=sys.stderr)
    return 0


def run_describe(args: argparse.Namespace) -> int:
    """Describe; returns the exit status."""
    discovery.parse_reference(args.reference)  # a malformed reference asks nothing
    catalog, namespace = _read(args.namespace, everywhere=False)
    found = discovery.resolve(
        args.reference, namespace, catalog.views.values(), catalog.services.values()
    )
    described = (
        discovery.describe_view(found)
        if isinstance(found, discovery.View)
        else discovery.describe_service(found)
    )
    if args.output == "json":
        print(discovery.render_json(described))
    else:
        print(discovery.render_description(described))
    return 0
