"""Entry point of the ``featurekube`` command: parses arguments, runs a subcommand.

Subcommands are thin: they parse, call the library, and print. A
:class:`~featurekube.errors.FeaturekubeError` ends the command with its message on
stderr and exit status 1, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from featurekube import errors
from featurekube.cli import dev, get, materialize, plan, validate

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="featurekube",
        description="A Kubernetes-native feature store: features as code, served over gRPC.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate.register(commands)
    plan.register(commands)
    materialize.register(commands)
    get.register(commands)
    dev.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except errors.FeaturekubeError as exc:
        print(f"featurekube: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `featurekube plan -o json | head`: the reader has all it wanted.
        sys.stderr.close()
        return 141
    return status


if __name__ == "__main__":
    sys.exit(main())
