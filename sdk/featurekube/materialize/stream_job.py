"""Runs a view version's stream with Spark Structured Streaming; does I/O.

:func:`start` reads the view's Kafka topic and hands each micro-batch to
:class:`BatchWriter`, which, executing a :class:`~featurekube.materialize.stream_plan.StreamPlan`:

1. decodes each record's value (JSON, or Avro by the view's schema, turned into the
   same JSON) and parses it by the declared fields; a record that is not an object of
   them, has a field of the wrong type, or lacks its event time (or, without a
   transformation, a join key) goes to the dead-letter table with its reason;
2. makes the parsed events the temporary view ``source`` and applies the view's
   transformation, exactly as a batch window does over the batch source; keeps the
   events with event time at or after the stream's start (``since``), and deduplicates
   them per (keys, event time) by the batch windows' rule
   (:func:`featurekube.materialize.stream_rows.deduplicated`, the rule of
   :func:`featurekube.materialize.spark_job.deduplicated`);
3. writes each entity's newest row online with the batch windows' writer
   (:meth:`featurekube.writer.online.OnlineWriter.write_bulk`: newer event time wins,
   under the table's write lease, so a backfill window and the stream never race), and
   appends the rows to the offline Delta table.

A micro-batch leaves Spark in one job (two with a transformation: it runs over the
good records in a second): the records' reasons, dead letters and events come out
together as Arrow, and the counts, the deduplication and the latency are taken from
them in the driver (:mod:`featurekube.materialize.stream_rows`). The parse and its
reasons are planned once, on the streaming frame (:meth:`BatchWriter.prepare`); a
micro-batch adds only the checks that depend on it (the clock, an aggregation's
watermark).

Restart loses nothing and counts nothing twice: Spark's checkpoint (on S3, under the
version's offline table) records which offsets each micro-batch read, and a
micro-batch that failed is read again whole with the same batch id. The online write
is idempotent (a value is replaced only by a newer or equally new one), and the offline
and dead-letter appends carry a Delta app transaction (``txnAppId`` = the streaming
query's id, ``txnVersion`` = the batch id), so an append already committed is skipped.

After each micro-batch, and on every poll, the job writes its progress
(:class:`~featurekube.materialize.stream_plan.StreamProgress`) next to the checkpoint,
which the operator turns into status and metrics.

Entry point: ``python -m featurekube.materialize.stream_job --spec FILE --since TIME
--offline-uri URI --online-table NAME``; see :func:`main`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from featurekube.materialize import plan as planning
from featurekube.materialize import (
    spark_job,
    stream_aggregation,
    stream_plan,
    stream_rows,
    stream_windows,
)
from featurekube.materialize.errors import MaterializeError, PlanError
from featurekube.materialize.stream_plan import DeadLetterReason, StreamPlan, StreamProgress
from featurekube.offline import layout as offline_layout
from featurekube.spec import v1alpha1
from featurekube.writer import offline as offline_writer
from featurekube.writer import online as online_writer
from featurekube.writer import rows as row_codec

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

__all__ = [
    "DEAD_LETTER_SCHEMA",
    "BatchWriter",
    "StreamSettings",
    "main",
    "run_until_stopped",
    "start",
]

log = logging.getLogger(__name__)

EVENT = offline_layout.EVENT_TIMESTAMP
CREATED = offline_layout.CREATED_TIMESTAMP
_REASON = "__reason"
_TEXT = "__text"
_AVRO_ERROR = "__avro_error"
_APPENDED = "__appended"
_PARSED = "__parsed"
_RAW = "__raw"
_LETTER = "__letter"
REASON_MAX_CHARS = 1024
"""A dead letter's reason is cut to this length (a quoted value can be long)."""

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("kafka_timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("reason", pa.string()),
        pa.field("batch_id", pa.int64()),
        pa.field("dead_lettered_at", pa.timestamp("us", tz="UTC")),
    ]
)
"""The dead-letter table's columns: where the record was, the record, and why."""


@dataclass(frozen=True)
class StreamSettings:
    """Tuning of one stream job."""

    online: online_writer.OnlineWriteSettings = field(
        default_factory=lambda: online_writer.OnlineWriteSettings(settle_seconds=0.0)
    )
    """How the online writer pushes DynamoDB."""
    poll_seconds: float = 5.0
    """How often the running job refreshes its progress (consumer lag) between batches."""
    max_commit_attempts: int = 6
    """Tries of one Delta append that conflicts with a concurrent commit."""
    history_poll_seconds: float = 30.0
    """Aggregations: how often a stream waiting for its history looks at the tile table."""
    idle_seconds: float = 60.0
    """Aggregations: how long a stream with nothing to read waits before it moves its
    watermark with the clock (:meth:`BatchWriter.advance_if_idle`)."""


Fault = Callable[[str, int], None]
"""Called after each step of a micro-batch (``dead_letters``, ``online``, ``offline``)
with the batch id; raising stops the batch there, as a crash would. For tests."""


class BatchWriter:
    """Writes one micro-batch of the stream; called by ``foreachBatch``."""

    def __init__(
        self,
        plan: StreamPlan,
        *,
        offline_uri: str | None,
        online_table: str | None,
        online_client: Any | None = None,
        storage_options: Mapping[str, str] | None = None,
        settings: StreamSettings | None = None,
        fault: Fault | None = None,
        app_id: Callable[[], str] | None = None,
    ) -> None:
        self.plan = plan
        self.spec = plan.batch.spec
        self.offline_uri = offline_uri
        self.online_table = online_table
        self.settings = settings or StreamSettings()
        self.storage_options = dict(storage_options or {})
        self.fault = fault
        self._app_id = app_id or (lambda: plan.query_name)
        self._online = (
            online_writer.OnlineWriter(
                online_table,
                self.spec,
                online_client,
                settings=self.settings.online,
                label=plan.label,
            )
            if online_table
            else None
        )
        self._aggregator: stream_aggregation.StreamAggregator | None = None
        if plan.batch.aggregation is not None:
            if offline_uri is None:
                raise PlanError(
                    f"{plan.label}: a streaming aggregation keeps its partial aggregates "
                    "beside the offline table: give it --offline-uri"
                )
            self._aggregator = stream_aggregation.StreamAggregator(
                plan.batch,
                plan.since,
                plan.allowed_lateness,
                offline_uri=offline_uri,
                storage_options=storage_options,
                history_start=plan.history_start,
            )
        now = _now()
        self.progress = StreamProgress(started_at=_iso(now), since=_iso(plan.since))
        self._lock = threading.Lock()
        self.on_progress: Callable[[StreamProgress], None] | None = None
        # Aggregations: micro-batches and idle advances move the watermark one at a time.
        self._aggregating = threading.Lock()
        self._applied_at = time.monotonic()

    # -- the micro-batch ----------------------------------------------------------------

    def prepare(self, records: DataFrame) -> DataFrame:
        """The stream's Kafka ``records`` parsed and classified (:func:`_classify`), the
        frame whose micro-batches this writer is called with.

        Built once on the streaming frame, not per micro-batch: a micro-batch arrives
        as the rows of this plan, so it only adds what depends on the batch (the
        clock, the watermark) and collects; building and analysing the parse per
        micro-batch took about a quarter of a small batch's time."""
        return _classify(self.plan, records)

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        """Write micro-batch ``batch_id`` (its Kafka records, as :meth:`prepare` made
        them: ``frame``)."""
        ingested = _now()
        classified = _future(self.plan, frame, ingested)
        if self._aggregator is not None:
            classified = _late(self.plan, self._aggregator, classified, batch_id)
        read = self._read(frame.sparkSession, classified, ingested)
        if read.records == 0:
            return
        app = self._app_id()
        if read.letters.num_rows:
            self._dead_letters(read.letters, batch_id, app, ingested)
        self._step("dead_letters", batch_id)
        written = self._write(read.events, batch_id, app, ingested)
        with self._lock:
            progress = self.progress
            progress.batch_id = batch_id
            progress.updated_at = _iso(_now())
            progress.records += read.records
            progress.dead_letters += read.letters.num_rows
            progress.late += read.late
            if written.watermark is not None:
                progress.watermark = _iso(written.watermark)
            progress.before_start += written.before_start
            progress.unkeyed += written.unkeyed
            progress.rows += written.rows
            if written.last_event is not None and (
                progress.last_event_time is None
                or _iso(written.last_event) > progress.last_event_time
            ):
                progress.last_event_time = _iso(written.last_event)
            if written.online_at is not None:
                progress.latency_p50_seconds, progress.latency_max_seconds = (
                    stream_plan.latency_quantiles(written.online_at, written.appended)
                )
                progress.first_online_at = progress.first_online_at or _iso(written.online_at)
        self._report()

    def wait_for_history(self) -> None:
        """Aggregations: return once the batch windows have stored the intervals before
        the split the stream's windows read, reporting the wait in the progress
        (:meth:`~featurekube.materialize.stream_aggregation.StreamAggregator.
        wait_for_history`)."""
        if self._aggregator is None:
            return
        interval = self._aggregator.interval

        def report(gap: stream_windows.HistoryGap | None) -> None:
            with self._lock:
                progress = self.progress
                progress.updated_at = _iso(_now())
                progress.waiting_for_history = gap is not None
                progress.history_missing = gap.missing if gap is not None else 0
                progress.history_missing_from = (
                    _iso(planning.from_micros(gap.first - interval)) if gap else None
                )
                progress.history_missing_until = (
                    _iso(planning.from_micros(gap.last)) if gap else None
                )
            self._report()

        self._aggregator.wait_for_history(self.settings.history_poll_seconds, report)

    def _step(self, name: str, batch_id: int) -> None:
        if self.fault is not None:
            self.fault(name, batch_id)

    def _report(self) -> None:
        if self.on_progress is not None:
            with self._lock:
                snapshot = StreamProgress(**vars(self.progress))
            self.on_progress(snapshot)

    def _read(self, spark: SparkSession, classified: DataFrame, ingested: dt.datetime) -> _Read:
        """The micro-batch out of Spark: its dead letters and its events.

        Without a transformation the events are columns of the records themselves, so
        one projection holds everything and one Spark job (``toArrow``) reads, parses
        and classifies the records once; a micro-batch's fixed cost is mostly its Spark
        jobs. With one, a second job runs the transformation over the good records,
        kept (persisted) from the first."""
        from pyspark.sql import functions as F

        outcome = [F.col(_REASON), _letter()]
        transforms = self.plan.batch.transformation is not None
        if transforms:
            classified = classified.persist()
        try:
            if transforms:
                table = classified.select(*outcome).toArrow()
            else:
                source = _source(self.plan, classified, *outcome)
                table = source.select(
                    _REASON, _LETTER, *self._event_columns(source, ingested)
                ).toArrow()
            reasons = table.column(_REASON)
            good = pc.is_null(reasons)
            letters = table.filter(pc.invert(good)).column(_LETTER)
            late = pc.sum(pc.starts_with(reasons, DeadLetterReason.LATE).cast(pa.int64()))
            if transforms:
                good_records = _source(self.plan, classified.where(F.col(_REASON).isNull()))
                frame = spark_job.transformed(spark, good_records, self.plan.batch)
                events = frame.select(*self._event_columns(frame, ingested)).toArrow()
            else:
                events = table.filter(good).drop_columns([_REASON, _LETTER])
        finally:
            if transforms:
                classified.unpersist()
        return _Read(
            records=table.num_rows,
            letters=pa.Table.from_struct_array(letters.combine_chunks())
            if letters.length()
            else pa.table({}),
            late=int(late.as_py() or 0),
            events=events,
        )

    def _dead_letters(
        self, letters: pa.Table, batch_id: int, app: str, ingested: dt.datetime
    ) -> None:
        table = letters.append_column(
            "batch_id", pa.array([batch_id] * letters.num_rows, pa.int64())
        ).append_column(
            "dead_lettered_at",
            pa.array([ingested] * letters.num_rows, pa.timestamp("us", tz="UTC")),
        )
        if self.offline_uri is None:
            log.warning(
                "%s: %d dead letters, and no offline store to keep them",
                self.plan.label,
                table.num_rows,
            )
            return
        table = table.cast(DEAD_LETTER_SCHEMA)
        _append_once(
            stream_plan.dead_letter_uri(self.offline_uri),
            table,
            app,
            batch_id,
            self.storage_options,
            partition_by=None,
            attempts=self.settings.max_commit_attempts,
        )

    def _event_columns(self, frame: DataFrame, ingested: dt.datetime) -> list[Column]:
        """The events' columns over ``frame`` (the records' fields, or the
        transformation's rows): keys, features, event and created times, and when each
        record was appended to Kafka."""
        from pyspark.sql import functions as F

        batch = self.plan.batch
        found = {
            f.name: f.dataType.simpleString()
            for f in frame.schema.fields
            if f.name not in (_REASON, _LETTER)
        }
        planning.require_columns(batch, found, stream=True)
        created: Column = (
            F.coalesce(F.col(batch.created_field).cast("timestamp"), F.lit(ingested))
            if batch.created_field
            else F.lit(ingested)
        )
        # The transformation may drop the Kafka timestamp: then the latency is unknown.
        appended = F.col(_APPENDED) if _APPENDED in found else F.lit(None).cast("timestamp")
        if batch.aggregation is None:
            values = [
                F.col(n).cast(v1alpha1.SPARK_SQL_TYPES[t]).alias(n) for n, t in batch.features
            ]
        else:  # every event counts: the aggregated columns, as a batch window reads them
            values = [
                (F.col(n) if t == "any" else F.col(n).cast(v1alpha1.SPARK_SQL_TYPES[t])).alias(n)
                for n, t in planning.read_types(batch, found).items()
            ]
        return [
            *[F.col(n).cast(v1alpha1.SPARK_SQL_TYPES[t]).alias(n) for n, t in batch.keys],
            *values,
            F.col(batch.timestamp_field).cast("timestamp").alias(EVENT),
            created.alias(CREATED),
            appended.alias(_APPENDED),
        ]

    def _write(self, events: pa.Table, batch_id: int, app: str, ingested: dt.datetime) -> _Written:
        """Count the events the stream does not own, then write the others: each
        (keys, event time) once, or merged into a streaming aggregation's tiles."""
        plan, batch = self.plan, self.plan.batch
        keys = [name for name, _ in batch.keys]
        aggregated = self._aggregator is not None
        since = self._aggregator.split_time if self._aggregator is not None else plan.since
        mine = stream_rows.owned(events, keys, since, after=aggregated)
        unkeyed = stream_rows.false_count(stream_rows.keyed(events, keys))
        written = _Written(before_start=stream_rows.false_count(mine) - unkeyed, unkeyed=unkeyed)
        self._warn_unkeyed(batch_id, unkeyed)
        owned_rows = events.filter(mine)
        appended = stream_rows.appended_micros(owned_rows.column(_APPENDED))
        table = owned_rows.drop_columns([_APPENDED])
        if aggregated:
            return self._write_aggregations(table, written, appended, batch_id, app, ingested)
        rows = stream_rows.deduplicated(table, keys, batch.features)
        written.rows = rows.num_rows
        if rows.num_rows:
            newest = pc.max(rows.column(EVENT)).as_py()
            written.last_event = planning.utc(newest) if newest else None
            written.appended = appended
        self._publish(stream_rows.newest(rows, keys), rows, written, batch_id, app, ingested)
        return written

    def _warn_unkeyed(self, batch_id: int, unkeyed: int) -> None:
        if unkeyed:
            # Rows the transformation left without a key or an event time.
            log.warning(
                "%s: batch %d: %d rows without a join key or event time after "
                "spec.transformation.sql, not written",
                self.plan.label,
                batch_id,
                unkeyed,
            )

    def _write_aggregations(
        self,
        events: pa.Table,
        written: _Written,
        appended: list[int],
        batch_id: int,
        app: str,
        ingested: dt.datetime,
    ) -> _Written:
        """Merge the events into the tiles, then write the affected entities' rows:
        each one's newest online, all of them offline (:mod:`featurekube.materialize.
        stream_aggregation`)."""
        assert self._aggregator is not None
        micros = {
            EVENT: planning.EVENT_MICROS,
            CREATED: planning.CREATED_MICROS,
        }
        columns = [
            pc.cast(events.column(name), pa.int64()) if name in micros else events.column(name)
            for name in events.column_names
        ]
        names = [micros.get(name, name) for name in events.column_names]
        with self._aggregating:
            result = self._aggregator.apply(
                pa.Table.from_arrays(columns, names=names), batch_id, app, ingested
            )
            written.rows = result.rows.num_rows
            if result.watermark is not None:
                written.watermark = planning.from_micros(result.watermark)
                if events.num_rows:
                    written.last_event = written.watermark
                    written.appended = appended
            self._publish(result.newest, result.rows, written, batch_id, app, ingested)
            self._applied_at = time.monotonic()
        return written

    def advance_if_idle(self) -> None:
        """Aggregations: once the stream has had nothing to read (consumer lag 0) for
        ``idle_seconds`` since its last micro-batch, move its watermark to the clock
        less allowedLateness and write the values of the entities whose windows that
        empties, as a micro-batch would (:meth:`~featurekube.materialize.
        stream_aggregation.StreamAggregator.advance`). Offline they are appended once
        per boundary reached (app transaction ``<query id>-idle``)."""
        if self._aggregator is None:
            return
        with self._lock:
            lag = self.progress.consumer_lag
        if lag != 0 or time.monotonic() - self._applied_at < self.settings.idle_seconds:
            return
        with self._aggregating:
            now = _now()
            result = self._aggregator.advance(now)
            if result is None or result.watermark is None:
                return
            step = result.boundary // self._aggregator.interval
            written = _Written()
            self._publish(result.newest, result.rows, written, step, f"{self._app_id()}-idle", now)
            self._aggregator.record_advance(result.watermark)
        with self._lock:
            self.progress.watermark = _iso(planning.from_micros(result.watermark))
            self.progress.rows += result.rows.num_rows
            self.progress.updated_at = _iso(_now())
        self._report()

    def _publish(
        self,
        newest: pa.Table,
        rows: pa.Table,
        written: _Written,
        batch_id: int,
        app: str,
        ingested: dt.datetime,
    ) -> None:
        """Write ``newest`` online (each entity's newest row wins) and append ``rows``
        offline once per (``app``, ``batch_id``), in that order: a crash between the two
        replays a batch whose online write is idempotent."""
        if self._online is not None and newest.num_rows:
            self._online.write_bulk(newest, now=ingested)
            written.online_at = _now()
        self._step("online", batch_id)
        if self.offline_uri is not None and rows.num_rows:
            _append_once(
                self.offline_uri,
                _offline_table(self.spec, rows, ingested, self.plan.label),
                app,
                batch_id,
                self.storage_options,
                partition_by=[offline_layout.EVENT_DATE],
                attempts=self.settings.max_commit_attempts,
            )
        self._step("offline", batch_id)


@dataclass
class _Written:
    before_start: int = 0
    unkeyed: int = 0
    rows: int = 0
    watermark: dt.datetime | None = None
    last_event: dt.datetime | None = None
    online_at: dt.datetime | None = None
    appended: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Read:
    """A micro-batch out of Spark."""

    records: int
    letters: pa.Table
    """The dead letters: :data:`DEAD_LETTER_SCHEMA`'s columns up to ``reason``."""
    late: int
    """Of them, the events too late for a streaming aggregation."""
    events: pa.Table
    """The good records as events: keys, values, event and created times, and when
    each record was appended to Kafka."""


# -- parsing --------------------------------------------------------------------------------


def _classify(plan: StreamPlan, frame: DataFrame) -> DataFrame:
    """The records with their parsed value (``__parsed``) and, for those that fail, the
    reason (``__reason``, null for good records)."""
    from pyspark.sql import functions as F

    if plan.format == "avro":
        decoded = _avro_as_json(plan, frame)
        text = F.col(_TEXT)
    else:
        decoded = frame
        text = F.col("value").cast("string")
    once = decoded.select("*", F.from_json(text, stream_plan.value_ddl(plan.fields)).alias(_PARSED))
    # A record with every field parsed is an object of them with the right types: only
    # the others are parsed again, to tell why (a second and third parse of every
    # record were a third of a micro-batch's time).
    suspect = F.col(_PARSED).isNull()
    for item in plan.fields:
        suspect = suspect | F.col(f"{_PARSED}.`{item.name}`").isNull()
    parsed = once.select(
        "*",
        F.when(suspect, F.from_json(text, stream_plan.value_ddl(plan.fields, as_text=True))).alias(
            _RAW
        ),
        F.when(suspect, F.json_object_keys(text).isNull()).alias("__not_object"),
    )
    reason: Column = F.when(F.col("value").isNull(), F.lit(DeadLetterReason.EMPTY))
    if plan.format == "avro":
        reason = reason.when(
            F.col(_AVRO_ERROR).isNotNull(),
            F.concat(F.lit(DeadLetterReason.NOT_AVRO + ": "), F.col(_AVRO_ERROR)),
        )
    reason = reason.when(F.col("__not_object"), F.lit(DeadLetterReason.NOT_JSON))
    for item in plan.fields:
        typed, raw = F.col(f"{_PARSED}.`{item.name}`"), F.col(f"{_RAW}.`{item.name}`")
        reason = reason.when(
            typed.isNull() & raw.isNotNull(),
            F.concat(
                F.lit(f"{DeadLetterReason.WRONG_TYPE}: field {item.name} is not {item.type}: "),
                F.substring(raw, 1, 200),
            ),
        )
    event_field = plan.batch.timestamp_field
    reason = reason.when(
        F.col(f"{_PARSED}.`{event_field}`").isNull(),
        F.lit(f"{DeadLetterReason.NO_EVENT_TIME}: field {event_field} is missing or null"),
    )
    for key in plan.key_fields:
        reason = reason.when(
            F.col(f"{_PARSED}.`{key}`").isNull(),
            F.lit(f"{DeadLetterReason.NO_KEY}: field {key} is missing or null"),
        )
    return parsed.withColumn(_REASON, reason)


def _future(plan: StreamPlan, classified: DataFrame, ingested: dt.datetime) -> DataFrame:
    """``classified`` with the events stamped more than ``MAX_FUTURE_SKEW`` after the
    micro-batch was read given the reason ``in the future``: never served before
    their time, and never the watermark of a streaming aggregation."""
    from pyspark.sql import functions as F

    limit = ingested + stream_plan.MAX_FUTURE_SKEW
    event = F.col(f"{_PARSED}.`{plan.batch.timestamp_field}`")
    reason = F.concat(
        F.lit(f"{DeadLetterReason.FUTURE}: event time "),
        F.date_format(event, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'"),
        F.lit(
            f" is more than {_duration(stream_plan.MAX_FUTURE_SKEW)} after the micro-batch "
            f"was read ({_iso(ingested)})"
        ),
    )
    is_future = F.col(_REASON).isNull() & (event > F.lit(limit))
    return classified.withColumn(_REASON, F.when(is_future, reason).otherwise(F.col(_REASON)))


def _late(
    plan: StreamPlan,
    aggregator: stream_aggregation.StreamAggregator,
    classified: DataFrame,
    batch_id: int,
) -> DataFrame:
    """``classified`` with the events too late for micro-batch ``batch_id`` given the
    reason ``late``: their event time (the record's) more than ``allowedLateness``
    behind the watermark the batch is judged by. Events the batch windows own (at or
    before the split) are never late: the batch source has them."""
    from pyspark.sql import functions as F

    cut = aggregator.late_before(batch_id)
    if cut is None:
        return classified
    event = F.col(f"{_PARSED}.`{plan.batch.timestamp_field}`")
    watermark = _iso(cut + plan.allowed_lateness)
    is_late = (
        F.col(_REASON).isNull() & (event < F.lit(cut)) & (event > F.lit(aggregator.split_time))
    )
    reason = F.concat(
        F.lit(f"{DeadLetterReason.LATE}: event time "),
        F.date_format(event, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'"),
        F.lit(
            f" is more than allowedLateness ({_duration(plan.allowed_lateness)}) before the "
            f"stream's watermark {watermark}"
        ),
    )
    return classified.withColumn(_REASON, F.when(is_late, reason).otherwise(F.col(_REASON)))


def _letter() -> Column:
    """A bad record's dead letter (:data:`DEAD_LETTER_SCHEMA` up to ``reason``) as a
    struct, null for a good record: good records take nothing more out of Spark."""
    from pyspark.sql import functions as F

    return F.when(
        F.col(_REASON).isNotNull(),
        F.struct(
            "topic",
            F.col("partition").cast("int").alias("partition"),
            "offset",
            F.col("timestamp").alias("kafka_timestamp"),
            "key",
            "value",
            F.substring(F.col(_REASON), 1, REASON_MAX_CHARS).alias("reason"),
        ),
    ).alias(_LETTER)


def _source(plan: StreamPlan, classified: DataFrame, *extra: Column) -> DataFrame:
    """The records as the transformation's ``source`` reads them: their fields by
    name, and ``__appended``, when each was appended to Kafka; ``extra`` before them."""
    from pyspark.sql import functions as F

    return classified.select(
        *extra,
        *[F.col(f"{_PARSED}.`{f.name}`").alias(f.name) for f in plan.fields],
        F.col("timestamp").alias(_APPENDED),
    )


def _duration(span: dt.timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _avro_as_json(plan: StreamPlan, frame: DataFrame) -> DataFrame:
    """``frame`` with ``__text``, each Avro value as the JSON object of its fields (null
    when it does not decode), and ``__avro_error``, why it did not."""
    schema_text = plan.avro_schema
    assert schema_text is not None
    out_schema = f"{', '.join(_ddl_of(frame))}, {_TEXT} string, {_AVRO_ERROR} string"

    def decode(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import io

        import fastavro

        parsed = fastavro.parse_schema(json.loads(schema_text))
        for batch in batches:
            texts: list[str | None] = []
            errors: list[str | None] = []
            for value in batch.column("value").to_pylist():
                if value is None:
                    texts.append(None)
                    errors.append(None)
                    continue
                stream = io.BytesIO(value)
                try:
                    record = fastavro.schemaless_reader(stream, parsed, None)
                    if stream.tell() != len(value):
                        raise ValueError(f"{len(value) - stream.tell()} bytes left over")
                    texts.append(json.dumps(record, default=_json_default))
                    errors.append(None)
                except Exception as exc:
                    texts.append(None)
                    errors.append(f"{type(exc).__name__}: {exc}"[:500])
            yield pa.RecordBatch.from_arrays(
                [*batch.columns, pa.array(texts, pa.string()), pa.array(errors, pa.string())],
                names=[*batch.schema.names, _TEXT, _AVRO_ERROR],
            )

    return frame.mapInArrow(decode, out_schema)


def _ddl_of(frame: DataFrame) -> list[str]:
    return [f"`{f.name}` {f.dataType.simpleString()}" for f in frame.schema.fields]


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _iso(planning.utc(value))
    raise TypeError(f"{type(value).__name__} is not JSON")


# -- writing --------------------------------------------------------------------------------


def _offline_table(
    spec: v1alpha1.FeatureViewSpec, table: pa.Table, ingested: dt.datetime, label: str
) -> pa.Table:
    """The rows as the offline table's columns: :mod:`featurekube.writer.rows`' schema,
    then ``ingestion_timestamp`` and ``event_date`` (as the offline writer adds them)."""
    schema = offline_writer.offline_schema(spec)
    ingestion = pa.scalar(ingested, row_codec.TIMESTAMP)
    batches = []
    for batch in row_codec.iter_batches(spec, table, created_default=ingested, label=label):
        events = batch.column(EVENT)
        columns = [
            *batch.columns,
            pa.repeat(ingestion, batch.num_rows),
            pc.cast(events, pa.date32()),
        ]
        batches.append(pa.RecordBatch.from_arrays(columns, schema=schema))
    return pa.Table.from_batches(batches, schema=schema)


def _append_once(
    uri: str,
    table: pa.Table,
    app_id: str,
    batch_id: int,
    storage_options: Mapping[str, str],
    *,
    partition_by: list[str] | None,
    attempts: int,
) -> bool:
    """Append ``table`` to the Delta table at ``uri`` with the app transaction
    (``app_id``, ``batch_id``), unless that transaction or a later one is committed
    already; True if it appended. Conflicting concurrent commits are retried."""
    import deltalake
    from deltalake import CommitProperties, Transaction

    from featurekube import s3_prefixes

    uri = s3_prefixes.normalize(uri)
    options = offline_writer.storage_options_for(uri, storage_options)
    for attempt in range(1, attempts + 1):
        done = _transaction_version(uri, app_id, options)
        if done is not None and done >= batch_id:
            log.info("%s: batch %d is already committed (txn %s), skipped", uri, batch_id, done)
            return False
        try:
            deltalake.write_deltalake(
                uri,
                table,
                mode="append",
                partition_by=partition_by,
                storage_options=options,
                commit_properties=CommitProperties(
                    app_transactions=[Transaction(app_id=app_id, version=batch_id)]
                ),
            )
            return True
        except Exception as exc:
            if attempt == attempts or "conflict" not in f"{type(exc).__name__} {exc}".lower():
                raise
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _transaction_version(uri: str, app_id: str, options: Mapping[str, str]) -> int | None:
    import deltalake
    from deltalake.exceptions import TableNotFoundError

    try:
        table = deltalake.DeltaTable(uri, storage_options=dict(options))
    except TableNotFoundError:
        return None
    version: int | None = table.transaction_version(app_id)
    return version


# -- the query ---------------------------------------------------------------------------------


@dataclass
class StreamRun:
    """A started stream: its query and the writer of its micro-batches."""

    query: StreamingQuery
    writer: BatchWriter
    progress_uri: str | None

    def refresh(self) -> StreamProgress:
        """Take the consumer lag from the query's last progress, write the progress
        document, and return it."""
        lag = stream_plan.consumer_lag(_last_progress(self.query))
        with self.writer._lock:
            if lag is not None:
                self.writer.progress.consumer_lag = lag
            self.writer.progress.updated_at = _iso(_now())
            snapshot = StreamProgress(**vars(self.writer.progress))
        if self.progress_uri is not None:
            write_progress(self.progress_uri, snapshot)
        return snapshot


def _last_progress(query: StreamingQuery) -> Mapping[str, Any] | None:
    last = query.lastProgress
    if last is None:
        return None
    if isinstance(last, Mapping):
        return last
    found: Mapping[str, Any] = json.loads(last.json)
    return found


def start(
    spark: SparkSession,
    plan: StreamPlan,
    *,
    offline_uri: str | None,
    online_table: str | None,
    checkpoint: str | None = None,
    available_now: bool = False,
    online_client: Any | None = None,
    storage_options: Mapping[str, str] | None = None,
    settings: StreamSettings | None = None,
    fault: Fault | None = None,
    write_progress_document: bool = True,
) -> StreamRun:
    """Start the stream of ``plan``: continuous micro-batches every
    ``plan.trigger_seconds``, or (``available_now``) the records there now, then stop.

    ``checkpoint``: default :func:`~featurekube.materialize.stream_plan.checkpoint_uri`
    of ``offline_uri``.
    """
    if checkpoint is None:
        if offline_uri is None:
            raise PlanError(f"{plan.label}: a stream without an offline store needs --checkpoint")
        checkpoint = stream_plan.checkpoint_uri(offline_uri)
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    context = spark.sparkContext
    if (context.master or "").startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        context.pythonExec = sys.executable  # local workers share this interpreter
    query_id: dict[str, str] = {}

    def app_id() -> str:
        # The query's id is kept in its checkpoint: the same across restarts, new for a
        # new checkpoint (whose batch ids start again at 0).
        if "id" not in query_id:
            for active in spark.streams.active:
                if active.name == plan.query_name:
                    query_id["id"] = f"featurekube-stream-{active.id}"
        return query_id.get("id", f"featurekube-stream-{checkpoint}")

    writer = BatchWriter(
        plan,
        offline_uri=offline_uri,
        online_table=online_table,
        online_client=online_client,
        storage_options=storage_options,
        settings=settings,
        fault=fault,
        app_id=app_id,
    )
    progress = (
        stream_plan.progress_uri(offline_uri)
        if offline_uri is not None and write_progress_document
        else None
    )
    if progress is not None:
        writer.on_progress = lambda snapshot: write_progress(progress, snapshot)
    # Not a record is read before the history the stream's windows reach back to is
    # stored: Kafka keeps the events from the split on meanwhile.
    writer.wait_for_history()
    reader = spark.readStream.format("kafka")
    for key, value in plan.kafka_options.items():
        reader = reader.option(key, value)
    stream = (
        writer.prepare(reader.load())
        .writeStream.queryName(plan.query_name)
        .foreachBatch(writer)
        .option("checkpointLocation", checkpoint)
    )
    if available_now:
        stream = stream.trigger(availableNow=True)
    else:
        stream = stream.trigger(processingTime=f"{plan.trigger_seconds} seconds")
    query = stream.start()
    return StreamRun(query, writer, progress)


def write_progress(uri: str, progress: StreamProgress) -> None:
    """Write the progress document to ``uri`` (s3:// or a local path)."""
    document = stream_plan.render_progress(progress)
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        import boto3

        boto3.client("s3").put_object(
            Bucket=parsed.netloc,
            Key=parsed.path.lstrip("/"),
            Body=document,
            ContentType="application/json",
        )
        return
    path = Path(parsed.path if parsed.scheme == "file" else uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(document)


def run_until_stopped(run: StreamRun, poll_seconds: float) -> None:
    """Refresh the progress every ``poll_seconds`` while the query runs; raise its
    failure when it stops with one."""
    while run.query.isActive:
        run.query.awaitTermination(max(1, round(poll_seconds)))
        run.refresh()
        run.writer.advance_if_idle()
    failure = run.query.exception()
    if failure is not None:
        raise MaterializeError(f"{run.writer.plan.label}: the stream stopped: {failure}")


# -- entry point ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m featurekube.materialize.stream_job",
        description="Run a FeatureView version's stream: Kafka -> online and offline stores.",
    )
    parser.add_argument("--spec", required=True, help="the FeatureView (or its snapshot), YAML")
    parser.add_argument(
        "--since",
        required=True,
        help="the stream's start (ISO 8601): events before it come from batch windows",
    )
    parser.add_argument("--offline-uri", help="the version's offline Delta table")
    parser.add_argument("--online-table", help="the version's DynamoDB table")
    parser.add_argument("--checkpoint", help="default: <offline uri>/_stream/checkpoint")
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS", ""),
        help="brokers when the view names none (default: $FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument("--version", type=int, help="the view version, for the query's name")
    parser.add_argument(
        "--history-start",
        help="aggregations: where the version's batch windows start (ISO 8601); default "
        "materialization.startTime, else --since",
    )
    parser.add_argument(
        "--available-now", action="store_true", help="read what is there now, then stop"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stream until it is stopped; exit 2 on a bad spec, 1 on a failure."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    arguments = _parser().parse_args(argv)
    try:
        body = yaml.safe_load(Path(arguments.spec).read_text())
        view, resolved = planning.read_view_document(body)
        offline_uri = arguments.offline_uri or resolved.get("offlineUri")
        online_table = arguments.online_table or resolved.get("onlineTable")
        plan = stream_plan.plan_stream(
            view,
            planning.parse_time(arguments.since),
            bootstrap_servers=arguments.bootstrap_servers,
            client_options=stream_plan.kafka_client_options(os.environ),
            version=arguments.version or resolved.get("version"),
            history_start=(
                planning.parse_time(arguments.history_start) if arguments.history_start else None
            ),
        )
    except (PlanError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from featurekube.materialize import spark_job

    spark = spark_job.open_session(f"featurekube-stream-{view.metadata.name}")
    settings = StreamSettings()
    run = start(
        spark,
        plan,
        offline_uri=offline_uri,
        online_table=online_table,
        checkpoint=arguments.checkpoint,
        available_now=arguments.available_now,
        settings=settings,
    )
    try:
        run_until_stopped(run, settings.poll_seconds)
    except MaterializeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return planning.utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


if __name__ == "__main__":
    sys.exit(main())
