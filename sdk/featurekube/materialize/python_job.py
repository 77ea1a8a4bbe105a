"""Materializes one window of a view without a JVM, with DuckDB and Arrow in this
process; does I/O. The python engine: for windows that fit one machine.

:func:`run` executes the same :class:`~featurekube.materialize.plan.MaterializationPlan`
as :mod:`featurekube.materialize.spark_job`, step for step, and gives the same rows:

1. read the batch source (parquet through pyarrow's datasets, Delta through
   delta-rs; S3 as the AWS settings of the environment say) and apply
   ``spec.transformation.sql``, translated from Spark SQL by
   :mod:`featurekube.materialize.translate` (which refuses what DuckDB would compute
   differently), then check the result's columns with
   :func:`~featurekube.materialize.plan.check_columns`, under Spark's names for their
   types, so both engines accept and refuse the same sources;
2. keep the rows of the plan's read range and compute the offline rows: plain features
   deduplicated per (keys, event time) by greatest created time, then greatest feature
   values (a null lowest, as Spark's ``max(struct)``), or aggregations by
   :func:`featurekube.materialize.aggregate.aggregate_entity` per entity — or, when
   writing an offline table, from the version's tiles
   (:mod:`featurekube.materialize.tiles`), reading the source only for the window's
   own intervals and any tile not yet stored;
3. compute the statistics and checks, and stop before writing if a ``Fail``
   expectation is violated;
4. write each entity's newest row online, then replace the window's offline rows in
   one commit, through :mod:`featurekube.writer` as Spark's job does, in the order of
   :mod:`featurekube.materialize.publish`: the window is recorded as pending online
   before step 1, and the record removed after the commit.

   A plain view's offline write starts with step 1: the source is read once, each
   batch appended to a local file (:mod:`featurekube.materialize.spill`) that steps
   2 and 3 read back, and handed to the offline write, whose commit waits as in
   publish.py; rows that tie on (keys, event time) abandon that write (nothing is
   committed) for one of the deduplicated rows.
5. compute the window's statistics and drift and store them
   (:mod:`featurekube.materialize.monitor`), which never fails the published window.

DuckDB runs in UTC, with a memory limit and a spill directory (:class:`PythonSettings`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import itertools
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from featurekube.materialize import (
    aggregate,
    batchwise,
    monitor,
    publish,
    report,
    row_groups,
    spill,
    ties,
    tile_store,
    tiles,
    translate,
)
from featurekube.materialize import plan as planning
from featurekube.materialize.errors import (
    SourceError,
    TransformationError,
)
from featurekube.monitoring import drift, profiling
from featurekube.monitoring import stats as monitoring_stats
from featurekube.offline import layout as offline_layout
from featurekube.spec import v1alpha1
from featurekube.writer import offline as offline_writer
from featurekube.writer import online as online_writer
from featurekube.writer import rows as row_codec

__all__ = ["PythonSettings", "count_input_rows", "open_source", "run", "spark_type"]

EVENT = offline_layout.EVENT_TIMESTAMP
CREATED = offline_layout.CREATED_TIMESTAMP
LATEST = offline_layout.LATEST_EVENT_TIMESTAMP

_ROWS = "__rows"
"""The DuckDB table of the window's offline rows (the row schema; times may be µs)."""
_NEWEST = "__newest"
"""The DuckDB table of each entity's newest row, for the online write."""
_BATCH_ROWS = 131_072
"""Rows per record batch taken out of DuckDB: what bounds the memory of a write."""
_TARGET_FILE_BYTES = 32 * 1024 * 1024
"""The offline table's data files the python engine writes: delta-rs holds a file in
memory until it uploads it whole, so smaller files bound the write's memory, and
their uploads start sooner, beside the reading of the source."""

_DUCKDB_TYPES: Mapping[str, str] = {
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "float64_array": "DOUBLE[]",
}
"""Value type -> the DuckDB type a column is cast to."""

_SPARK_NAMES: Mapping[str, str] = {
    "BIGINT": "bigint",
    "INTEGER": "int",
    "SMALLINT": "smallint",
    "TINYINT": "tinyint",
    "UBIGINT": "decimal(20,0)",
    "UINTEGER": "bigint",
    "USMALLINT": "int",
    "UTINYINT": "smallint",
    "HUGEINT": "decimal(38,0)",
    "DOUBLE": "double",
    "FLOAT": "float",
    "VARCHAR": "string",
    "BOOLEAN": "boolean",
    "TIMESTAMP WITH TIME ZONE": "timestamp",
    "TIMESTAMP": "timestamp_ntz",
    "DATE": "date",
    "DOUBLE[]": "array<double>",
    "FLOAT[]": "array<float>",
    "BLOB": "binary",
}


def spark_type(duckdb_type: str) -> str:
    """The name Spark gives the type of a column DuckDB types ``duckdb_type``, as
    :func:`~featurekube.materialize.plan.check_columns` takes it.

    >>> [spark_type(t) for t in ("BIGINT", "DECIMAL(10,2)", "TIMESTAMP WITH TIME ZONE")]
    ['bigint', 'decimal(10,2)', 'timestamp']
    """
    if duckdb_type.startswith("DECIMAL"):
        return duckdb_type.lower().replace(" ", "")
    return _SPARK_NAMES.get(duckdb_type, duckdb_type.lower())


@dataclass(frozen=True)
class PythonSettings:
    """Tuning of one run of the python engine."""

    memory_limit: str = "512MB"
    """DuckDB's memory limit while it reads, computes and writes the window; beyond it,
    it spills to a temporary directory."""
    threads: int = 2
    """DuckDB's threads."""
    online: online_writer.OnlineWriteSettings = field(
        default_factory=online_writer.OnlineWriteSettings
    )
    """How the online writer pushes DynamoDB."""


def run(
    view: v1alpha1.FeatureView,
    start: dt.datetime,
    end: dt.datetime,
    *,
    offline_uri: str | None,
    online_table: str | None,
    observer: report.Observer | None = None,
    online_client: Any | None = None,
    storage_options: Mapping[str, str] | None = None,
    settings: PythonSettings | None = None,
    now: dt.datetime | None = None,
    publication: publish.Publication | None = None,
    source: Any | None = None,
) -> report.MaterializationReport:
    """Materialize [start, end) of ``view`` into ``offline_uri`` and ``online_table``
    (None: skip that store) and return the run's report; the contract of
    :func:`featurekube.materialize.spark_job.run`, without Spark.

    ``publication``: the window's, already opened by the caller (its writer writes
    online; ``python -m featurekube.materialize`` opens it before choosing the engine);
    None: opened here. ``source``: the source as :func:`open_source` opened it (to
    count it), read again rather than listed again."""
    plan = planning.plan_materialization(view, start, end)
    settings = settings or PythonSettings()
    observer = observer or report.LogObserver()
    ingested = planning.utc(now or dt.datetime.now(dt.UTC))
    result = report.MaterializationReport(
        view=plan.label, start=plan.start, end=plan.end, engine="python"
    )
    checks = report.plan_checks(plan.spec)
    if publication is None:
        publication = publish.Publication.open(
            view,
            online_table,
            plan.start,
            plan.end,
            client=online_client,
            settings=settings.online,
            label=plan.label,
        )
    began = time.perf_counter()
    observer.phase("compute")
    # The window's rows live in DuckDB, which spills beyond its memory limit, or (a
    # plain view written offline) in a local file read once from the source while the
    # offline write uploads them; they leave either only as bounded record batches.
    with contextlib.ExitStack() as held:
        offline_write = None
        with publication.before_writing():
            publication.check(online_table, plan.start, plan.end, plan.label)
            connection, scratch = held.enter_context(_connection(settings))
            if offline_uri is not None and plan.aggregation is None and not plan.reads_nothing:
                live = held.enter_context(contextlib.ExitStack())
                offline_write, rows_read = _read_once(
                    connection,
                    view,
                    plan,
                    publication,
                    live,
                    _Destination(offline_uri, storage_options, ingested, scratch),
                    source,
                )
            else:
                rows_read = _load_rows(
                    connection, plan, ingested, storage_options, offline_uri, source
                )
            rows_offline = _count(connection, _ROWS)
            stats = _statistics(connection, _ROWS, plan, checks)
            result.rows_read = rows_read
            result.rows_offline = rows_offline
            result.features = stats.features
            result.violations = report.evaluate_checks(checks, stats.offending)
            result.timings["read_compute"] = time.perf_counter() - began
            report.stop_on_failed_checks(result)
            # The statistics of the rows to write are taken while they are written.
            measuring = _measure(held, connection, plan, offline_uri, storage_options, ingested)
            newest = _newest_per_entity(connection, plan) if online_table else 0
            result.timings["read_compute"] = time.perf_counter() - began
        _publish(
            connection,
            view,
            plan,
            publication,
            result,
            observer,
            newest,
            offline_uri,
            storage_options,
            ingested,
            offline_write,
        )
        monitor.store(
            plan,
            result,
            measuring.result(),
            offline_uri=offline_uri,
            storage_options=storage_options,
            now=ingested,
        )
    return result


def _measure(
    held: contextlib.ExitStack,
    connection: duckdb.DuckDBPyConnection,
    plan: planning.MaterializationPlan,
    offline_uri: str | None,
    storage_options: Mapping[str, str] | None,
    ingested: dt.datetime,
) -> concurrent.futures.Future[monitor.Measured | None]:
    """The window's statistics (:func:`monitor.measure`), taken in a thread of their
    own through a cursor of their own, held on ``held``: mostly sorts of columns, which
    leave the interpreter free for the writes."""
    cursor = held.enter_context(contextlib.closing(connection.cursor()))
    pool = held.enter_context(concurrent.futures.ThreadPoolExecutor(1))
    return pool.submit(
        monitor.measure,
        plan,
        lambda reference: _window_statistics(cursor, plan, reference),
        offline_uri=offline_uri,
        storage_options=storage_options,
        now=ingested,
    )


def _publish(
    connection: duckdb.DuckDBPyConnection,
    view: v1alpha1.FeatureView,
    plan: planning.MaterializationPlan,
    publication: publish.Publication,
    result: report.MaterializationReport,
    observer: report.Observer,
    newest: int,
    offline_uri: str | None,
    storage_options: Mapping[str, str] | None,
    ingested: dt.datetime,
    started: _OfflineWrite | None = None,
) -> None:
    """Write the computed window: online first, then the offline commit that publishes
    it (publish.py). The offline files are written meanwhile (``started``: an offline
    write under way since the source was read), their commit held until the online
    write has succeeded; the online write takes its lease and builds its first items
    while the pending record settles."""
    online = publication.online
    offline_write = started
    if offline_write is None and offline_uri is not None:
        writer = _offline_writer(view, plan, offline_uri, storage_options)
        offline_write = publication.prepare_offline(
            lambda gate: writer.replace_window(
                lambda: gate(_batches(connection, _ROWS, plan)), plan.start, plan.end, now=ingested
            )
        )
    entered = contextlib.nullcontext() if started is not None else offline_write
    with entered or contextlib.nullcontext():
        if online is not None:
            began = time.perf_counter()
            observer.phase("online", newest)
            written = publication.write_online_settling(
                lambda settle: online.write_bulk(
                    _batches(connection, _NEWEST, plan),
                    now=ingested,
                    on_progress=observer.advance,
                    before_first_item=settle,
                )
            )
            result.rows_online, result.online_stale = written.written, written.stale
            result.timings["online_write"] = time.perf_counter() - began
            result.timings["settle_wait"] = publication.settle_waited
        if offline_write is not None:
            observer.phase("offline", result.rows_offline)
            offline_write.commit()
            observer.advance(result.rows_offline)
            result.timings["offline_write"] = offline_write.seconds
    publication.complete()
    result.published = True


_OfflineWrite = publish.OfflineWrite[pa.RecordBatch, offline_writer.OfflineWriteResult]


def _offline_writer(
    view: v1alpha1.FeatureView,
    plan: planning.MaterializationPlan,
    offline_uri: str,
    storage_options: Mapping[str, str] | None,
) -> offline_writer.OfflineWriter:
    return offline_writer.OfflineWriter(
        offline_uri,
        view,
        storage_options=storage_options,
        label=plan.label,
        target_file_bytes=_TARGET_FILE_BYTES,
    )


@contextlib.contextmanager
def _connection(
    settings: PythonSettings,
) -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    """A DuckDB connection, and a scratch directory (its spill directory too) that
    lives as long as it."""
    with tempfile.TemporaryDirectory(prefix="featurekube-python-job-") as spill:
        connection = duckdb.connect(
            config={
                "memory_limit": settings.memory_limit,
                "threads": settings.threads,
                "temp_directory": spill,
            }
        )
        try:
            # GLOBAL: the cursors that stream rows out are connections of their own.
            connection.execute("SET GLOBAL TimeZone = 'UTC'").fetchall()
            yield connection, Path(spill)
        finally:
            connection.close()


# -- reading and computing ---------------------------------------------------------------


def open_source(
    plan: planning.MaterializationPlan, storage_options: Mapping[str, str] | None = None
) -> Any:
    """The source as an Arrow dataset DuckDB scans, pushing filters and columns down.
    Raises :class:`~featurekube.materialize.errors.SourceError` when it cannot be read."""
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    path = plan.source_path
    uri = "s3://" + path.removeprefix("s3a://") if path.startswith("s3a://") else path
    try:
        if plan.source_format == "delta":
            import deltalake

            options = offline_writer.storage_options_for(uri, storage_options)
            return deltalake.DeltaTable(uri, storage_options=options).to_pyarrow_dataset()
        filesystem, where = pafs.FileSystem.from_uri(uri)
        return pads.dataset(where, format="parquet", filesystem=filesystem)
    except Exception as exc:  # pyarrow and delta-rs raise many kinds; all mean unreadable
        raise SourceError(
            f"{plan.label}: spec.source.batch.path {plan.source_path} could not be read as "
            f"{plan.source_format}: {_first_line(exc)}. Check the path and format, and that "
            "the job can reach the bucket"
        ) from exc


def count_input_rows(
    plan: planning.MaterializationPlan,
    storage_options: Mapping[str, str] | None = None,
    *,
    source: Any | None = None,
) -> int:
    """How many source rows the window reads, for choosing its engine: those in the
    read range when the source has the event-time column (parquet footers' statistics
    answer most of it without reading data), else all of them (an upper bound).
    Raises :class:`~featurekube.materialize.errors.SourceError` when the source cannot
    be read. ``source``: as :func:`open_source` opened it (None: opened here)."""
    if plan.reads_nothing:
        return 0
    dataset = source if source is not None else open_source(plan, storage_options)
    try:
        in_range = _time_filter(dataset, plan, plan.read_start, plan.read_end)
        # count_rows would fetch the footers one after another; the read keeps them.
        row_groups.fetch_footers(dataset, in_range)
        if in_range is not None:
            return int(dataset.count_rows(filter=in_range))
        return int(dataset.count_rows())
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(
            f"{plan.label}: spec.source.batch.path {plan.source_path} could not be read: "
            f"{_first_line(exc)}"
        ) from exc


def _time_filter(
    dataset: Any, plan: planning.MaterializationPlan, start: dt.datetime, end: dt.datetime
) -> Any | None:
    """A pyarrow filter of the rows with start <= event time < end, when the source has
    the event-time column as a timestamp (else None: nothing to prune by)."""
    import pyarrow.compute as pc

    field_ = plan.timestamp_field
    if field_ not in dataset.schema.names:
        return None
    type_ = dataset.schema.field(field_).type
    if not pa.types.is_timestamp(type_):
        return None
    low, high = (pa.scalar(t, pa.timestamp("us", tz="UTC")).cast(type_) for t in (start, end))
    return (pc.field(field_) >= low) & (pc.field(field_) < high)


def _scan(
    source: Any,
    plan: planning.MaterializationPlan,
    ranges: list[tuple[int, int]],
    *,
    per_batch: bool,
) -> Any:
    """The source as DuckDB reads it: a reader of the columns the view reads, pruned to
    the event times read, one row group at a time
    (:mod:`~featurekube.materialize.row_groups`), without a transformation, or with one
    that may run one batch at a time (:mod:`~featurekube.materialize.batchwise`) when
    the caller runs it so (``per_batch``: a reader is read once, and such a query may
    name ``source`` twice). Otherwise the dataset, DuckDB pushing down the columns the
    SQL names and the event times through it."""
    import pyarrow.dataset as pads

    if not isinstance(source, pads.Dataset) or not ranges:
        return source
    low = planning.from_micros(min(lo for lo, _ in ranges))
    high = planning.from_micros(max(hi for _, hi in ranges))
    in_range = _time_filter(source, plan, low, high)
    columns: list[str] | None = None
    if plan.transformation is None:
        wanted = {name.lower() for name in plan.source_columns()}
        # DuckDB matches names regardless of case; a column missing here is named by
        # check_columns, as with the whole dataset.
        columns = [name for name in source.schema.names if name.lower() in wanted]
    elif per_batch and in_range is not None:
        columns = batchwise.columns(plan.transformation, source.schema.names, plan.timestamp_field)
    if columns is None:
        return source
    return row_groups.read(source, columns, in_range, _BATCH_ROWS)


def _each_batch(
    connection: duckdb.DuckDBPyConnection, sql: str, scan: pa.RecordBatchReader
) -> Iterator[pa.RecordBatch]:
    """The rows of ``sql`` run on one batch of ``scan`` at a time, each registered as
    ``source``. For a query that takes each row alone, as :func:`_events_sql`'s is
    without a transformation or with one :mod:`~featurekube.materialize.batchwise`
    allows (when :func:`_scan` gives a reader), these are the rows
    of one query over the whole scan, in memory bounded by a batch: DuckDB's Arrow
    export of a query holds its whole result until the last batch is taken."""
    for batch in scan:
        if batch.num_rows:
            connection.register("source", batch)
            yield from connection.sql(sql).to_arrow_table().to_batches(_BATCH_ROWS)


@dataclass(frozen=True)
class _Destination:
    """Where :func:`_read_once` writes: the offline table, and the local scratch
    directory of the run."""

    offline_uri: str
    storage_options: Mapping[str, str] | None
    ingested: dt.datetime
    scratch: Path


def _read_once(
    connection: duckdb.DuckDBPyConnection,
    view: v1alpha1.FeatureView,
    plan: planning.MaterializationPlan,
    publication: publish.Publication,
    live: contextlib.ExitStack,
    to: _Destination,
    source: Any | None,
) -> tuple[_OfflineWrite | None, int]:
    """Read a plain view's window from the source once, making :data:`_ROWS` a view of
    a local file of its rows (:mod:`featurekube.materialize.spill`) while an offline
    write (entered on ``live``, its commit held) uploads them; return that write and the
    rows read.

    Deduplication (:func:`_deduplicated`) is rare and needs every row: when rows tie on
    (keys, event time), the write under way is abandoned (``live`` closed: nothing is
    committed), :data:`_ROWS` becomes a table of the deduplicated rows, and None is
    returned for the caller to write those."""
    sql, scan = _events_sql(
        connection,
        plan,
        to.ingested,
        to.storage_options,
        None,
        source=source,
        names=(EVENT, CREATED),
        per_batch=True,
    )
    read = (
        _each_batch(connection, sql, scan)
        if isinstance(scan, pa.RecordBatchReader)  # a query taking each row alone
        else connection.sql(sql).to_arrow_reader(_BATCH_ROWS)
    )
    schema = row_codec.row_schema(plan.spec)
    path = to.scratch / "rows.parquet"
    feed = spill.Feed()

    def rows() -> Iterator[pa.RecordBatch]:
        # The first attempt takes the rows as they are read; a commit retried after a
        # conflict reads them again from the file, complete by then.
        return spill.read(path, _BATCH_ROWS) if feed.taken else iter(feed)

    writer = _offline_writer(view, plan, to.offline_uri, to.storage_options)
    offline_write: _OfflineWrite = publication.prepare_offline(
        lambda gate: writer.replace_window(
            lambda: gate(rows()), plan.start, plan.end, now=to.ingested
        )
    )
    live.enter_context(offline_write)
    tie_filter = ties.TieFilter()
    try:
        with spill.Spill(path, schema) as out, contextlib.closing(connection.cursor()) as hashing:
            for batch in read:
                if batch.num_rows:
                    conformed = _conform_batch(batch, schema)
                    out.write(conformed)
                    feed.put(conformed)
                    tie_filter.add(_tie_hashes(hashing, conformed, plan))
    except duckdb.Error as exc:
        raise _failed_on_rows(plan, exc) from exc
    finally:
        connection.unregister("source")
    feed.close()
    connection.execute(f"CREATE VIEW __spilled AS FROM read_parquet({_literal(str(path))})")
    if not _has_ties(connection, "__spilled", plan, tie_filter.suspects()):
        connection.execute(f"CREATE VIEW {_ROWS} AS FROM __spilled")
        return offline_write, out.rows
    live.close()  # the rows written hold ties: nothing of them is committed
    _keep_one_per_event(connection, "__spilled", plan)
    return None, out.rows


def _has_ties(
    connection: duckdb.DuckDBPyConnection,
    relation: str,
    plan: planning.MaterializationPlan,
    suspects: np.ndarray[Any, Any] | None = None,
) -> bool:
    """Whether rows of ``relation`` tie on (keys, event time). Ties are rare: a hash
    count finds whether there are any, which costs a fraction of ranking every row;
    given ``suspects`` (:mod:`featurekube.materialize.ties`: the hashes of
    :func:`_tie_hash` of every row that may tie), only those rows are counted."""
    group = ", ".join([*(_q(name) for name, _ in plan.keys), _q(EVENT)])
    rows = relation
    if suspects is not None:
        if not suspects.size:
            return False
        connection.register("__suspects", pa.table({"h": pa.array(suspects, pa.uint64())}))
        rows = f"(FROM {relation} WHERE {_tie_hash(plan)} IN (SELECT h FROM __suspects))"
    try:
        ((largest,),) = connection.execute(
            f"SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM {rows} GROUP BY {group})"
        ).fetchall()
    finally:
        if suspects is not None:
            connection.unregister("__suspects")
    return bool(largest > 1)


def _tie_hash(plan: planning.MaterializationPlan) -> str:
    """The SQL of a row's 64-bit hash of (keys, event time), over the columns of the
    row schema, typed alike whether a record batch or the spilled file is read."""
    keys = [f"CAST({_q(name)} AS {_DUCKDB_TYPES[type_]})" for name, type_ in plan.keys]
    return f"hash({', '.join(keys)}, epoch_us({_q(EVENT)}))"


def _tie_hashes(
    cursor: duckdb.DuckDBPyConnection, batch: pa.RecordBatch, plan: planning.MaterializationPlan
) -> np.ndarray[Any, Any]:
    """The :func:`_tie_hash` of each row of ``batch`` (in the row schema)."""
    hashed = cursor.from_arrow(pa.Table.from_batches([batch])).project(f"{_tie_hash(plan)} AS h")
    hashes: np.ndarray[Any, Any] = hashed.to_arrow_table().column(0).to_numpy()
    return hashes


def _keep_one_per_event(
    connection: duckdb.DuckDBPyConnection, relation: str, plan: planning.MaterializationPlan
) -> None:
    """Create :data:`_ROWS` from ``relation``: one row per (keys, event time), the
    greatest created time winning, then the greatest feature values (a null lowest),
    as Spark's ``max(struct)``."""
    group = ", ".join([*(_q(name) for name, _ in plan.keys), _q(EVENT)])
    order = [f"{_q(CREATED)} DESC"] + [f"{_q(f)} DESC NULLS LAST" for f, _ in plan.features]
    connection.execute(
        f"CREATE TABLE {_ROWS} AS SELECT * FROM {relation} "
        f"QUALIFY row_number() OVER (PARTITION BY {group} ORDER BY {', '.join(order)}) = 1"
    )


def _load_rows(
    connection: duckdb.DuckDBPyConnection,
    plan: planning.MaterializationPlan,
    ingested: dt.datetime,
    storage_options: Mapping[str, str] | None,
    offline_uri: str | None = None,
    source: Any | None = None,
) -> int:
    """Create the table :data:`_ROWS` of the window's offline rows (keys, features,
    event and created timestamps, and for aggregations the latest event) in DuckDB;
    return how many source rows were read.

    Plain features never leave DuckDB. Aggregations written to an offline table go
    through its tiles (:func:`_tiled`); without one, or when a column cannot be tiled,
    they are computed from the events of the whole read range."""
    if plan.reads_nothing:
        _create_from_arrow(connection, _ROWS, _empty(plan))
        return 0
    if plan.aggregation is None:
        return _deduplicated(connection, plan, ingested, storage_options, source)
    if offline_uri is not None:
        source = source if source is not None else open_source(plan, storage_options)
        tiled = _tiled(connection, plan, ingested, storage_options, offline_uri, source)
        if tiled is not None:
            _create_from_arrow(connection, _ROWS, tiled[0])
            return tiled[1]
    events, rows_read = _events(connection, plan, ingested, storage_options, source=source)
    _create_from_arrow(connection, _ROWS, _aggregated(events, plan))
    return rows_read


def _create_from_arrow(connection: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    connection.register("__arrow", table)
    try:
        connection.execute(f"CREATE TABLE {name} AS SELECT * FROM __arrow")
    finally:
        connection.unregister("__arrow")


def _count(connection: duckdb.DuckDBPyConnection, name: str) -> int:
    ((count,),) = connection.execute(f"SELECT count(*) FROM {name}").fetchall()
    return int(count)


def _batches(
    connection: duckdb.DuckDBPyConnection, name: str, plan: planning.MaterializationPlan
) -> Iterator[pa.RecordBatch]:
    """The rows of table ``name`` in the view's row schema, :data:`_BATCH_ROWS` at a
    time, through a cursor of their own (safe beside other threads' queries)."""
    schema = row_codec.row_schema(plan.spec)
    cursor = connection.cursor()
    try:
        reader = cursor.sql(f"SELECT * FROM {name}").to_arrow_reader(_BATCH_ROWS)
        for batch in reader:
            if batch.num_rows:
                yield _conform_batch(batch, schema)
    finally:
        cursor.close()


def _tiled(
    connection: duckdb.DuckDBPyConnection,
    plan: planning.MaterializationPlan,
    ingested: dt.datetime,
    storage_options: Mapping[str, str] | None,
    offline_uri: str,
    source: Any,
) -> tuple[pa.Table, int] | None:
    """The aggregation rows from tiles (:mod:`featurekube.materialize.tiles`): the
    window's own intervals, and any a needed tile lacks, computed from the source;
    the rest read from the version's tile table; the new ones stored in one commit.
    None when a column cannot be tiled."""
    agg = plan.aggregation
    assert agg is not None and agg.first_boundary is not None and agg.last_boundary is not None
    own = (agg.first_boundary, agg.last_boundary)
    sizes = tiles.tile_sizes(agg.interval)
    store = tile_store.TileStore(
        offline_layout.tiles_uri(offline_uri), storage_options, label=plan.label
    )
    needed = tiles.needed_tiles(agg, sizes)
    loaded = store.load(needed)
    resolution = tiles.resolve(needed, own, _markers(loaded), sizes)
    events, rows_read = _events(
        connection,
        plan,
        ingested,
        storage_options,
        _source_ranges(resolution, agg.interval),
        source=source,
    )
    keys = [name for name, _ in plan.keys]
    layout = tiles.layout_for(agg, keys, events.schema)
    if layout is None:
        return None
    if loaded is not None and not store.matches(layout):
        # Written under other column types: every tile is computed again.
        loaded = None
        resolution = tiles.resolve(needed, own, set(), sizes)
        events, rows_read = _events(
            connection,
            plan,
            ingested,
            storage_options,
            _source_ranges(resolution, agg.interval),
            source=source,
        )
    schema = layout.schema()
    stored = schema.empty_table()
    if loaded is not None and loaded.num_rows:
        stored = tiles.select(loaded, resolution.stored).select(schema.names).cast(schema)
    everything, made = tiles.complete(
        events, resolution.from_source, stored, resolution.built, layout
    )
    computed = [(agg.interval, end) for end in resolution.from_source] + list(resolution.built)
    store.replace(
        made,
        layout,
        computed=computed,
        cleared=tiles.stale_ranges(*own, sizes),
    )
    combined = tiles.combine(tiles.select(everything, needed), agg, layout)
    features = [name for name, _ in plan.features]
    times = combined.column("event_timestamp")
    columns = [combined.column(k) for k in keys] + [combined.column(f) for f in features]
    columns += [times, times, combined.column(aggregate.LATEST_EVENT)]
    names = [*keys, *features, EVENT, CREATED, LATEST]
    return _conform(pa.Table.from_arrays(columns, names=names), plan), rows_read


def _markers(loaded: pa.Table | None) -> set[tiles.TileKey]:
    if loaded is None or loaded.num_rows == 0:
        return set()
    markers = loaded.filter(loaded.column(tiles.MARKER))
    sizes = markers.column(tiles.TILE_SIZE).to_pylist()
    return set(zip(sizes, markers.column(tiles.TILE_END).to_pylist(), strict=True))


def _source_ranges(resolution: tiles.Resolution, interval: int) -> list[tuple[int, int]]:
    """The event times [lo, hi) (µs) of the intervals computed from the source."""
    return [(a - interval + 1, b + 1) for a, b in tiles.runs(resolution.from_source, interval)]


def _events(
    connection: duckdb.DuckDBPyConnection,
    plan: planning.MaterializationPlan,
    ingested: dt.datetime,
    storage_options: Mapping[str, str] | None,
    ranges: list[tuple[int, int]] | None = None,
    *,
    source: Any | None = None,
) -> tuple[pa.Table, int]:
    """The source rows of the read range, or of ``ranges`` of event times [lo, hi)
    (µs): keys, the needed columns (cast to their types), and event and created times
    in microseconds."""
    sql, _ = _events_sql(
        connection,
        plan,
        ingested,
        storage_options,
        ranges,
        source=source,
        names=(planning.EVENT_MICROS, planning.CREATED_MICROS),
    )
    try:
        events = connection.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise _failed_on_rows(plan, exc) from exc
    return events, events.num_rows


def _events_sql(
    connection: duckdb.DuckDBPyConnection,
    plan: planning.MaterializationPlan,
    ingested: dt.datetime,
    storage_options: Mapping[str, str] | None,
    ranges: list[tuple[int, int]] | None,
    *,
    source: Any | None,
    names: tuple[str, str],
    per_batch: bool = False,
) -> tuple[str, Any]:
    """The query of :func:`_events`, its event and created times (µs) named ``names``,
    and the scan of the source (:func:`_scan`) it reads, registered as ``source``; the
    source's columns checked against the spec. ``per_batch``: the caller runs the query
    on one batch of the scan at a time when the scan is a reader."""
    if source is None:
        source = open_source(plan, storage_options)
    if ranges is None:
        ranges = [(planning.to_micros(plan.read_start), planning.to_micros(plan.read_end))]
    scan = _scan(source, plan, ranges, per_batch=per_batch)
    connection.register("source", scan)
    query = "SELECT * FROM source"
    if plan.transformation is not None:
        query = translate.translate(plan.transformation, plan.label)
    try:
        relation = connection.sql(query)
        found = {
            name: spark_type(str(type_))
            for name, type_ in zip(relation.columns, relation.types, strict=True)
        }
    except duckdb.Error as exc:
        if plan.transformation is None:
            raise SourceError(f"{plan.label}: the source could not be read: {exc}") from exc
        raise TransformationError(
            f"{plan.label}: spec.transformation.sql failed: {_first_line(exc)}"
        ) from exc
    planning.require_columns(plan, found)
    selected = [f"CAST({_q(name)} AS {_DUCKDB_TYPES[t]}) AS {_q(name)}" for name, t in plan.keys]
    if plan.aggregation is None:
        selected += [
            f"CAST({_q(name)} AS {_DUCKDB_TYPES[t]}) AS {_q(name)}" for name, t in plan.features
        ]
    else:
        for name, type_ in planning.read_types(plan, found).items():
            column = _q(name) if type_ == "any" else f"CAST({_q(name)} AS {_DUCKDB_TYPES[type_]})"
            selected.append(f"{column} AS {_q(name)}")
    stamp = f"CAST({_q(plan.timestamp_field)} AS TIMESTAMPTZ)"
    event = f"epoch_us({stamp})"
    fallback = planning.to_micros(ingested)
    created = (
        f"coalesce(epoch_us(CAST({_q(plan.created_field)} AS TIMESTAMPTZ)), {fallback})"
        if plan.created_field
        else str(fallback)
    )
    # Compared as timestamps, so that DuckDB can push the range down to the scan.
    where = " OR ".join(
        f"({stamp} >= CAST({_literal(_iso(planning.from_micros(lo)))} AS TIMESTAMPTZ) AND "
        f"{stamp} < CAST({_literal(_iso(planning.from_micros(hi)))} AS TIMESTAMPTZ))"
        for lo, hi in ranges
    )
    sql = (
        f"SELECT {', '.join(selected)}, {event} AS {_q(names[0])}, "
        f"{created} AS {_q(names[1])} FROM ({query}) AS transformed "
        f"WHERE {where or 'FALSE'}"
    )
    return sql, scan


def _failed_on_rows(plan: planning.MaterializationPlan, exc: duckdb.Error) -> TransformationError:
    return TransformationError(
        f"{plan.label}: spec.transformation.sql failed on the window's rows: {_first_line(exc)}"
    )


def _deduplicated(
    connection: duckdb.DuckDBPyConnection,
    plan: planning.MaterializationPlan,
    ingested: dt.datetime,
    storage_options: Mapping[str, str] | None,
    source: Any | None,
) -> int:
    """Create :data:`_ROWS` from the source rows of the read range: one row per (keys,
    event time), the greatest created time winning, then (for full ties) the greatest
    feature values, a null lowest, as Spark's ``max(struct)``. Returns the rows read."""
    sql, _ = _events_sql(
        connection, plan, ingested, storage_options, None, source=source, names=(EVENT, CREATED)
    )
    try:
        connection.execute(f"CREATE TABLE __events AS {sql}")
    except duckdb.Error as exc:
        raise _failed_on_rows(plan, exc) from exc
    finally:
        connection.unregister("source")
    rows_read = _count(connection, "__events")
    if not _has_ties(connection, "__events", plan):
        connection.execute(f"ALTER TABLE __events RENAME TO {_ROWS}")
        return rows_read
    _keep_one_per_event(connection, "__events", plan)
    connection.execute("DROP TABLE __events")
    return rows_read


def _aggregated(events: pa.Table, plan: planning.MaterializationPlan) -> pa.Table:
    """The aggregation rows at the boundaries the window owns, per entity."""
    agg_plan = plan.aggregation
    assert agg_plan is not None
    keys = [name for name, _ in plan.keys]
    features = [name for name, _ in plan.features]
    if events.num_rows == 0:
        return _empty(plan)
    events = events.sort_by([(k, "ascending") for k in keys])
    starts = _group_starts(events, keys)
    pieces: list[pa.Table] = []
    for begin, stop in itertools.pairwise(starts):
        group = events.slice(begin, stop - begin)
        out = aggregate.aggregate_entity(group, agg_plan)
        if not out.num_rows:
            continue
        columns = [pa.repeat(group.column(k)[0], out.num_rows) for k in keys]
        columns += [out.column(name) for name in features]
        times = out.column("event_timestamp")
        columns += [times, times, out.column(aggregate.LATEST_EVENT)]
        names = [*keys, *features, EVENT, CREATED, LATEST]
        pieces.append(pa.Table.from_arrays(columns, names=names))
    if not pieces:
        return _empty(plan)
    return _conform(pa.concat_tables(pieces), plan)


def _group_starts(table: pa.Table, keys: list[str]) -> list[int]:
    """The first row of each run of equal keys in ``table`` (sorted by them), and its
    length at the end."""
    rows = table.num_rows
    changed = np.zeros(rows, dtype=bool)
    changed[0] = True
    for key in keys:
        values = table.column(key).to_numpy(zero_copy_only=False)
        changed[1:] |= values[1:] != values[:-1]
    return [*np.flatnonzero(changed).tolist(), rows]


def _newest_per_entity(
    connection: duckdb.DuckDBPyConnection, plan: planning.MaterializationPlan
) -> int:
    """Create :data:`_NEWEST`: each entity's row of :data:`_ROWS` with the greatest
    (event time, created time), by a hash aggregate (``arg_max``) rather than a sort of
    every row: the rows are unique in (keys, event time) already, so there are no
    ties. Returns its rows."""
    keys = ", ".join(_q(name) for name, _ in plan.keys)
    connection.execute(
        f"CREATE TABLE {_NEWEST} AS SELECT UNNEST(newest) FROM (SELECT arg_max(r, "
        f"({_q(EVENT)}, {_q(CREATED)})) AS newest FROM {_ROWS} AS r GROUP BY {keys})"
    )
    return _count(connection, _NEWEST)


def _conform(table: pa.Table, plan: planning.MaterializationPlan) -> pa.Table:
    """``table`` in the row schema of the view, columns in its order."""
    schema = row_codec.row_schema(plan.spec)
    return pa.Table.from_arrays(_conformed_columns(table, schema), schema=schema)


def _conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` in the row ``schema``, columns in its order."""
    return pa.RecordBatch.from_arrays(_conformed_columns(batch, schema), schema=schema)


def _conformed_columns(data: pa.Table | pa.RecordBatch, schema: pa.Schema) -> list[Any]:
    columns = []
    for field_ in schema:
        column = data.column(field_.name)
        if pa.types.is_timestamp(field_.type) and pa.types.is_integer(column.type):
            column = column.cast(pa.int64()).cast(field_.type)  # microseconds
        columns.append(column if column.type == field_.type else column.cast(field_.type))
    return columns


def _empty(plan: planning.MaterializationPlan) -> pa.Table:
    return row_codec.row_schema(plan.spec).empty_table()


# -- statistics and checks ------------------------------------------------------------------


@dataclass(frozen=True)
class _Statistics:
    features: dict[str, report.FeatureStats]
    offending: list[int]


def _statistics(
    connection: duckdb.DuckDBPyConnection,
    relation: str,
    plan: planning.MaterializationPlan,
    checks: list[report.Check],
) -> _Statistics:
    """Each feature's nulls, min and max, and each check's offending rows, in one
    query, by the rules of Spark's job."""
    types = dict(plan.features)
    exprs: list[str] = ["count(*)"]
    for name, type_ in plan.features:
        column = _q(name)
        exprs.append(f"count(*) FILTER (WHERE {column} IS NULL)")
        if type_ == "timestamp":
            exprs += [f"epoch_us(min({column}))", f"epoch_us(max({column}))"]
        elif type_ != "float64_array":
            exprs += [f"min({column})", f"max({column})"]
    for check in checks:
        column = _q(check.feature)
        if check.kind == "notNull":
            condition = f"{column} IS NULL"
        elif check.kind == "min":
            condition = f"{column} < {float(check.bound or 0)!r}"
        elif check.kind == "max":
            condition = f"{column} > {float(check.bound or 0)!r}"
        else:
            text = f"CAST({column} AS VARCHAR)"
            if types.get(check.feature) == "bool":
                text = f"lower({text})"
            allowed = ", ".join(_literal(v) for v in check.allowed)
            condition = f"{column} IS NOT NULL AND {text} NOT IN ({allowed})"
        exprs.append(f"count(*) FILTER (WHERE {condition})")
    (found,) = connection.execute(f"SELECT {', '.join(exprs)} FROM {relation}").fetchall()
    values = iter(found[1:])
    stats = {}
    for name, type_ in plan.features:
        nulls = int(next(values) or 0)
        low = high = None
        if type_ != "float64_array":
            low, high = next(values), next(values)
        if type_ == "timestamp":
            low = None if low is None else planning.from_micros(low)
            high = None if high is None else planning.from_micros(high)
        stats[name] = report.FeatureStats(nulls, low, high)
    return _Statistics(stats, [int(next(values) or 0) for _ in checks])


def _window_statistics(
    connection: duckdb.DuckDBPyConnection,
    plan: planning.MaterializationPlan,
    reference: drift.ReferenceProfile | None,
) -> list[monitoring_stats.FeatureStatistics]:
    """The statistics of the rows written offline (:data:`_ROWS`), for the statistics
    table (:mod:`featurekube.materialize.monitor`), with PSI against ``reference``: one
    query of counts, bounds and bins, and each numeric column's mean, deviation and
    quantiles from one sort of its values, fetched one column at a time."""
    columns = [(name, name, type_) for name, type_ in plan.features]
    values = _ColumnReader(connection, _ROWS)
    return profiling.window_statistics(connection, _ROWS, columns, reference, values=values)


class _ColumnReader:
    """A DuckDB table's columns fetched one at a time, as ``values`` of
    :func:`~featurekube.monitoring.profiling.window_statistics` reads them (its
    ``.column(name)``): only the column being summed is held, never the table."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, table: str) -> None:
        self._connection = connection
        self._table = table

    def column(self, name: str) -> pa.ChunkedArray:
        fetched = self._connection.sql(f"SELECT {_q(name)} FROM {self._table}").to_arrow_table()
        return fetched.column(0)


# -- small helpers ---------------------------------------------------------------------------


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
