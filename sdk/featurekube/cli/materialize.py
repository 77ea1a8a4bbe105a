"""``featurekube materialize -f VIEW.yaml --start ... --end ...``: one window of a view,
with local Spark, into the stores the environment points at (``AWS_ENDPOINT_URL`` and
the rest, as ``featurekube dev env`` prints them); does I/O.

Where it writes: ``--offline-uri`` and ``--online-table``; else the snapshot's
``resolved`` section; else the operator's names for version 1 of the view
(``$FEATUREKUBE_OFFLINE_URI/<namespace>/<view>/v1`` and
``$FEATUREKUBE_TABLE_PREFIX<namespace>.<view>.v1``). The online table is created when
missing. Progress goes to stderr; the report (``--output json``: the job's JSON) to
stdout. Exit status 1 when the run failed or published nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from featurekube import errors
from featurekube.materialize import plan, report
from featurekube.offline import layout as offline_layout
from featurekube.online import layout as online_layout

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["register"]

DEFAULT_OFFLINE_ROOT = "s3://featurekube/offline"
DEFAULT_TABLE_PREFIX = "featurekube."
_PHASES = {
    "spark": "Starting Spark",
    "compute": "Reading the source, computing, checking",
    "offline": "Writing the offline table (rows)",
    "online": "Writing the online table (entities)",
}


def register(commands: Any) -> None:
    """Add the ``materialize`` command to the root parser's subcommands."""
    parser = commands.add_parser(
        "materialize",
        help="materialize one window of a FeatureView with local Spark",
        description="Materialize the window [--start, --end) of the FeatureView in FILE "
        "into its offline Delta table and online DynamoDB table, with local Spark, against "
        "the stores the AWS_* environment points at.",
    )
    parser.add_argument(
        "-f", "--file", required=True, type=Path, help="a FeatureView (or its snapshot) YAML"
    )
    parser.add_argument("--start", required=True, type=_time, help="window start, ISO 8601")
    parser.add_argument("--end", required=True, type=_time, help="window end, ISO 8601")
    parser.add_argument("--offline-uri", help="the view's Delta table (default: see above)")
    parser.add_argument("--online-table", help="the view's DynamoDB table (default: see above)")
    parser.add_argument("--no-online", action="store_true", help="skip the online store")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline store")
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="text: a summary (default); json: the job's report",
    )
    parser.set_defaults(run=_run)


def _time(text: str) -> Any:
    try:
        return plan.parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load(path: Path) -> tuple[Any, dict[str, Any]]:
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except FileNotFoundError:
        raise errors.FeaturekubeError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise errors.FeaturekubeError(f"{path}: not valid YAML: {exc}") from exc
    views = [d for d in documents if isinstance(d, dict) and d.get("kind") == "FeatureView"]
    if len(views) != 1:
        raise errors.FeaturekubeError(
            f"{path}: holds {len(views)} FeatureViews; pass a file with exactly one"
        )
    return plan.read_view_document(views[0])


def _targets(args: argparse.Namespace, view: Any, resolved: dict[str, Any]) -> tuple[str, str]:
    namespace, name = view.metadata.namespace or "default", view.metadata.name
    version = resolved.get("version", 1)
    root = os.environ.get("FEATUREKUBE_OFFLINE_URI", DEFAULT_OFFLINE_ROOT).rstrip("/")
    prefix = os.environ.get("FEATUREKUBE_TABLE_PREFIX", DEFAULT_TABLE_PREFIX)
    offline = (
        args.offline_uri
        or resolved.get("offlineUri")
        or offline_layout.table_uri(root, namespace, name, version)
    )
    online = (
        args.online_table
        or resolved.get("onlineTable")
        or online_layout.table_name(prefix, namespace, name, version)
    )
    return str(offline), str(online)


def _ensure_table(name: str) -> bool:
    """Create the online table (and switch on its TTL) when missing; True if created."""
    import boto3

    from featurekube.online import layout

    client = boto3.client("dynamodb")
    try:
        client.create_table(**layout.table_definition(name, {"featurekube.dev/created-by": "cli"}))
    except client.exceptions.ResourceInUseException:
        return False
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": layout.EXPIRES_AT},
    )
    return True


class _ProgressObserver:
    """Draws the job's phases as rich progress bars."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def phase(self, name: str, total: int | None = None) -> None:
        self._finish()
        self.task = self.progress.add_task(_PHASES.get(name, name), total=total)

    def advance(self, amount: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, amount)

    def _finish(self) -> None:
        if self.task is not None:
            task = self.progress.tasks[-1]
            done = task.completed if task.total is not None else 1
            self.progress.update(self.task, total=max(done, 1), completed=max(done, 1))

    def close(self) -> None:
        self._finish()
        self.task = None


def _run(args: argparse.Namespace) -> int:
    view, resolved = _load(args.file)
    plan.plan_materialization(view, args.start, args.end)  # fail fast, before Spark
    offline, online = _targets(args, view, resolved)
    offline_uri = None if args.no_offline else offline
    online_table = None if args.no_online else online
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if online_table is not None and _ensure_table(online_table):
        console.print(f"created online table {online_table}")
    console.print(
        f"materializing FeatureView {view.metadata.namespace or 'default'}/{view.metadata.name} "
        f"[{args.start.isoformat()}, {args.end.isoformat()})\n"
        f"  offline: {offline_uri or '(skipped)'}\n  online:  {online_table or '(skipped)'}"
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    failure: errors.FeaturekubeError | None = None
    with Progress(*columns, console=console, transient=False) as progress:
        observer = _ProgressObserver(progress)
        observer.phase("spark")
        began = time.perf_counter()
        from featurekube.materialize import spark_job
        from featurekube.materialize.errors import ExpectationFailedError

        spark = spark_job.open_session(
            f"featurekube-materialize-{view.metadata.name}",
            # The progress bars are ours; Spark's would draw over them.
            {"spark.ui.showConsoleProgress": "false"},
        )
        spark.sparkContext.setLogLevel("ERROR")
        started = time.perf_counter() - began
        try:
            result = spark_job.run(
                spark,
                view,
                args.start,
                args.end,
                offline_uri=offline_uri,
                online_table=online_table,
                observer=observer,
            )
        except ExpectationFailedError as exc:
            result, failure = exc.report, exc
        observer.close()
    result.timings = {"spark_start": started, **result.timings}
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        _print_summary(result)
    if failure is not None:
        raise failure
    return 0 if result.published else 1


def _print_summary(result: report.MaterializationReport) -> None:
    from rich.console import Console
    from rich.table import Table

    out = result.to_json()
    rows = out["rows"]
    stale = f", {out['onlineStale']} kept newer values" if out["onlineStale"] else ""
    print(
        f"{out['view']}: read {rows['read']} rows, wrote {rows['offline']} offline and "
        f"{rows['online']} online{stale}",
        file=sys.stdout,
    )
    table = Table("feature", "nulls", "min", "max", title="features written")
    for name, stats in out["features"].items():
        table.add_row(name, str(stats["nulls"]), str(stats["min"]), str(stats["max"]))
    if out["features"]:
        Console(file=sys.stdout).print(table)
    for violation in out["violations"]:
        print(f"{violation['onViolation']}: {violation['message']}", file=sys.stdout)
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in out["timingsSeconds"].items())
    print(f"time: {timings}", file=sys.stdout)
