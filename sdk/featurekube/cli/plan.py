"""``featurekube plan DIR``: what applying a directory of definitions would change.

Thin: reads DIR through the spec models, reads the live objects
(:mod:`featurekube.planning.cluster`), plans (:mod:`featurekube.planning.diff`) and
prints. The exit status is for a GitOps repo's CI to gate on, like
``terraform plan -detailed-exitcode``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import pydantic
import yaml

from featurekube.planning import diff
from featurekube.spec import loader
from featurekube.validation import schema

__all__ = ["EXIT_BREAKING", "EXIT_CHANGES", "EXIT_ERROR", "EXIT_NO_CHANGES", "register"]

EXIT_NO_CHANGES = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_BREAKING = 3

_EPILOG = f"""\
exit status:
  {EXIT_NO_CHANGES}  no changes
  {EXIT_ERROR}  an error (DIR does not parse, the cluster cannot be read)
  {EXIT_CHANGES}  changes, none of them breaking
  {EXIT_BREAKING}  breaking changes: a feature a FeatureService uses is removed or
     retyped, an entity key of a materialized view changes, or a view a
     FeatureService uses is deleted or no longer shared with it
"""


def register(commands: Any) -> None:
    """Add the ``plan`` command to the root parser's subcommands."""
    parser = commands.add_parser(
        "plan",
        help="show what applying DIR would change in the cluster, and what it would break",
        description="Compare the FeatureViews and FeatureServices in DIR with those in the "
        "cluster of KUBECONFIG's current context: what applying DIR would create, change "
        "(field by field), leave alone or delete, which changes break a consumer, and "
        "which create a new data version and the backfill it starts (windows, jobs, time "
        "span from startTime, engine).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="a YAML file, or a directory of them")
    parser.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="the namespace of objects whose metadata names none (default: the "
        "kubeconfig context's namespace, else default)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text for people (default), json for machines",
    )
    parser.add_argument(
        "--no-prune",
        dest="prune",
        action="store_false",
        help="do not delete objects that DIR's namespaces hold but DIR does not "
        "(by default they are deleted, as Argo CD's prune does)",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    # Imported here: the Kubernetes client takes half a second to import, which
    # the other commands need not pay.
    from featurekube.planning import cluster

    documents = _load(args.dir)
    if documents is None:
        return EXIT_ERROR
    with cluster.connect() as connection:
        default_namespace = args.namespace or connection.namespace or "default"
        desired = [
            (document, diff.resolve_namespace(resource, default_namespace))
            for document, resource in documents
        ]
        if not _unique(desired):
            return EXIT_ERROR
        namespaces = {diff.ObjectRef.of(resource).namespace for _, resource in desired}
        live = cluster.read_live(connection, namespaces)
    for warning in live.warnings:
        print(f"featurekube: warning: {warning}", file=sys.stderr)
    plan = diff.plan_apply([r for _, r in desired], live.resources, prune=args.prune, now=_now())
    if args.output == "json":
        print(json.dumps(plan.to_json(), indent=2))
    else:
        print(diff.render_text(plan), end="")
    if plan.breaking:
        return EXIT_BREAKING
    return EXIT_CHANGES if plan.has_changes else EXIT_NO_CHANGES


def _now() -> dt.datetime:
    """The time new versions' backfills are counted up to."""
    return dt.datetime.now(dt.UTC)


def _load(root: Path) -> list[tuple[loader.Document, loader.Resource]] | None:
    """DIR's featurekube objects; None, after printing why, if DIR does not parse."""
    if not root.exists():
        _fail([f"{root}: no such file or directory"])
        return None
    try:
        documents = loader.load_documents(loader.iter_yaml_files(root))
    except yaml.YAMLError as exc:
        _fail([f"not valid YAML: {exc}"])
        return None
    found: list[tuple[loader.Document, loader.Resource]] = []
    problems: list[str] = []
    for document in documents:
        if not document.is_ours and not _is_ours_misspelled(document):
            print(
                f"featurekube: note: {document.path}:{document.line_of(())}: skipping "
                f"{document.api_version}/{document.kind}: not a featurekube object",
                file=sys.stderr,
            )
            continue
        try:
            found.append((document, loader.parse_resource(document)))
        except pydantic.ValidationError as exc:
            problems.extend(_describe(document, exc))
        except ValueError as exc:
            problems.append(f"{document.path}:{document.line_of(())}: {exc}")
    if problems:
        _fail(problems)
        return None
    return found


def _is_ours_misspelled(document: loader.Document) -> bool:
    """A document of featurekube's group that names a version or kind it does not know:
    an error, where other projects' objects (a ConfigMap) are skipped."""
    if not isinstance(document.body, dict):
        return True
    return (document.api_version or "").split("/")[0] == "featurekube.dev"


def _describe(document: loader.Document, exc: pydantic.ValidationError) -> list[str]:
    """One ``FILE:LINE: Kind/name: path: message`` line per problem, as validate says it."""
    model = loader.KINDS[document.kind or ""]
    return [str(problem) for problem in schema.problems_from_error(document, model, exc)]


def _unique(desired: list[tuple[loader.Document, loader.Resource]]) -> bool:
    """Whether no object is defined twice; prints those that are."""
    seen: dict[diff.ObjectRef, loader.Document] = {}
    problems = []
    for document, resource in desired:
        ref = diff.ObjectRef.of(resource)
        first = seen.setdefault(ref, document)
        if first is not document:
            problems.append(
                f"{document.path}:{document.line_of(())}: {ref} is defined twice: first at "
                f"{first.path}:{first.line_of(())}"
            )
    if problems:
        _fail(problems)
    return not problems


def _fail(problems: list[str]) -> None:
    print(f"featurekube: error: {len(problems)} problem(s) in the definitions:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
