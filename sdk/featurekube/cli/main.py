"""Entry point of the ``featurekube`` command: parses arguments, runs a subcommand.

Subcommands are thin: they parse, call the library, and print. A
:class:`~featurekube.errors.FeaturekubeError` ends the command with exit status 1 and
one line on stderr, the first of its message (what is wrong, where, what to do);
``--verbose``, accepted before or after the subcommand, adds the rest of the message
and the chain of errors that caused it, with their tracebacks.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Iterator, Sequence

from featurekube import errors
from featurekube.cli import backfill, dev, discover, get, materialize, plan, serve, ui, validate

__all__ = ["build_parser", "main", "render_error"]

VERBOSE_HELP = "print an error's detail and causes (and materialize's Spark output)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="featurekube",
        description="A Kubernetes-native feature store: features as code, served over gRPC.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate.register(commands)
    plan.register(commands)
    materialize.register(commands)
    backfill.register(commands)
    get.register(commands)
    discover.register(commands)
    serve.register(commands)
    ui.register(commands)
    dev.register(commands)
    for command in _subcommands(parser):
        # SUPPRESS: a subcommand's parser leaves a --verbose given before it alone.
        command.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
        )
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield child
                yield from _subcommands(child)


def render_error(exc: errors.FeaturekubeError, verbose: bool) -> str:
    """What stderr shows for ``exc``: one line, or with ``verbose`` everything known."""
    if not verbose:
        more = exc.detail or exc.__cause__ is not None
        return f"featurekube: error: {exc.summary}" + (" (more with --verbose)" if more else "")
    lines = [f"featurekube: error: {exc}"]
    cause = exc.__cause__
    while cause is not None:
        lines.append(f"caused by: {type(cause).__name__}: {cause}")
        lines.append("".join(traceback.format_exception(cause, chain=False)))
        cause = cause.__cause__
    return "\n".join(line.rstrip() for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except errors.FeaturekubeError as exc:
        print(render_error(exc, args.verbose), file=sys.stderr)
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
