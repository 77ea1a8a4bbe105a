"""Materializes one window of a view with Spark; does I/O. With
:mod:`~featurekube.materialize.spark_quantiles`, the only module of
:mod:`featurekube.materialize` that imports pyspark.

:func:`run` executes a :class:`~featurekube.materialize.plan.MaterializationPlan`:

1. read the batch source (parquet or Delta) and apply ``spec.transformation.sql``
   (the source is the temporary view ``source``), then check the result's columns
   against the spec (:class:`~featurekube.materialize.errors.SourceSchemaError` names
   every missing or mistyped one);
2. keep the rows of the plan's read range and compute the offline rows: plain features
   deduplicated per (keys, event time) by greatest created time; aggregations written
   to an offline table from tiles (docs/semantics.md, "Tiles"), the window's own
   intervals from the source and the rest from the tile table, which the window's new
   tiles are stored in, by the python engine's :mod:`featurekube.materialize.tiles`
   on partitions of entities; other aggregations by
   :func:`featurekube.materialize.aggregate.aggregate_entity` per entity;
3. compute each feature's null count, minimum and maximum and the expectations'
   checks over those rows, and stop before writing anything if a ``Fail`` expectation
   is violated (:class:`~featurekube.materialize.errors.ExpectationFailedError`);
4. write each entity's newest row online, then replace the window's rows of the
   offline Delta table in one commit — both through :mod:`featurekube.writer`, the path
   the feature server's Push RPC uses too — in the order of
   :mod:`featurekube.materialize.publish`: the window is recorded as pending online
   before step 1, and the record removed once the commit is done, so no reader sees
   a window that is not complete in both stores.
5. compute the window's statistics and drift, by the definitions of
   :mod:`featurekube.monitoring.stats` exactly as the python engine does, and store
   them (:mod:`featurekube.materialize.monitor`), which never fails the published
   window.

The rows reach the writers through the driver, a bounded chunk at a time (entities
hashed into ``ceil(rows / chunk_rows)`` chunks of a cached result), so the driver's
memory does not grow with the window. The online write takes the table's write lease
and writes in bulk (see :mod:`featurekube.writer.online`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featurekube.materialize import (
    aggregate,
    monitor,
    publish,
    report,
    spark_quantiles,
    tile_store,
    tiles,
)
from featurekube.materialize import plan as planning
from featurekube.materialize.errors import (
    SourceError,
    TransformationError,
)
from featurekube.monitoring import drift
from featurekube.monitoring import stats as monitoring_stats
from featurekube.offline import layout as offline_layout
from featurekube.spec import v1alpha1
from featurekube.writer import offline as offline_writer
from featurekube.writer import online as online_writer
from featurekube.writer import rows as row_codec

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["JobSettings", "Observer", "open_session", "run"]

log = logging.getLogger(__name__)

EVENT = offline_layout.EVENT_TIMESTAMP
CREATED = offline_layout.CREATED_TIMESTAMP
LATEST = offline_layout.LATEST_EVENT_TIMESTAMP
_ROWS_READ = "__rows_read"
_CHUNK = "__chunk"
_BUCKETS = 1024
"""Plain rows carry their entity's bucket of this many (``__chunk``), by which they
are partitioned and sorted: a chunk fetched for the writers is a range of buckets,
and the cache skips its batches outside that range rather than filter every row."""
_SIDE = "__side"
"""In the tiled computation's frames: 0 an event (in) or an offline row (out), 1 a tile."""
_EVENT_OUT = "__event_micros"
_LATEST_OUT = "__latest_micros"


Observer = report.Observer


@dataclass(frozen=True)
class JobSettings:
    """Tuning of one run."""

    chunk_rows: int = 500_000
    """Rows brought to the driver at once for writing; bounds the driver's memory."""
    driver_statistics_max_rows: int = 20_000_000
    """Rows of a window up to which its statistics are computed at the driver, with
    DuckDB exactly as the python engine computes them, its feature columns fetched as
    Arrow one at a time (so the driver holds at most this many values); above, in
    Spark, by the same definitions (the quantiles by
    :mod:`~featurekube.materialize.spark_quantiles`' search; mean and deviation to
    float rounding)."""
    quantiles: spark_quantiles.QuantileSettings = field(
        default_factory=spark_quantiles.QuantileSettings
    )
    """How the quantiles of windows above ``driver_statistics_max_rows`` are searched."""
    online: online_writer.OnlineWriteSettings = field(
        default_factory=online_writer.OnlineWriteSettings
    )
    """How the online writer pushes DynamoDB."""


def run(
    spark: SparkSession,
    view: v1alpha1.FeatureView,
    start: dt.datetime,
    end: dt.datetime,
    *,
    offline_uri: str | None,
    online_table: str | None,
    observer: Observer | None = None,
    online_client: Any | None = None,
    storage_options: Mapping[str, str] | None = None,
    settings: JobSettings | None = None,
    now: dt.datetime | None = None,
    publication: publish.Publication | None = None,
) -> report.MaterializationReport:
    """Materialize [start, end) of ``view`` into ``offline_uri`` and ``online_table``
    (None: skip that store) and return the run's report.

    ``publication``: the window's, already opened by the caller (its writer writes
    online; ``python -m featurekube.materialize`` opens it before Spark starts); None:
    opened here.

    Raises :class:`~featurekube.materialize.errors.MaterializeError` subclasses (the
    report of a failed expectation is on the exception's ``report``) and
    :class:`~featurekube.writer.errors.WriteError`.
    """
    plan = planning.plan_materialization(view, start, end)
    settings = settings or JobSettings()
    observer = observer or report.LogObserver()
    ingested = planning.utc(now or dt.datetime.now(dt.UTC))
    result = report.MaterializationReport(
        view=plan.label, start=plan.start, end=plan.end, engine="spark"
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
    online = publication.online
    publication.check(online_table, plan.start, plan.end, plan.label)
    with _utc_session(spark):
        began = time.perf_counter()
        observer.phase("compute")
        with publication.before_writing():
            computed = _offline_rows(spark, plan, ingested, offline_uri, storage_options, settings)
        cached = computed.rows.persist()
        try:
            with publication.before_writing():
                stats = _statistics(cached, plan, checks)
                result.rows_read = (
                    stats.rows_read if computed.rows_read is None else computed.rows_read()
                )
                result.rows_offline = stats.rows
                result.features = stats.features
                result.violations = report.evaluate_checks(checks, stats.offending)
                result.timings["read_compute"] = time.perf_counter() - began
                report.stop_on_failed_checks(result)
            offline_rows = cached.drop(_ROWS_READ)
            # Online first, then the offline commit that publishes the window
            # (publish.py). Not side by side as in the python engine: the driver would
            # hold a chunk of each at once, and the offline fetch slows the newest rows'
            # shuffle on the same executors.
            if online is not None:
                began = time.perf_counter()
                written = publication.write_online(
                    lambda: _write_online(
                        online, offline_rows, plan, settings, observer, ingested, stats.entities
                    )
                )
                result.rows_online, result.online_stale = written.written, written.stale
                result.timings["online_write"] = time.perf_counter() - began
            if offline_uri is not None:
                began = time.perf_counter()
                observer.phase("offline", stats.rows)
                writer = offline_writer.OfflineWriter(
                    offline_uri, view, storage_options=storage_options, label=plan.label
                )
                publication.commit_offline(
                    lambda: writer.replace_window(
                        lambda: _arrow_chunks(offline_rows, plan, stats.rows, settings, observer),
                        plan.start,
                        plan.end,
                        now=ingested,
                    )
                )
                result.timings["offline_write"] = time.perf_counter() - began
            publication.complete()
            result.published = True
            monitor.record(
                plan,
                result,
                lambda reference: _window_statistics(
                    offline_rows, plan, reference, stats.rows, settings
                ),
                offline_uri=offline_uri,
                storage_options=storage_options,
                now=ingested,
            )
        finally:
            cached.unpersist()
            for frame in computed.cached:
                frame.unpersist()
    return result


# -- session ------------------------------------------------------------------------------


def _clear_tiles(
    plan: planning.MaterializationPlan, offline_uri: str, storage_options: Mapping[str, str] | None
) -> None:
    """This engine computes aggregations from the events and writes no tiles: it
    deletes those its window recomputes, so the python engine's next window computes
    them again from the source rather than combine stale ones."""
    agg = plan.aggregation
    if agg is None or agg.first_boundary is None or agg.last_boundary is None:
        return
    tile_store.clear_span(
        offline_layout.tiles_uri(offline_uri),
        agg.interval,
        agg.first_boundary,
        agg.last_boundary,
        storage_options,
    )


def open_session(app_name: str, extra_conf: Mapping[str, str] | None = None) -> SparkSession:
    """The job's SparkSession. Started by spark-submit (as a SparkApplication is), the
    settings it was given win and featurekube's fill in the rest (S3A, Delta, UTC);
    started as a plain process, a local session of :mod:`featurekube.spark_session`."""
    from featurekube import spark_session

    settings = spark_session.SparkSettings(app_name=app_name, extra_conf=dict(extra_conf or {}))
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return spark_session.create_session(settings)
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    # Joins spark-submit's JVM first: before that, SparkConf() holds nothing submitted,
    # and featurekube's local defaults (master local[2]) would win over the cluster's.
    SparkContext._ensure_initialized()
    submitted = SparkConf()
    builder = SparkSession.builder
    for key, value in spark_session.render_spark_conf(settings, os.environ).items():
        if not submitted.contains(key):
            builder = builder.config(key, value)
    session: SparkSession = builder.getOrCreate()
    return session


@contextlib.contextmanager
def _utc_session(spark: SparkSession) -> Iterator[None]:
    """The session in UTC for the run, and Python workers on this interpreter in local
    mode (whose workers share this machine, and so its packages)."""
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    context = spark.sparkContext
    if (context.master or "").startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        context.pythonExec = sys.executable
    try:
        yield
    finally:
        if previous is not None:
            spark.conf.set("spark.sql.session.timeZone", previous)


# -- reading and computing ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Computed:
    rows: DataFrame
    """The window's offline rows: keys, features, event and created timestamps (and
    for aggregations the latest event), and for plain features ``__rows_read`` (the
    source rows each stands for; summed, the rows read)."""
    rows_read: Callable[[], int] | None
    """For aggregations, whose rows stand for no particular source rows: counts the
    source rows read. None: sum ``__rows_read``."""
    cached: tuple[DataFrame, ...] = ()
    """Frames persisted on the way, to unpersist after the run."""


def _offline_rows(
    spark: SparkSession,
    plan: planning.MaterializationPlan,
    ingested: dt.datetime,
    offline_uri: str | None,
    storage_options: Mapping[str, str] | None,
    settings: JobSettings,
) -> _Computed:
    """The window's offline rows. Aggregations written to an offline table go through
    its tiles (:func:`_tiled`), as on the python engine; without one, or when a column
    cannot be tiled, they are computed from the events of the whole read range."""
    if plan.reads_nothing:
        return _Computed(spark.createDataFrame([], _row_ddl(plan)), None)
    if plan.aggregation is None:
        return _Computed(deduplicated(_events(spark, plan, ingested), plan), None)
    if offline_uri is not None:
        tiled = _tiled(spark, plan, ingested, offline_uri, storage_options, settings)
        if tiled is not None:
            return tiled
        _clear_tiles(plan, offline_uri, storage_options)
    events = _events(spark, plan, ingested)
    # Counted apart (a scan of the event times alone) rather than cached: the events
    # would take the executors' memory for the sake of one number.
    return _Computed(_aggregated(events, plan), events.count)


def _read_source(spark: SparkSession, plan: planning.MaterializationPlan) -> DataFrame:
    from pyspark.errors import AnalysisException

    try:
        return spark.read.format(plan.source_format).load(plan.source_path)
    except AnalysisException as exc:
        raise SourceError(
            f"{plan.label}: spec.source.batch.path {plan.source_path} could not be read as "
            f"{plan.source_format}: {_first_line(exc)}. Check the path and format, and that "
            "the job can reach the bucket"
        ) from exc


def _transformed(spark: SparkSession, plan: planning.MaterializationPlan) -> DataFrame:
    return transformed(spark, _read_source(spark, plan), plan)


def transformed(
    spark: SparkSession, source: DataFrame, plan: planning.MaterializationPlan
) -> DataFrame:
    """``source`` through the view's transformation, which reads it as the temporary
    view ``source``; ``source`` itself for a view without one. The stream's
    micro-batches go through this too, so both paths run the same SQL the same way."""
    from pyspark.errors import AnalysisException, ParseException

    if plan.transformation is None:
        return source
    source.createOrReplaceTempView("source")
    try:
        frame = spark.sql(plan.transformation)
        frame.schema  # noqa: B018 - analysis happens here, and its errors
    except (AnalysisException, ParseException) as exc:
        raise TransformationError(
            f"{plan.label}: spec.transformation.sql failed: {_first_line(exc)}"
        ) from exc
    return frame


def _events(
    spark: SparkSession, plan: planning.MaterializationPlan, ingested: dt.datetime
) -> DataFrame:
    """The source rows of the read range: keys, the needed columns (cast to their
    types), event and created times."""
    from pyspark.sql import functions as F

    frame = _transformed(spark, plan)
    found = {field.name: field.dataType.simpleString() for field in frame.schema.fields}
    planning.require_columns(plan, found)
    event = F.col(plan.timestamp_field).cast("timestamp")
    created = (
        F.coalesce(F.col(plan.created_field).cast("timestamp"), F.lit(ingested))
        if plan.created_field
        else F.lit(ingested)
    )
    selected: list[Column] = [
        F.col(name).cast(v1alpha1.SPARK_SQL_TYPES[t]).alias(name) for name, t in plan.keys
    ]
    if plan.aggregation is None:
        selected += [F.col(n).cast(v1alpha1.SPARK_SQL_TYPES[t]).alias(n) for n, t in plan.features]
    else:
        for name, type_ in planning.read_types(plan, found).items():
            column = (
                F.col(name) if type_ == "any" else F.col(name).cast(v1alpha1.SPARK_SQL_TYPES[type_])
            )
            selected.append(column.alias(name))
    selected += [event.alias(EVENT), created.alias(CREATED)]
    return frame.select(*selected).where(
        (F.col(EVENT) >= F.lit(plan.read_start)) & (F.col(EVENT) < F.lit(plan.read_end))
    )


def deduplicated(events: DataFrame, plan: planning.MaterializationPlan) -> DataFrame:
    """One row per (keys, event time): the greatest created time wins, then (for full
    ties) the greatest feature values, so the choice never depends on the input order.

    Entities are hashed into partitions and each (keys, event time) ranked in a window:
    one shuffle and one sort. (The greatest ``struct`` of a ``groupBy`` would give the
    same rows, but Spark aggregates a struct by sorting, on both sides of the shuffle.)
    The rows come out partitioned by entity and sorted by keys and event time, which
    :func:`_newest_per_entity` then needs no shuffle or sort for."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = [name for name, _ in plan.keys]
    features = [name for name, _ in plan.features]
    key_columns = [F.col(f"`{k}`") for k in keys]
    ranked = Window.partitionBy(F.col(_CHUNK), *key_columns, F.col(EVENT)).orderBy(
        F.col(CREATED).desc_nulls_last(), *[F.col(f"`{f}`").desc_nulls_last() for f in features]
    )
    group = ranked.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    bucket = F.pmod(F.xxhash64(*key_columns), F.lit(_BUCKETS)).alias(_CHUNK)
    return (
        events.select("*", bucket)
        .repartition(F.col(_CHUNK))
        .select(
            "*",
            F.row_number().over(ranked).alias("__rank"),
            F.count(F.lit(1)).over(group).alias(_ROWS_READ),
        )
        .where(F.col("__rank") == 1)
        .select(*[F.col(f"`{n}`") for n in [*keys, *features, EVENT, CREATED, _ROWS_READ, _CHUNK]])
    )


def _aggregated(events: DataFrame, plan: planning.MaterializationPlan) -> DataFrame:
    """The aggregation rows at the boundaries the window owns, per entity."""
    from pyspark.sql import functions as F

    agg_plan = plan.aggregation
    assert agg_plan is not None
    keys = [name for name, _ in plan.keys]
    key_types = dict(plan.keys)
    inputs = events.select(
        *keys,
        F.unix_micros(F.col(EVENT)).alias(planning.EVENT_MICROS),
        F.unix_micros(F.col(CREATED)).alias(planning.CREATED_MICROS),
        *plan.aggregated_columns(),
    )
    out_ddl = ", ".join(
        [f"`{k}` {v1alpha1.SPARK_SQL_TYPES[key_types[k]]}" for k in keys]
        + [f"`{n}` {v1alpha1.SPARK_SQL_TYPES[t]}" for n, t in plan.features]
        + ["event_micros bigint", "latest_micros bigint"]
    )
    key_arrow = {k: row_codec.ARROW_TYPES[key_types[k]] for k in keys}

    def per_entity(table: pa.Table) -> pa.Table:
        out = aggregate.aggregate_entity(table, agg_plan)
        n = out.num_rows
        columns = [pa.repeat(pa.scalar(table.column(k)[0].as_py(), key_arrow[k]), n) for k in keys]
        columns += [out.column(name) for name, _ in plan.features]
        columns += [out.column("event_timestamp"), out.column(aggregate.LATEST_EVENT)]
        return pa.Table.from_arrays(
            columns,
            names=[*keys, *(f for f, _ in plan.features), "event_micros", "latest_micros"],
        )

    computed = inputs.groupBy(*keys).applyInArrow(per_entity, schema=out_ddl)
    event = F.timestamp_micros(F.col("event_micros"))
    return computed.select(
        *keys,
        *[name for name, _ in plan.features],
        event.alias(EVENT),
        event.alias(CREATED),
        F.timestamp_micros(F.col("latest_micros")).alias(LATEST),
    )


# -- tiles ------------------------------------------------------------------------------------


def _tiled(
    spark: SparkSession,
    plan: planning.MaterializationPlan,
    ingested: dt.datetime,
    offline_uri: str,
    storage_options: Mapping[str, str] | None,
    settings: JobSettings,
) -> _Computed | None:
    """The aggregation rows from tiles (:mod:`featurekube.materialize.tiles`), exactly
    as the python engine computes them: the window's own intervals, and any a needed
    tile lacks, from the source; the rest read from the version's tile table (by Spark,
    never through the driver); the new ones stored in one commit. Entities are hashed
    into partitions, each computed by :func:`featurekube.materialize.tiles.tiled_rows`
    in a Python worker. None when a column cannot be tiled."""
    from pyspark.sql import functions as F

    agg = plan.aggregation
    assert agg is not None and agg.first_boundary is not None and agg.last_boundary is not None
    own = (agg.first_boundary, agg.last_boundary)
    sizes = tiles.tile_sizes(agg.interval)
    keys = [name for name, _ in plan.keys]
    frame = _event_micros(_events(spark, plan, ingested), plan)
    layout = tiles.layout_for(agg, keys, _arrow_schema(frame))
    if layout is None:
        return None
    uri = offline_layout.tiles_uri(offline_uri)
    store = tile_store.TileStore(uri, storage_options, label=plan.label)
    needed = tiles.needed_tiles(agg, sizes)
    stored_keys = store.markers(needed)
    if stored_keys is not None and not store.matches(layout):
        stored_keys = None  # written under other column types: every tile is computed again
    resolution = tiles.resolve(needed, own, stored_keys or set(), sizes)
    micros = F.col(planning.EVENT_MICROS)
    in_ranges = [
        (micros >= F.lit(lo)) & (micros < F.lit(hi))
        for lo, hi in _source_ranges(resolution, agg.interval)
    ]
    events = frame.where(_any(in_ranges)) if in_ranges else frame.limit(0)
    read = events.count()
    schema = layout.schema()
    tile_names = [name for name in schema.names if name not in keys]
    both = events.withColumn(_SIDE, F.lit(0))
    if resolution.stored:
        stored = _stored_tiles(spark, uri, resolution.stored).select(
            *[F.col(f"`{name}`") for name in schema.names]
        )
        both = both.unionByName(stored.withColumn(_SIDE, F.lit(1)), allowMissingColumns=True)
    else:
        both = both.select(
            "*",
            *[F.lit(None).cast(_spark_type(schema.field(n).type)).alias(n) for n in tile_names],
        )
    event_names = list(events.columns)
    out = _tiled_output_schema(plan, layout)
    needed_keys = sorted(needed)

    def compute(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow.compute as pc

        parts = list(batches)
        if not parts:
            return
        table = pa.Table.from_batches(parts)
        side = table.column(_SIDE)
        part_events = table.filter(pc.equal(side, 0)).select(event_names)
        part_stored = table.filter(pc.equal(side, 1)).select(schema.names).cast(schema)
        rows, made = tiles.tiled_rows(
            part_events, part_stored, resolution, needed_keys, agg, layout
        )
        yield from _tiled_output(rows, made, out, layout).to_batches()

    partitions = max(spark.sparkContext.defaultParallelism, math.ceil(read / settings.chunk_rows))
    computed = (
        both.repartition(partitions, *[F.col(f"`{k}`") for k in keys])
        .mapInArrow(compute, _ddl(out))
        .persist()
    )
    made = computed.where(F.col(_SIDE) == 1).select(*[F.col(f"`{n}`") for n in schema.names])
    made_rows = made.count()
    store.replace_batches(
        lambda: _arrow_chunks(made, plan, made_rows, settings, None),
        layout,
        computed=[(agg.interval, end) for end in resolution.from_source] + list(resolution.built),
        cleared=tiles.stale_ranges(*own, sizes),
    )
    event = F.timestamp_micros(F.col(_EVENT_OUT))
    rows = computed.where(F.col(_SIDE) == 0).select(
        *[F.col(f"`{k}`") for k in keys],
        *[F.col(f"`{name}`") for name, _ in plan.features],
        event.alias(EVENT),
        event.alias(CREATED),
        F.timestamp_micros(F.col(_LATEST_OUT)).alias(LATEST),
    )
    return _Computed(rows, lambda: read, (computed,))


def _event_micros(events: DataFrame, plan: planning.MaterializationPlan) -> DataFrame:
    """``events`` as the aggregation kernels take them: keys, event and created times in
    microseconds, and the aggregated columns."""
    from pyspark.sql import functions as F

    return events.select(
        *[F.col(f"`{name}`") for name, _ in plan.keys],
        F.unix_micros(F.col(EVENT)).alias(planning.EVENT_MICROS),
        F.unix_micros(F.col(CREATED)).alias(planning.CREATED_MICROS),
        *[F.col(f"`{name}`") for name in plan.aggregated_columns()],
    )


def _any(conditions: list[Column]) -> Column:
    found = conditions[0]
    for condition in conditions[1:]:
        found = found | condition
    return found


def _source_ranges(resolution: tiles.Resolution, interval: int) -> list[tuple[int, int]]:
    """The event times [lo, hi) (µs) of the intervals computed from the source."""
    return [(a - interval + 1, b + 1) for a, b in tiles.runs(resolution.from_source, interval)]


def _stored_tiles(spark: SparkSession, uri: str, keys: set[tiles.TileKey]) -> DataFrame:
    """The stored tiles (no markers) of ``keys``, read by Spark from the tile table."""
    from pyspark.sql import functions as F

    by_size: dict[int, list[int]] = {}
    for size, end in keys:
        by_size.setdefault(size, []).append(end)
    wanted = _any(
        [
            (F.col(tiles.TILE_SIZE) == F.lit(size)) & F.col(tiles.TILE_END).isin(sorted(ends))
            for size, ends in sorted(by_size.items())
        ]
    )
    table = spark.read.format("delta").load(uri)
    return table.where(wanted & ~F.col(tiles.MARKER))


def _arrow_schema(frame: DataFrame) -> pa.Schema:
    """The Arrow schema of ``frame``'s rows as Spark hands them to Python."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(frame.schema, timezone="UTC")


def _tiled_output_schema(plan: planning.MaterializationPlan, layout: tiles.TileLayout) -> pa.Schema:
    """What each partition of the tiled computation returns: the offline rows (keys,
    features, the boundary and the latest event in µs) and the tiles made (their
    columns), one above the other, told apart by ``__side``."""
    agg = plan.aggregation
    assert agg is not None
    features = aggregate.output_schema(agg)
    fields = [pa.field(name, type_) for name, type_ in layout.keys]
    fields += [features.field(name) for name, _ in plan.features]
    fields += [pa.field(_EVENT_OUT, pa.int64()), pa.field(_LATEST_OUT, pa.int64())]
    keys = {name for name, _ in layout.keys}
    fields += [f.with_nullable(True) for f in layout.schema() if f.name not in keys]
    fields.append(pa.field(_SIDE, pa.int32()))
    return pa.schema(fields)


def _tiled_output(
    rows: pa.Table, made: pa.Table, out: pa.Schema, layout: tiles.TileLayout
) -> pa.Table:
    keys = {name for name, _ in layout.keys}

    def filled(table: pa.Table, present: dict[str, str], side: int) -> pa.Table:
        columns = []
        for field_ in out:
            if field_.name == _SIDE:
                columns.append(pa.repeat(pa.scalar(side, pa.int32()), table.num_rows))
            elif field_.name in present:
                columns.append(table.column(present[field_.name]).cast(field_.type))
            else:
                columns.append(pa.nulls(table.num_rows, field_.type))
        return pa.Table.from_arrays(columns, schema=out)

    row_names = {name: name for name in rows.column_names if name in out.names}
    row_names[_EVENT_OUT] = "event_timestamp"
    row_names[_LATEST_OUT] = aggregate.LATEST_EVENT
    tile_names = {name: name for name in made.column_names if name in out.names}
    assert keys <= set(tile_names)
    return pa.concat_tables([filled(rows, row_names, 0), filled(made, tile_names, 1)])


_SPARK_TYPES = {
    pa.int64(): "bigint",
    pa.int32(): "int",
    pa.float64(): "double",
    pa.bool_(): "boolean",
    pa.string(): "string",
    pa.timestamp("us", tz="UTC"): "timestamp",
}


def _spark_type(type_: pa.DataType) -> str:
    if pa.types.is_list(type_):
        return f"array<{_spark_type(type_.value_type)}>"
    if pa.types.is_timestamp(type_):
        return "timestamp"
    found = _SPARK_TYPES.get(type_)
    if found is None:
        raise TypeError(f"no Spark type for the tile column type {type_}")
    return found


def _ddl(schema: pa.Schema) -> str:
    return ", ".join("`" + f.name.replace("`", "``") + "` " + _spark_type(f.type) for f in schema)


def _row_ddl(plan: planning.MaterializationPlan) -> str:
    columns = [f"`{k}` {v1alpha1.SPARK_SQL_TYPES[t]}" for k, t in plan.keys]
    columns += [f"`{n}` {v1alpha1.SPARK_SQL_TYPES[t]}" for n, t in plan.features]
    columns += [f"{EVENT} timestamp", f"{CREATED} timestamp"]
    if plan.aggregation is not None:
        columns.append(f"{LATEST} timestamp")
    columns.append(f"{_ROWS_READ} bigint")
    return ", ".join(columns)


# -- statistics and checks ------------------------------------------------------------------


@dataclass(frozen=True)
class _Statistics:
    rows: int
    rows_read: int
    entities: int
    """Distinct entities, estimated (HyperLogLog, within a few percent)."""
    features: dict[str, report.FeatureStats]
    offending: list[int]


def _statistics(
    rows: DataFrame, plan: planning.MaterializationPlan, checks: list[report.Check]
) -> _Statistics:
    """Row counts, each feature's nulls, min and max, and each check's offending rows,
    in one pass."""
    from pyspark.sql import functions as F

    def count_if(condition: Column) -> Column:
        return F.sum(F.when(condition, 1).otherwise(0))

    types = dict(plan.features)
    read = F.sum(_ROWS_READ) if _ROWS_READ in rows.columns else F.lit(0)
    keys = [F.col(f"`{name}`") for name, _ in plan.keys]
    entities = F.approx_count_distinct(keys[0] if len(keys) == 1 else F.struct(*keys))
    exprs: list[Column] = [
        F.count(F.lit(1)).alias("rows"),
        read.alias("read"),
        entities.alias("entities"),
    ]
    for index, (name, type_) in enumerate(plan.features):
        exprs.append(count_if(F.col(name).isNull()).alias(f"n{index}"))
        if type_ == "timestamp":
            # As microseconds: pyspark would turn timestamps into this machine's local time.
            exprs += [
                F.unix_micros(F.min(name)).alias(f"lo{index}"),
                F.unix_micros(F.max(name)).alias(f"hi{index}"),
            ]
        elif type_ != "float64_array":
            exprs += [F.min(name).alias(f"lo{index}"), F.max(name).alias(f"hi{index}")]
    for index, check in enumerate(checks):
        column = F.col(check.feature)
        if check.kind == "notNull":
            condition = column.isNull()
        elif check.kind == "min":
            condition = column < F.lit(check.bound)
        elif check.kind == "max":
            condition = column > F.lit(check.bound)
        else:
            text = column.cast("string")
            if types.get(check.feature) == "bool":
                text = F.lower(text)
            condition = column.isNotNull() & ~text.isin(list(check.allowed))
        exprs.append(count_if(condition).alias(f"c{index}"))
    found = rows.agg(*exprs).first()
    assert found is not None
    stats = {}
    for index, (name, type_) in enumerate(plan.features):
        low = found[f"lo{index}"] if type_ != "float64_array" else None
        high = found[f"hi{index}"] if type_ != "float64_array" else None
        if type_ == "timestamp":
            low = None if low is None else planning.from_micros(low)
            high = None if high is None else planning.from_micros(high)
        stats[name] = report.FeatureStats(int(found[f"n{index}"] or 0), low, high)
    return _Statistics(
        rows=int(found["rows"]),
        rows_read=int(found["read"] or 0),
        entities=int(found["entities"] or 0),
        features=stats,
        offending=[int(found[f"c{i}"] or 0) for i in range(len(checks))],
    )


def _window_statistics(
    rows: DataFrame,
    plan: planning.MaterializationPlan,
    reference: drift.ReferenceProfile | None,
    count: int,
    settings: JobSettings,
) -> list[monitoring_stats.FeatureStatistics]:
    """The statistics of the ``count`` rows written offline (cached), with PSI against
    ``reference``: at the driver when they are few enough
    (``settings.driver_statistics_max_rows``), else in Spark."""
    if count <= settings.driver_statistics_max_rows:
        return _driver_statistics(rows, plan, reference)
    return _spark_statistics(rows, plan, reference, settings.quantiles)


def _driver_statistics(
    rows: DataFrame,
    plan: planning.MaterializationPlan,
    reference: drift.ReferenceProfile | None,
) -> list[monitoring_stats.FeatureStatistics]:
    """The statistics computed with DuckDB over the feature columns fetched as Arrow,
    one column at a time (each feature's statistics are its column's alone): the python
    engine's code, so the same numbers to the last bit."""
    import duckdb

    from featurekube.monitoring import profiling

    out: list[monitoring_stats.FeatureStatistics] = []
    with duckdb.connect(config={"threads": 2}) as connection:
        for name, type_ in plan.features:
            table = rows.select(rows[f"`{name}`"]).toArrow()
            connection.register("__written", table)
            out += profiling.window_statistics(
                connection, "__written", [(name, name, type_)], reference, values=table
            )
            connection.unregister("__written")
            del table  # before the next column is fetched
    return out


def _spark_statistics(
    rows: DataFrame,
    plan: planning.MaterializationPlan,
    reference: drift.ReferenceProfile | None,
    quantile_settings: spark_quantiles.QuantileSettings,
) -> list[monitoring_stats.FeatureStatistics]:
    """The statistics computed in Spark: one aggregate over the rows, one grouped
    query for the top values of categorical features, and the quantiles' search
    (:mod:`~featurekube.materialize.spark_quantiles`) — the definitions and results of
    :func:`featurekube.monitoring.profiling.window_statistics` (mean and deviation
    to float rounding)."""
    from pyspark.sql import functions as F

    def count_if(condition: Column) -> Column:
        return F.sum(F.when(condition, 1).otherwise(0))

    exprs: list[Column] = [F.count(F.lit(1)).alias("rows")]
    profiles: dict[str, drift.FeatureProfile] = {}
    for index, (name, type_) in enumerate(plan.features):
        column = F.col(f"`{name}`")
        kind = monitoring_stats.kind_of(type_)
        exprs += [F.count(column).alias(f"c{index}"), count_if(column.isNull()).alias(f"n{index}")]
        if kind == "numeric":
            number = column.cast("double")
            exprs += [
                F.min(column).cast("double").alias(f"lo{index}"),
                F.max(column).cast("double").alias(f"hi{index}"),
                F.avg(number).alias(f"mean{index}"),
                F.stddev_samp(number).alias(f"sd{index}"),
            ]
        found = reference.features.get(name) if reference is not None else None
        if found is None or found.type != type_:
            continue
        profiles[name] = found
        if found.kind == "categorical":
            text = column.cast("string")
            conditions = [text == F.lit(value) for value in found.values]
        else:
            number = column.cast("double")
            conditions = []
            for bin_ in range(len(found.edges) + 1):
                condition = ~F.isnan(number) if bin_ == len(found.edges) else None
                if bin_ > 0:
                    above = number > F.lit(found.edges[bin_ - 1])
                    condition = above if condition is None else condition & above
                if bin_ < len(found.edges):
                    below = number <= F.lit(found.edges[bin_])
                    condition = below if condition is None else condition & below
                assert condition is not None
                conditions.append(condition)
        exprs += [count_if(c).alias(f"b{index}_{i}") for i, c in enumerate(conditions)]
    searched = [(n, t) for n, t in plan.features if monitoring_stats.kind_of(t) == "numeric"]
    row = rows.agg(*exprs, *spark_quantiles.counts(searched)).first()
    assert row is not None
    top = _top_values(rows, plan)
    found_quantiles = spark_quantiles.quantiles(rows, searched, row, quantile_settings)
    out = []
    for index, (name, type_) in enumerate(plan.features):
        kind = monitoring_stats.kind_of(type_)
        count = int(row[f"c{index}"] or 0)
        numeric = kind == "numeric"
        quantiles = found_quantiles.get(name)
        psi = None
        profile = profiles.get(name)
        if profile is not None:
            bins = len(profile.edges) + 1 if profile.kind == "numeric" else len(profile.values)
            counts = [int(row[f"b{index}_{i}"] or 0) for i in range(bins)]
            if profile.kind == "categorical":
                counts.append(count - sum(counts))
            psi = drift.psi(profile.fractions, counts)
        out.append(
            monitoring_stats.FeatureStatistics(
                feature=name,
                type=type_,
                count=count,
                nulls=int(row[f"n{index}"] or 0),
                min=row[f"lo{index}"] if numeric else None,
                max=row[f"hi{index}"] if numeric else None,
                mean=row[f"mean{index}"] if numeric else None,
                stddev=row[f"sd{index}"] if numeric else None,
                quantiles=quantiles,
                top_values=top.get(name) if kind == "categorical" else None,
                psi=psi,
            )
        )
    return out


def _top_values(
    rows: DataFrame, plan: planning.MaterializationPlan
) -> dict[str, list[tuple[str, int]]]:
    """Each categorical feature's most frequent values, most frequent first, ties by
    value: one job over the cached rows."""
    from functools import reduce

    from pyspark.sql import Window
    from pyspark.sql import functions as F

    names = [n for n, t in plan.features if monitoring_stats.kind_of(t) == "categorical"]
    if not names:
        return {}
    parts = [
        rows.where(F.col(f"`{name}`").isNotNull())
        .groupBy(F.col(f"`{name}`").cast("string").alias("value"))
        .agg(F.count(F.lit(1)).alias("n"))
        .select(F.lit(name).alias("col"), "value", "n")
        for name in names
    ]
    union = reduce(lambda a, b: a.unionByName(b), parts)
    order = Window.partitionBy("col").orderBy(F.desc("n"), F.asc("value"))
    ranked = union.withColumn("rank", F.row_number().over(order))
    found: dict[str, dict[str, int]] = {name: {} for name in names}
    for item in ranked.where(F.col("rank") <= monitoring_stats.TOP_VALUES).collect():
        found[item["col"]][item["value"]] = int(item["n"])
    return {name: monitoring_stats.rank_top_values(counts) for name, counts in found.items()}


# -- to the writers ------------------------------------------------------------------------------


def _write_online(
    online: online_writer.OnlineWriter,
    rows: DataFrame,
    plan: planning.MaterializationPlan,
    settings: JobSettings,
    observer: Observer,
    ingested: dt.datetime,
    entities: int,
) -> online_writer.OnlineWriteResult:
    """Each entity's newest row, written in bulk, brought to the driver in chunks of
    about ``chunk_rows`` by the estimate of the ``entities``: taken from the cached
    rows without a shuffle, they are not cached themselves nor counted first."""
    newest = _newest_per_entity(rows, plan)
    observer.phase("online", entities)
    return online.write_bulk(
        _arrow_chunks(newest, plan, entities, settings, None),
        now=ingested,
        on_progress=observer.advance,
    )


def _newest_per_entity(rows: DataFrame, plan: planning.MaterializationPlan) -> DataFrame:
    """Each entity's row with the greatest event time (the rows hold one per keys and
    event time: deduplicated, or one per boundary): the last of its entity in event
    time order, which rows of :func:`deduplicated` already are in."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = [name for name, _ in plan.keys]
    carried = [name for name, _ in plan.features]
    if plan.aggregation is not None:
        carried.append(LATEST)
    bucket = [_CHUNK] if _CHUNK in rows.columns else []
    order = Window.partitionBy(*[F.col(f"`{k}`") for k in [*bucket, *keys]]).orderBy(F.col(EVENT))
    last = F.lead(F.col(EVENT)).over(order).isNull().alias("__last")
    return (
        rows.select("*", last)
        .where(F.col("__last"))
        .select(*[F.col(f"`{n}`") for n in [*keys, *carried, EVENT, CREATED, *bucket]])
    )


def _arrow_chunks(
    frame: DataFrame,
    plan: planning.MaterializationPlan,
    total: int,
    settings: JobSettings,
    observer: Observer | None,
) -> Iterator[pa.RecordBatch]:
    """``frame`` (cached) at the driver as Arrow, ``chunk_rows`` rows or so at a time:
    entities are hashed into chunks (by the buckets of :data:`_BUCKETS` when ``frame``
    carries them), each fetched with ``toArrow``."""
    from pyspark.sql import functions as F

    keys = [F.col(f"`{name}`") for name, _ in plan.keys]
    chunks = max(1, math.ceil(total / settings.chunk_rows))
    bucketed = _CHUNK in frame.columns
    if bucketed:
        chunks = min(chunks, _BUCKETS)
        width = math.ceil(_BUCKETS / chunks)
        tagged = frame
    else:
        tagged = frame.withColumn(_CHUNK, F.pmod(F.xxhash64(*keys), F.lit(chunks)))
    for chunk in range(chunks):
        if chunks == 1:
            part = frame
        elif bucketed:
            first = chunk * width
            part = tagged.where((F.col(_CHUNK) >= first) & (F.col(_CHUNK) < first + width))
        else:
            part = tagged.where(F.col(_CHUNK) == chunk)
        if _CHUNK in part.columns:
            part = part.drop(_CHUNK)
        table = part.toArrow()
        yield from table.to_batches()
        if observer is not None:
            observer.advance(table.num_rows)


# -- small helpers ---------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
