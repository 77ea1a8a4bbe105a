"""``featurekube materialize -f VIEW.yaml --start ... --end ...``: one window of a view,
with local Spark, into the stores the environment points at (``AWS_ENDPOINT_URL`` and
the rest, as ``featurekube dev env`` prints them); does I/O.

Where it writes: ``--offline-uri`` and ``--online-table``; else the snapshot's
``resolved`` section; else the operator's names for version 1 of the view
(``$FEATUREKUBE_OFFLINE_URI/<namespace>/<view>/v1`` and
``$FEATUREKUBE_TABLE_PREFIX<namespace>.<view>.v1``).

Before Spark starts it checks what it can (:mod:`featurekube.materialize.preflight`):
the window, the source's bucket and files, the schema of one file (nanosecond
timestamps are refused with the fix), the offline store's bucket, and that DynamoDB
answers. Only then is a missing online table created, and it is deleted again if the
run fails, so a failed command leaves nothing half-made. Spark's own output goes to a
log file, named on the way, unless ``--verbose``. Progress goes to stderr; the report
(``--output json``: the job's JSON) to stdout. Exit status 1 when the run failed or
published nothing.
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
from featurekube.cli import jvm_output
from featurekube.materialize import engines, plan, preflight, probe, report
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
    parser.add_argument(
        "--start",
        required=True,
        type=_time,
        help="window start, ISO 8601 (UTC when no zone is given); included",
    )
    parser.add_argument(
        "--end",
        required=True,
        type=_time,
        help="window end, ISO 8601; excluded. Start and end need not be on an "
        "aggregationInterval boundary: an aggregation view's window computes the boundaries "
        "t with start <= t < end, and one holding no boundary computes nothing",
    )
    parser.add_argument(
        "--offline-uri",
        help="the view's Delta table (default: the snapshot's resolved.offlineUri, else "
        "$FEATUREKUBE_OFFLINE_URI/<namespace>/<view>/v<version>, with "
        f"$FEATUREKUBE_OFFLINE_URI={_offline_root()})",
    )
    parser.add_argument(
        "--online-table",
        help="the view's DynamoDB table, created when missing (default: the snapshot's "
        "resolved.onlineTable, else $FEATUREKUBE_TABLE_PREFIX<namespace>.<view>.v<version>, "
        f"with $FEATUREKUBE_TABLE_PREFIX={_table_prefix()})",
    )
    parser.add_argument("--no-online", action="store_true", help="skip the online store")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline store")
    parser.add_argument(
        "--create-bucket",
        action="store_true",
        help="create the offline store's bucket when it does not exist",
    )
    parser.add_argument(
        "--engine",
        choices=engines.ENGINES,
        help="what computes the window: python (DuckDB, no JVM), spark, or auto (python "
        f"for inputs up to {engines.DEFAULT_PYTHON_MAX_ROWS:,} rows and SQL both compute "
        "alike) (default: the view's spec.materialization.engine, itself auto by default)",
    )
    parser.add_argument(
        "--spark-log",
        type=Path,
        metavar="FILE",
        help="where Spark's own output goes unless --verbose "
        "(default: $TMPDIR/featurekube-materialize-<view>-<time>.log)",
    )
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="text: a summary; json: the job's report (default: %(default)s)",
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


def _offline_root() -> str:
    return os.environ.get("FEATUREKUBE_OFFLINE_URI", DEFAULT_OFFLINE_ROOT).rstrip("/")


def _table_prefix() -> str:
    return os.environ.get("FEATUREKUBE_TABLE_PREFIX", DEFAULT_TABLE_PREFIX)


def _targets(args: argparse.Namespace, view: Any, resolved: dict[str, Any]) -> tuple[str, str]:
    namespace, name = view.metadata.namespace or "default", view.metadata.name
    version = resolved.get("version", 1)
    root = _offline_root()
    prefix = _table_prefix()
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


def _drop_table(name: str) -> None:
    """Delete an online table this command created, after a failed run."""
    import boto3

    client = boto3.client("dynamodb")
    client.delete_table(TableName=name)
    client.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 1})


def _create_bucket(uri: str) -> None:
    import boto3

    bucket = uri.split("://", 1)[-1].split("/", 1)[0]
    client = boto3.client("s3")
    region = client.meta.region_name
    if region and region != "us-east-1":
        client.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
        )
    else:
        client.create_bucket(Bucket=bucket)


def _check(
    args: argparse.Namespace,
    window: plan.MaterializationPlan,
    offline_uri: str | None,
    online_table: str | None,
) -> bool:
    """Everything that can be checked before Spark starts; raises the first problem.
    Returns whether it created the offline store's bucket (with --create-bucket)."""
    preflight.check_source(window, probe.probe_source(window.source_path, window.source_format))
    stores = probe.probe_stores(offline_uri, online_table)
    created = False
    if offline_uri is not None and not stores.offline_bucket_exists and args.create_bucket:
        _create_bucket(offline_uri)
        created = True
        stores = probe.probe_stores(offline_uri, online_table)
    preflight.check_stores(window.label, stores)
    return created


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
    window = plan.plan_materialization(view, args.start, args.end)
    offline, online = _targets(args, view, resolved)
    offline_uri = None if args.no_offline else offline
    online_table = None if args.no_online else online
    from rich.console import Console

    # Lines are not wrapped: they hold URIs and times that a reader copies.
    console = Console(file=jvm_output.private_stderr(), soft_wrap=True)
    console.print(
        f"materializing {window.label} [{args.start.isoformat()}, {args.end.isoformat()})\n"
        f"  offline: {offline_uri or '(skipped)'}\n  online:  {online_table or '(skipped)'}"
    )
    if _check(args, window, offline_uri, online_table):
        console.print(f"created the bucket of {offline_uri}")
    created = online_table is not None and _ensure_table(online_table)
    if created:
        console.print(f"created online table {online_table}")
    try:
        result, failure = _materialize(args, view, window, offline_uri, online_table, console)
    except BaseException:
        if created and online_table is not None:
            _drop_table(online_table)
            console.print(f"deleted online table {online_table}, which this run created")
        raise
    if created and online_table is not None and not result.published:
        _drop_table(online_table)
        console.print(f"deleted online table {online_table}, which this run created")
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        _print_summary(result)
    if failure is not None:
        raise failure
    return 0 if result.published else 1


def _materialize(
    args: argparse.Namespace,
    view: Any,
    window: plan.MaterializationPlan,
    offline_uri: str | None,
    online_table: str | None,
    console: Any,
) -> tuple[report.MaterializationReport, errors.FeaturekubeError | None]:
    """Run the job with progress bars; Spark's output to its log unless verbose."""
    from featurekube.materialize import __main__ as job

    timings: dict[str, float] = {}
    engine = job.choose_engine(window, args.engine, engines.DEFAULT_PYTHON_MAX_ROWS, timings)
    console.print(f"  engine: {engine}")
    if engine == "python":
        return _materialize_in_python(args, view, window, offline_uri, online_table, console)

    log = (
        None
        if args.verbose
        else (args.spark_log or jvm_output.default_log_path(f"materialize-{view.metadata.name}"))
    )
    if log is not None:
        console.print(f"  Spark's output: {log} (--verbose shows it here)")
    failure: errors.FeaturekubeError | None = None
    with _progress(console) as progress:
        observer = _ProgressObserver(progress)
        observer.phase("spark")
        began = time.perf_counter()
        from featurekube.materialize import spark_job

        with jvm_output.redirected_output(log):
            spark = spark_job.open_session(
                f"featurekube-materialize-{view.metadata.name}",
                # The progress bars are ours; Spark's would draw over them.
                {"spark.ui.showConsoleProgress": "false"},
            )
        if log is not None:
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
        except errors.ExpectationFailedError as exc:
            result, failure = exc.report, exc
        except errors.FeaturekubeError:
            raise
        except Exception as exc:
            where = f"see {log}" if log is not None else "see above"
            raise errors.MaterializeError(
                f"{window.label}: the Spark job failed: {_first_line(exc)}: {where}, or run "
                "again with --verbose"
            ) from exc
        observer.close()
    result.timings = {"spark_start": started, **result.timings}
    return result, failure


def _materialize_in_python(
    args: argparse.Namespace,
    view: Any,
    window: plan.MaterializationPlan,
    offline_uri: str | None,
    online_table: str | None,
    console: Any,
) -> tuple[report.MaterializationReport, errors.FeaturekubeError | None]:
    """Run the python engine's job with progress bars (no JVM, so no log of its own)."""
    from featurekube.materialize import python_job

    failure: errors.FeaturekubeError | None = None
    with _progress(console) as progress:
        observer = _ProgressObserver(progress)
        try:
            result = python_job.run(
                view,
                args.start,
                args.end,
                offline_uri=offline_uri,
                online_table=online_table,
                observer=observer,
            )
        except errors.ExpectationFailedError as exc:
            result, failure = exc.report, exc
        observer.close()
    return result, failure


def _progress(console: Any) -> Progress:
    """The run's progress bars, one per phase."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
