"""``featurekube validate DIR``: check feature definitions offline, for a GitOps repo's CI.

Prints one line per problem (``FILE:LINE: Kind/name: spec.path: message``) or, with
``--output json``, a JSON array of them; exit status 1 when there are problems, 0 and
a one-line summary when there are none.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from featurekube import errors, validation

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the ``validate`` command to the root parser's subcommands."""
    parser = commands.add_parser(
        "validate",
        help="check a directory of feature definitions without a cluster",
        description="Check every *.yaml and *.yml file below DIR (or the file DIR): the "
        "CRD schema, references between FeatureServices and FeatureViews, entity key "
        "types, duplicate names, and the Spark SQL of transformations. Exit status 1 "
        "when anything is wrong.",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="a directory or a YAML file")
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="text: one line per problem (default); json: a JSON array of problems",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    root = _shown(args.dir)
    # sqlglot warns on stderr when it parses unknown statements loosely; the problem
    # it would hint at is reported anyway.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    try:
        report = validation.validate_path(root)
    except FileNotFoundError:
        raise errors.FeaturekubeError(f"{args.dir}: no such file or directory") from None
    if not report.files:
        raise errors.FeaturekubeError(f"{args.dir}: no *.yaml or *.yml files to validate")
    if args.output == "json":
        print(json.dumps([p.to_json() for p in report.problems], indent=2))
    else:
        for problem in report.problems:
            print(problem)
        summary = f"{args.dir}: {report.summary()}"
        print(summary, file=sys.stderr if report.problems else sys.stdout)
    return 0 if report.ok else 1


def _shown(path: Path) -> Path:
    """``path`` relative to the current directory when it is below it, so that problems
    name files as a user in that directory would."""
    if not path.is_absolute():
        return path
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path
