"""A streaming aggregation's micro-batches: tiles merged, rows computed from tiles;
does I/O (the version's tile table, and the stream's state beside its checkpoint).

:class:`StreamAggregator` executes what :mod:`featurekube.materialize.stream_windows`
plans, for :class:`~featurekube.materialize.stream_job.BatchWriter`: given a
micro-batch's events (keys, aggregated columns, event and created times in µs), it
merges their interval tiles into the tile table in one commit, then computes from
tiles the rows of every entity the batch affects, for the online and offline stores.

Run again with the same batch id after a restart, a micro-batch changes no tile: the
tile commit carries a Delta app transaction (the stream's id, the batch id) and is
skipped when that transaction is committed, and the rows are then computed from the
tiles as they are. The watermark the batch judges lateness by is kept in the stream's
state document with the batch id, so a batch run again judges by the same one.

Its windows reach back across the split into the intervals the batch windows store:
:meth:`StreamAggregator.wait_for_history` blocks, before the stream reads its topic,
until every one of them is stored, and a micro-batch that finds one missing after all
(the tile table replaced meanwhile) fails before it writes anything, so that no value
lacking their events is ever written.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc

from featurekube import s3_prefixes
from featurekube.materialize import plan as planning
from featurekube.materialize import stream_windows, tile_store, tiles
from featurekube.materialize.errors import MaterializeError, PlanError
from featurekube.offline import layout as offline_layout

__all__ = ["AggregatedBatch", "StreamAggregator", "state_uri"]

log = logging.getLogger(__name__)

STATE_MAX_BYTES = 64 * 1024
"""The largest state document read back."""
MAX_ADVANCE = 24 * 3_600_000_000
"""The furthest one idle advance moves the watermark (µs): a stream idle for longer
catches up a day at a time, so that no advance computes more than a day of rows."""
MAX_HISTORY_POLL_SECONDS = 300.0
"""The longest pause between two looks at the tile table while waiting for history:
shorter than the operator's patience with a stream that does not report."""


def state_uri(offline_uri: str) -> str:
    """Where the stream keeps its watermark: ``<offline uri>/_stream/aggregation.json``."""
    return f"{offline_layout.stream_uri(s3_prefixes.normalize(offline_uri))}/aggregation.json"


@dataclass(frozen=True)
class AggregatedBatch:
    """What one micro-batch writes."""

    rows: pa.Table
    """The affected entities' rows at every boundary they change, in the view's row
    schema (:func:`featurekube.writer.rows.row_schema`), for the offline table."""
    newest: pa.Table
    """Each affected entity's row at the stream's current boundary, for online."""
    watermark: int | None
    """The watermark after the batch (µs)."""
    boundary: int
    """The stream's current boundary after the batch (µs)."""
    replayed: bool
    """The batch's tiles were committed by an earlier run of it."""


class StreamAggregator:
    """The streaming aggregation of one view version."""

    def __init__(
        self,
        batch: planning.MaterializationPlan,
        since: dt.datetime,
        allowed_lateness: dt.timedelta,
        *,
        offline_uri: str,
        storage_options: Mapping[str, str] | None = None,
        history_start: dt.datetime | None = None,
    ) -> None:
        """``history_start``: where the version's batch windows start (the operator's
        first window); None: the view's ``materialization.startTime``, else ``since``
        (no batch window before the stream)."""
        aggregation = batch.aggregation
        assert aggregation is not None
        self.batch = batch
        self.aggregation = aggregation
        self.interval = aggregation.interval
        self.sizes = tiles.tile_sizes(self.interval)
        self.keys = [name for name, _ in batch.keys]
        self.split = stream_windows.split_boundary(planning.to_micros(since), self.interval)
        self.allowed = int(allowed_lateness.total_seconds() * 1_000_000)
        start = history_start or batch.spec.materialization.start_time or since
        self.history = stream_windows.history_range(
            self.split,
            self.interval,
            aggregation.longest_window,
            planning.to_micros(planning.utc(start)),
        )
        self.offline_uri = offline_uri
        self.storage_options = dict(storage_options or {})
        self.store = tile_store.TileStore(
            offline_layout.tiles_uri(offline_uri), storage_options, label=batch.label
        )
        self._state: dict[str, Any] | None = None
        self._judged: tuple[int, int | None] | None = None

    @property
    def split_time(self) -> dt.datetime:
        """The last boundary batch windows own: the stream takes the events after it."""
        return planning.from_micros(self.split)

    # -- the history before the split ------------------------------------------------

    def history_gap(self) -> stream_windows.HistoryGap | None:
        """The intervals before the split the stream's windows read that the tile table
        does not hold yet (by their markers); None when every one is stored."""
        if self.history is None:
            return None
        first, last = self.history
        keys = {(self.interval, end) for end in range(first, last + 1, self.interval)}
        stored = self.store.markers(keys) or set()
        return stream_windows.missing_history(self.history, stored, self.interval)

    def wait_for_history(
        self,
        poll_seconds: float,
        report: Callable[[stream_windows.HistoryGap | None], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Return once every interval before the split the stream's windows read is
        stored, looking every ``poll_seconds`` (at most
        :data:`MAX_HISTORY_POLL_SECONDS`) and calling ``report`` with what is missing
        after each look (None at the last)."""
        if not 0 < poll_seconds <= MAX_HISTORY_POLL_SECONDS:
            raise ValueError(
                f"{self.batch.label}: the history poll is between 0 and "
                f"{MAX_HISTORY_POLL_SECONDS:.0f} seconds, not {poll_seconds}"
            )
        while True:
            gap = self.history_gap()
            report(gap)
            if gap is None:
                return
            log.info(
                "%s: waiting for the batch windows to store the history before the "
                "stream's split (%s): %d intervals from %s to %s are missing",
                self.batch.label,
                self.split_time.isoformat(),
                gap.missing,
                planning.from_micros(gap.first - self.interval).isoformat(),
                planning.from_micros(gap.last).isoformat(),
            )
            sleep(poll_seconds)

    # -- the watermark ----------------------------------------------------------------

    def watermark_before(self, batch_id: int) -> int | None:
        """The watermark micro-batch ``batch_id`` is judged by: the one after the
        previous batch or an idle advance since (or, for a batch run again, the one it
        was judged by first)."""
        state = self._load_state()
        if not state:
            return None
        if int(state["batch_id"]) == batch_id:
            before: int | None = state.get("before")
            return before
        marks = [m for m in (state.get("after"), state.get("idle")) if m is not None]
        return max(marks) if marks else None

    def late_before(self, batch_id: int) -> dt.datetime | None:
        """Events with an earlier time are too late for batch ``batch_id``: judged by
        the watermark this returns, which :meth:`apply` then keeps with the batch, even
        if an idle advance moves it in between."""
        watermark = self.watermark_before(batch_id)
        self._judged = (batch_id, watermark)
        if watermark is None:
            return None
        return planning.from_micros(watermark - self.allowed)

    def _load_state(self) -> dict[str, Any]:
        if self._state is None:
            document = _read(state_uri(self.offline_uri))
            parsed: Any = json.loads(document) if document else {}
            self._state = parsed if isinstance(parsed, dict) else {}
        return self._state

    def _save_state(
        self, batch_id: int, before: int | None, after: int | None, schema: pa.Schema
    ) -> None:
        # An idle advance is kept beside the batches' watermarks: a batch run again
        # after it is judged as before, and the next one by the advance.
        state = dict(self._load_state())
        state |= {"batch_id": batch_id, "before": before, "after": after}
        state["schema"] = base64.b64encode(schema.serialize().to_pybytes()).decode()
        self._write_state(state)

    def _write_state(self, state: dict[str, Any]) -> None:
        _write(state_uri(self.offline_uri), json.dumps(state).encode())
        self._state = state

    # -- an idle stream --------------------------------------------------------------

    def advance(self, now: dt.datetime) -> AggregatedBatch | None:
        """The rows of moving an idle stream's watermark to ``now`` - allowedLateness,
        at most :data:`MAX_ADVANCE` further (docs/semantics.md, "Streaming
        aggregations"): those of the entities an
        interval leaves a window of at a boundary it passes, created at ``now``. None
        when it moves past no boundary, or the stream has applied no event yet.
        Nothing is stored: write the rows, then :meth:`record_advance`."""
        state = self._load_state()
        if not state or "schema" not in state:
            return None
        current = self.watermark_before(int(state["batch_id"]) + 1)
        if current is None:
            return None
        target = min(planning.to_micros(planning.utc(now)) - self.allowed, current + MAX_ADVANCE)
        if target <= current:
            return None
        span = stream_windows.boundaries(current, target, self.split, self.interval)
        if span.after <= span.before:
            return None
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(state["schema"])))
        return self._compute(schema.empty_table(), current, target, now, None)

    def record_advance(self, watermark: int) -> None:
        """Keep an idle advance to ``watermark`` (µs), once its rows are written: the
        next micro-batch is judged by it."""
        state = dict(self._load_state())
        if state.get("idle") is None or watermark > state["idle"]:
            state["idle"] = watermark
            self._write_state(state)

    # -- a micro-batch -------------------------------------------------------------------

    def apply(
        self, events: pa.Table, batch_id: int, app_id: str, ingested: dt.datetime
    ) -> AggregatedBatch:
        """Merge ``events`` (owned, not too late; keys, aggregated columns,
        ``EVENT_MICROS``, ``CREATED_MICROS``) into the tiles, and return the rows."""
        judged = self.watermark_before(batch_id)
        if self._judged is not None and self._judged[0] == batch_id:
            judged = self._judged[1]
        # The batch stands where the watermark is now: past the one it was judged by if
        # an idle advance moved it since (docs/semantics.md, "Streaming aggregations").
        marks = [m for m in (judged, self._load_state().get("idle")) if m is not None]
        before = max(marks) if marks else None
        times = events.column(planning.EVENT_MICROS)
        newest = pc.max(times).as_py() if events.num_rows else None
        after = before if newest is None else max(newest, before if before is not None else newest)
        result = self._compute(events, before, after, ingested, (f"{app_id}-tiles", batch_id))
        self._save_state(batch_id, judged, after, events.schema)
        self._judged = None
        return result

    def _compute(
        self,
        events: pa.Table,
        before: int | None,
        after: int | None,
        ingested: dt.datetime,
        transaction: tuple[str, int] | None,
    ) -> AggregatedBatch:
        """The rows of moving the watermark from ``before`` to ``after`` with
        ``events``, merged into the tiles in a commit carrying ``transaction`` (none:
        no events, and nothing stored)."""
        plan, agg = self.batch, self.aggregation
        times = events.column(planning.EVENT_MICROS)
        span = stream_windows.boundaries(before, after, self.split, self.interval)
        layout = tiles.layout_for(agg, self.keys, events.schema)
        if layout is None:
            raise PlanError(
                f"{plan.label}: spec.aggregations: a stream keeps partial aggregates per "
                "interval, and one of the aggregated columns is of a type they cannot keep "
                "(an array under anything but count, a sum, mean or stddev of times)"
            )
        touched = stream_windows.touched_ends(times.to_numpy(), self.interval)
        touched_keys = {(self.interval, end) for end in touched}
        leaving = stream_windows.leaving_tiles(agg.windows, self.interval, span)
        replayed = True
        if transaction is not None:
            done = self.store.transaction_version(transaction[0])
            replayed = done is not None and done >= transaction[1]
        schema = layout.schema()
        loaded_touched = self.store.load(touched_keys) if touched_keys else None
        merged = _tiles_only(loaded_touched, schema)
        if not replayed and events.num_rows:
            merged = tiles.merge_rows(
                pa.concat_tables([merged, tiles.build_tiles(events, layout)]), layout
            )
        firsts = self._firsts(events, leaving, span)
        empty = AggregatedBatch(
            _row_schema(plan).empty_table(),
            _row_schema(plan).empty_table(),
            after,
            span.after,
            replayed,
        )
        if firsts.num_rows == 0 and not touched_keys:
            return empty
        first = min(pc.min(firsts.column("__first")).as_py() or span.after, span.after)
        rows_plan = stream_windows.row_plan(agg.steps, self.interval, first, span.after)
        needed = tiles.needed_tiles(rows_plan, self.sizes)
        stored = self.store.markers(needed | touched_keys) or set()
        read, built, absent = stream_windows.read_and_build(
            needed, touched_keys, stored, self.sizes
        )
        # Intervals before the split are the batch windows'. The stream waited for them
        # before it read the topic; one missing now (the tile table replaced meanwhile)
        # fails the batch before it writes a value lacking its events: the job starts
        # again and waits.
        if self.history is not None:
            lacking = [end for _, end in absent if self.history[0] <= end <= self.split]
            if lacking:
                raise MaterializeError(
                    f"{plan.label}: {len(lacking)} intervals before the stream's split "
                    f"({self.split_time.isoformat()}), the latest ending "
                    f"{planning.from_micros(max(lacking)).isoformat()}, are no longer in the "
                    "tile table: the stream stops rather than write values without their "
                    "events; it waits for them when it starts again (re-run the batch "
                    "windows before the stream's start: featurekube backfill)"
                )
        # Coarse tiles are built for every entity (their marker says so), from their
        # parts: the merged intervals, and stored tiles read for every entity.
        parts = (
            {c for key in built for c in tiles.children(key, self.sizes)}
            - touched_keys
            - set(built)
        )
        everyone = pa.concat_tables(
            [
                merged,
                _tiles_only(self.store.load(parts & stored) if parts & stored else None, schema),
            ]
        )
        made = schema.empty_table()
        for size in self.sizes[1:]:
            keys = [k for k in built if k[0] == size]
            if keys:
                coarse = tiles.build_coarse(everyone, keys, layout)
                everyone = pa.concat_tables([everyone, coarse])
                made = pa.concat_tables([made, coarse])
        if not replayed:
            cleared = [
                (
                    size,
                    stream_windows.ceil_boundary(end, size),
                    stream_windows.ceil_boundary(end, size),
                )
                for end in touched
                for size in self.sizes[1:]
            ]
            self.store.replace(
                pa.concat_tables([merged, made]),
                layout,
                computed=sorted(touched_keys | set(built)),
                cleared=cleared,
                transaction=transaction,
            )
        if firsts.num_rows == 0:
            return empty
        where = _entities(firsts, self.keys)
        others = read - parts
        rest = _tiles_only(self.store.load(others, where) if others else None, schema)
        mine = _of(pa.concat_tables([everyone, rest]), firsts, self.keys)
        combined = tiles.combine(
            tiles.select(mine, needed | touched_keys), rows_plan, layout, repeat_until=span.before
        )
        combined = _from_first(combined, firsts, self.keys)
        rows = _rows(plan, combined, ingested)
        return AggregatedBatch(
            rows,
            stream_windows.newest_rows(rows, self.keys, offline_layout.EVENT_TIMESTAMP),
            after,
            span.after,
            replayed,
        )

    def _firsts(
        self, events: pa.Table, leaving: set[int], span: stream_windows.StreamBoundaries
    ) -> pa.Table:
        """Each affected entity and the first boundary whose rows the batch changes."""
        parts = []
        if events.num_rows:
            micros = events.column(planning.EVENT_MICROS).to_numpy()
            boundary = -(-micros // self.interval) * self.interval
            touched = events.select(self.keys).append_column("__first", pa.array(boundary))
            parts.append(touched.group_by(self.keys).aggregate([("__first", "min")]))
        if leaving:
            found = self.store.load({(self.interval, end) for end in leaving})
            if found is not None and found.num_rows:
                found = found.filter(~pc.field(tiles.MARKER))
                entities = found.select(self.keys).group_by(self.keys).aggregate([])
                first = span.before + self.interval
                parts.append(
                    entities.append_column(
                        "__first_min", pa.repeat(pa.scalar(first, pa.int64()), entities.num_rows)
                    )
                )
        if not parts:
            return pa.table({"__first": pa.array([], pa.int64())})
        key_types = {k: events.schema.field(k).type for k in self.keys}
        unified = pa.concat_tables(
            [
                pa.table(
                    {k: p.column(k).cast(key_types[k]) for k in self.keys}
                    | {"__first": p.column("__first_min").cast(pa.int64())}
                )
                for p in parts
            ]
        )
        return (
            unified.group_by(self.keys)
            .aggregate([("__first", "min")])
            .rename_columns([*self.keys, "__first"])
        )


def _tiles_only(table: pa.Table | None, schema: pa.Schema) -> pa.Table:
    if table is None or table.num_rows == 0:
        return schema.empty_table()
    return table.filter(~pc.field(tiles.MARKER)).select(schema.names).cast(schema)


def _entities(firsts: pa.Table, keys: list[str]) -> pc.Expression:
    """A filter holding at least the entities of ``firsts`` (each key among its values)."""
    condition: pc.Expression | None = None
    for key in keys:
        term = pc.field(key).isin(pc.unique(firsts.column(key)))
        condition = term if condition is None else condition & term
    assert condition is not None
    return condition


def _of(table: pa.Table, firsts: pa.Table, keys: list[str]) -> pa.Table:
    """The rows of ``table`` of the entities in ``firsts``."""
    # Joined by keys and row numbers alone: a join carries no list columns.
    rows = pa.array(range(table.num_rows), pa.int64())
    numbered = table.select(keys).append_column("__row", rows)
    kept = numbered.join(firsts.select(keys), keys, join_type="left semi").column("__row")
    return table.take(kept.combine_chunks().sort())


def _from_first(rows: pa.Table, firsts: pa.Table, keys: list[str]) -> pa.Table:
    """Each entity's rows at or after its first changed boundary."""
    if rows.num_rows == 0:
        return rows
    joined = rows.join(firsts, keys)
    kept = joined.filter(
        pc.greater_equal(joined.column("event_timestamp"), joined.column("__first"))
    )
    return kept.select(rows.column_names)


def _row_schema(plan: planning.MaterializationPlan) -> pa.Schema:
    from featurekube.writer import rows as row_codec

    return row_codec.row_schema(plan.spec)


def _rows(
    plan: planning.MaterializationPlan, combined: pa.Table, ingested: dt.datetime
) -> pa.Table:
    """:func:`featurekube.materialize.tiles.combine`'s rows in the view's row schema,
    created at ``ingested``: a later row of the same boundary supersedes it."""
    schema = _row_schema(plan)
    created = pa.scalar(planning.to_micros(ingested), pa.int64())
    columns: list[Any] = []
    for field in schema:
        if field.name == offline_layout.CREATED_TIMESTAMP:
            column: Any = pa.repeat(created, combined.num_rows)
        elif field.name == offline_layout.LATEST_EVENT_TIMESTAMP:
            column = combined.column("latest_event_timestamp")
        else:
            column = combined.column(field.name)
        if pa.types.is_timestamp(field.type) and pa.types.is_integer(column.type):
            column = column.cast(pa.int64()).cast(field.type)
        columns.append(column if column.type == field.type else column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _read(uri: str) -> bytes | None:
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        import boto3

        client = boto3.client("s3")
        try:
            answer = client.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
        except client.exceptions.NoSuchKey:
            return None
        body: bytes = answer["Body"].read(STATE_MAX_BYTES + 1)
    else:
        path = Path(parsed.path if parsed.scheme == "file" else uri)
        if not path.exists():
            return None
        body = path.read_bytes()
    if len(body) > STATE_MAX_BYTES:
        raise ValueError(f"{uri}: a stream state document is at most {STATE_MAX_BYTES} bytes")
    return body


def _write(uri: str, document: bytes) -> None:
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        import boto3

        boto3.client("s3").put_object(
            Bucket=parsed.netloc, Key=parsed.path.lstrip("/"), Body=document
        )
        return
    path = Path(parsed.path if parsed.scheme == "file" else uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(document)
