"""``featurekube get``: fetch online feature vectors from a feature server over gRPC.

    featurekube get --target localhost:50051 --feature-service eta-model \\
        --entity driver_id=1001 --entity driver_id=1002 --request trip_distance_km=5.2

Each ``--entity`` is one entity row: ``key=value``, comma-separated for composite keys
(``driver_id=7,zone=SF``). Digits are sent as int64, anything else as a string; quote a
value to send digits as a string (``zone='42'``). ``--request`` values go to every row.
Prints, per entity row, each feature's value, status and event time; ``--output json``
prints the rows as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
from typing import Any

from featurekube import errors

__all__ = ["parse_assignments", "parse_value", "register"]

_INTEGER = re.compile(r"^-?[0-9]+$")
_FLOAT = re.compile(r"^-?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?$")


def register(commands: Any) -> None:
    """Add the ``get`` command to the root parser's subcommands."""
    parser = commands.add_parser(
        "get",
        help="fetch online feature vectors from a feature server",
        description="Ask a feature server (gRPC) for the features of entity rows and print "
        "each value with its status (PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE) and event time.",
    )
    parser.add_argument(
        "service",
        nargs="?",
        metavar="SERVICE",
        help="the feature service (same as --feature-service)",
    )
    parser.add_argument(
        "--target",
        default=os.environ.get("FEATUREKUBE_TARGET", "localhost:50051"),
        help="the server's HOST:PORT, e.g. a FeatureService's status.endpoint "
        "(default: $FEATUREKUBE_TARGET or %(default)s)",
    )
    parser.add_argument("--feature-service", help="the feature service to ask for")
    parser.add_argument(
        "--features", help="comma-separated feature names (default: all of the service's)"
    )
    parser.add_argument(
        "--entity",
        action="append",
        required=True,
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="one entity row (repeatable)",
    )
    parser.add_argument(
        "--request",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a request field for request-time transformations (repeatable)",
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait (default %(default)s)"
    )
    parser.add_argument(
        "--ca-file",
        default=os.environ.get("FEATUREKUBE_CA_FILE"),
        metavar="FILE",
        help="PEM CA of the server's TLS certificate; turns TLS on (default: "
        "$FEATUREKUBE_CA_FILE; without it or --tls, plaintext, for a local server)",
    )
    parser.add_argument(
        "--tls", action="store_true", help="use TLS, checking the server with the system's CAs"
    )
    parser.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="the name the server's certificate must have, when --target is an address "
        "(e.g. eta-model.rides.svc through a port-forward)",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="a file with the ServiceAccount token to send (default: $FEATUREKUBE_TOKEN_FILE, "
        "or over TLS in a pod its own ServiceAccount token)",
    )
    parser.add_argument(
        "--output",
        "-o",
        choices=("table", "json"),
        default="table",
        help="table (default) or json",
    )
    parser.set_defaults(run=_run)


def parse_value(text: str) -> Any:
    """A command-line value as the server expects it.

    >>> [parse_value(v) for v in ("1001", "5.2", "true", "SF", "'42'")]
    [1001, 5.2, True, 'SF', '42']
    """
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if _INTEGER.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_assignments(text: str, what: str) -> dict[str, Any]:
    """``driver_id=7,zone=SF`` -> ``{"driver_id": 7, "zone": "SF"}``."""
    found: dict[str, Any] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise errors.FeaturekubeError(
                f"{what} {text!r}: expected NAME=VALUE pairs separated by commas, e.g. "
                "driver_id=1001"
            )
        found[name.strip()] = parse_value(value.strip())
    return found


def _run(args: argparse.Namespace) -> int:
    from featurekube.online import client

    if args.service and args.feature_service and args.service != args.feature_service:
        raise errors.FeaturekubeError(
            f"SERVICE {args.service!r} and --feature-service {args.feature_service!r} differ"
        )
    service = args.feature_service or args.service
    rows = [parse_assignments(e, "--entity") for e in args.entity]
    request_data: dict[str, Any] = {}
    for item in args.request:
        request_data.update(parse_assignments(item, "--request"))
    features = [f.strip() for f in args.features.split(",")] if args.features else None
    with client.OnlineClient(
        args.target,
        timeout=args.timeout,
        ca_file=args.ca_file,
        tls=args.tls or None,
        tls_server_name=args.tls_server_name,
        token_file=args.token_file,
    ) as online:
        try:
            result = online.get_online_features(
                rows,
                features=features,
                feature_service=None if features else service,
                request_data=request_data,
                include_event_times=True,
            )
        except (errors.ServerUnavailableError, errors.DeadlineExceededError) as exc:
            raise errors.ServerUnavailableError(
                exc.code,
                f"no feature server answered at {args.target} within {args.timeout} s: pass "
                "--target HOST:PORT (a FeatureService's status.endpoint), or start one with "
                f"`featurekube serve`\n{exc}",
            ) from exc
    if args.output == "json":
        print(json.dumps(_json_rows(rows, result), indent=2, default=_jsonable))
    else:
        print(_table(rows, result))
    return 0


def _jsonable(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _json_rows(rows: list[dict[str, Any]], result: Any) -> list[dict[str, Any]]:
    out = []
    for index, row in enumerate(rows):
        features = {}
        for name in result.feature_names:
            times = result.event_times or {}
            features[name] = {
                "value": result.values[name][index],
                "status": result.statuses[name][index].name,
                "event_time": times.get(name, [None] * len(rows))[index],
            }
        out.append({"entity": row, "features": features})
    return out


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _table(rows: list[dict[str, Any]], result: Any) -> str:
    lines = []
    for index, row in enumerate(rows):
        if index:
            lines.append("")
        lines.append(", ".join(f"{k}={v!r}" for k, v in row.items()))
        cells = [("FEATURE", "VALUE", "STATUS", "EVENT TIME")]
        for name in result.feature_names:
            times = (result.event_times or {}).get(name)
            cells.append(
                (
                    name,
                    _shown(result.values[name][index]),
                    result.statuses[name][index].name,
                    _shown(times[index] if times else None),
                )
            )
        widths = [max(len(c[i]) for c in cells) for i in range(4)]
        for cell in cells:
            lines.append(
                "  " + "  ".join(v.ljust(w) for v, w in zip(cell, widths, strict=True)).rstrip()
            )
    return "\n".join(lines)
