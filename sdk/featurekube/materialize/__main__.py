"""``python -m featurekube.materialize``: one window of one view, as the operator's
SparkApplication runs it; does I/O.

    python -m featurekube.materialize --spec /etc/featurekube/spec/featureview.yaml \\
        --start 2026-01-01T00:00:00Z --end 2026-01-01T01:00:00Z \\
        --offline-uri s3://bucket/offline/rides/driver-profile/v1 \\
        --online-table featurekube.rides.driver-profile.v1 [--no-online] [--no-offline] \\
        [--engine auto|spark|python] [--python-max-rows N] \\
        [--pending-run RUN [--pending-superseded RUN]]

``--spec`` is the view's snapshot (a FeatureView, optionally with the operator's
``resolved`` section). ``--engine`` (default: the spec's ``materialization.engine``)
chooses what computes the window (:mod:`featurekube.materialize.engines`); ``auto``
counts the window's input first. ``--pending-run``: the operator recorded the window as
pending before it started the job (publish.py), and the job takes the record over.
The run's report (see :mod:`featurekube.materialize.report`) is printed on stdout as
one JSON line, and written to ``$FEATUREKUBE_REPORT_FILE`` when that is set (the
operator sets the driver's termination-message path, so the report is cut to the
4 KiB Kubernetes keeps there). Exit status: 0 done, 1 failed (the
message on stderr; the report says what was published), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from featurekube import errors, s3_prefixes
from featurekube.materialize import engines, plan, publish, report
from featurekube.materialize.errors import ExpectationFailedError
from featurekube.spec import v1alpha1
from featurekube.writer import online as online_writer

__all__ = ["build_parser", "main", "time_argument"]


def time_argument(text: str) -> dt.datetime:
    """``--start``/``--end``: an ISO 8601 instant; without a zone it is UTC."""
    try:
        return plan.parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def process_started() -> float:
    """When this process began, on the monotonic clock: a pending record its launcher
    wrote (``--pending-run``) has stood since before then, imports included. From
    the kernel's start time (Linux, to its clock tick, rounded down), else now."""
    try:
        # /proc/self/stat's 22nd field, counted after the parenthesised command name.
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        began = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.monotonic() - (time.clock_gettime(time.CLOCK_BOOTTIME) - began)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()


_RUN_ID = re.compile(r"[0-9a-f]{32}")


def run_id(text: str) -> str:
    """``--pending-run``/``--pending-superseded``: a run id, 32 hex digits."""
    if not _RUN_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a run id (32 lowercase hex digits): {text[:80]!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The job's arguments, exactly as the operator's SparkApplication passes them."""
    parser = argparse.ArgumentParser(
        prog="python -m featurekube.materialize",
        description="Materialize one window [start, end) of a FeatureView into its offline "
        "Delta table and online DynamoDB table.",
    )
    parser.add_argument("--spec", required=True, type=Path, help="the view's snapshot YAML")
    parser.add_argument("--start", required=True, type=time_argument, help="window start (ISO)")
    parser.add_argument("--end", required=True, type=time_argument, help="window end (ISO)")
    parser.add_argument("--offline-uri", required=True, help="the view's Delta table")
    parser.add_argument("--online-table", required=True, help="the view's DynamoDB table")
    parser.add_argument("--no-online", action="store_true", help="skip the online store")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline store")
    parser.add_argument(
        "--engine",
        choices=engines.ENGINES,
        help="what computes the window (default: the spec's materialization.engine)",
    )
    parser.add_argument(
        "--pending-run",
        type=run_id,
        help="the id the launcher recorded the window as pending under, before starting "
        "this job (default: the job records it)",
    )
    parser.add_argument(
        "--pending-superseded",
        type=run_id,
        help="with --pending-run: the id of the run whose record the launcher replaced",
    )
    parser.add_argument(
        "--python-max-rows",
        type=int,
        default=engines.DEFAULT_PYTHON_MAX_ROWS,
        help="auto: the most input rows the python engine takes (default: %(default)s)",
    )
    return parser


def emit(result: report.MaterializationReport) -> None:
    """Print the report as one JSON line, and write it where the environment says."""
    print(json.dumps(result.to_json(), separators=(",", ":")), flush=True)
    target = os.environ.get(report.REPORT_FILE_ENV)
    if target:
        Path(target).write_text(result.to_termination_message(), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.pending_superseded and not args.pending_run:
        parser.error("--pending-superseded needs --pending-run")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    label = str(args.spec)
    began = process_started()
    started: dict[str, float] = {}
    try:
        body = yaml.safe_load(args.spec.read_text(encoding="utf-8"))
        view, _ = plan.read_view_document(body)
        # A view or window that cannot be materialized fails before any engine starts.
        window = plan.plan_materialization(view, args.start, args.end)
        label = window.label
        # The operator refuses paths outside the namespace's prefixes; so does the job,
        # before it reads anything, whatever its spec says.
        s3_prefixes.enforce(
            {
                "spec.source.batch.path": window.source_path,
                "--offline-uri": None if args.no_offline else args.offline_uri,
            },
            os.environ,
            label,
        )
        offline_uri = None if args.no_offline else args.offline_uri
        online_table = None if args.no_online else args.online_table
        # The window is recorded as pending first, so that the wait for the record to
        # settle (publish.py) passes while the engine is chosen and starts.
        recorded = None
        if args.pending_run:
            recorded = online_writer.PendingWindow(
                window.start, window.end, args.pending_run, args.pending_superseded
            )
        publication = open_publication(view, window, online_table, recorded, began)
        with publication.before_writing():
            engine, source = choose(window, args.engine, args.python_max_rows, started)
            if engine == "spark":
                from featurekube.materialize import spark_job

                began = time.perf_counter()
                spark = spark_job.open_session(f"featurekube-materialize-{view.metadata.name}")
                started["spark_start"] = time.perf_counter() - began
        if engine == "python":
            from featurekube.materialize import python_job

            result = python_job.run(
                view,
                args.start,
                args.end,
                offline_uri=offline_uri,
                online_table=online_table,
                publication=publication,
                source=source,
            )
        else:
            result = spark_job.run(
                spark,
                view,
                args.start,
                args.end,
                offline_uri=offline_uri,
                online_table=online_table,
                publication=publication,
            )
    except ExpectationFailedError as exc:
        exc.report.error_type = type(exc).__name__
        emit(exc.report)
        print(f"featurekube materialize: error: {exc}", file=sys.stderr)
        return 1
    except (errors.FeaturekubeError, OSError, yaml.YAMLError) as exc:
        emit(_failed(label, args, str(exc), exc))
        print(f"featurekube materialize: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # Spark's own failures (a lost executor, out of memory): report, then the trace.
        emit(_failed(label, args, f"{type(exc).__name__}: {exc}"[:4000], exc))
        traceback.print_exc()
        return 1
    result.timings = {**started, **result.timings}
    if publication.completed_at is not None:
        # The whole of a window's wait, from before the interpreter's first import.
        result.timings["published"] = publication.completed_at - began
    emit(result)
    return 0


def open_publication(
    view: v1alpha1.FeatureView,
    window: plan.MaterializationPlan,
    online_table: str | None,
    recorded: online_writer.PendingWindow | None,
    started_at: float,
) -> publish.Publication:
    """The window's publication (publish.py), its pending record written when there is
    an online table (taken over when the launcher wrote it: ``recorded``); the engines
    write through it. ``started_at``: when this process began (:func:`process_started`).

    The online client is made and the record written in the background, while the
    source is read: importing boto3 and making a DynamoDB client took 0.13 s on a
    2-core machine."""
    return publish.Publication.open(
        view,
        online_table,
        window.start,
        window.end,
        label=window.label,
        recorded=recorded,
        started_at=started_at,
        background=True,
    )


def choose_engine(
    window: plan.MaterializationPlan,
    requested: str | None,
    python_max_rows: int,
    timings: dict[str, float],
) -> engines.Engine:
    """The engine for ``window``: as requested (default: the spec's), ``auto``
    counting the input first (its time goes into ``timings``)."""
    return choose(window, requested, python_max_rows, timings)[0]


def choose(
    window: plan.MaterializationPlan,
    requested: str | None,
    python_max_rows: int,
    timings: dict[str, float],
) -> tuple[engines.Engine, Any | None]:
    """:func:`choose_engine`, and the source as ``auto`` opened it to count (None
    otherwise), for the python engine to read without listing it again."""
    requested = requested or window.spec.materialization.engine
    rows = source = None
    if requested == "auto":
        from featurekube.materialize import python_job

        began = time.perf_counter()
        source = None if window.reads_nothing else python_job.open_source(window)
        rows = python_job.count_input_rows(window, source=source)
        timings["count_input"] = time.perf_counter() - began
    engine = engines.choose(
        requested,
        input_rows=rows,
        transformation=window.transformation,
        python_max_rows=python_max_rows,
    )
    return engine, source if engine == "python" else None


def _failed(
    label: str, args: argparse.Namespace, error: str, exc: BaseException
) -> report.MaterializationReport:
    # The error's class tells the operator whether running the window again can heal it.
    return report.MaterializationReport(
        view=label, start=args.start, end=args.end, error=error, error_type=type(exc).__name__
    )


if __name__ == "__main__":
    sys.exit(main())
