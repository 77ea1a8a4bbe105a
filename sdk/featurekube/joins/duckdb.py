"""Executes a :class:`~featurekube.joins.plan.JoinPlan` without a JVM; does I/O.

deltalake reads each view's Delta log and lists the files of the partitions the plan's
time bounds allow; DuckDB reads only the columns the plan names from those files
(its own parquet reader for local files, pyarrow's for S3, deltalake's engine for
tables whose files cannot be read as plain parquet) and joins each view in a query of
its own. Why the result is exact:

- Each view row gets the order pair (E, created) and each entity row (T, +infinity),
  both in int64 microseconds and packed into one HUGEINT, E * 2^64 + created, which
  orders as the pair does and sorts and compares faster than a struct: a view row is
  at or below an entity row exactly when E <= T, and the greatest such row is the one
  of greatest E, ties going to the greater created time. Rows without a time, or with
  a null key, match nothing.
- ``ASOF LEFT JOIN`` on equal keys and that order gives each entity row exactly that
  greatest row, or nulls. It sorts the view's rows, which suits many entity rows. For
  few entity rows the same row is found by hashing: every view row of equal keys with
  E <= T is paired with the entity row, and ``arg_max`` over the order keeps the
  greatest (chosen when counting the pairs shows they are few).
- The TTL is applied to the row chosen: it has the greatest E <= T, so if it is older
  than the TTL every other candidate is too, and the features are null. Hashing
  leaves such rows out of the pairs instead, which gives the same nulls. For
  aggregation views the TTL counts from each row's ``latest_event_timestamp`` (L),
  which never decreases as E grows, so the same argument holds for L.
- T is compared in whole microseconds, the precision of the offline tables: rounded
  down for E <= T and up for T - E <= ttl, so finer entity times stay exact.
- Each entity row carries its position; the result is put back in that order, and the
  caller's columns are returned as given, so duplicates and order are kept.

Memory stays bounded: the entity rows go through in chunks of
:attr:`DuckDBSettings.chunk_rows`, and DuckDB spills to a temporary directory beyond
its memory limit. A pull that takes more than a second shows a progress bar (rich,
imported then) on a terminal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import deltalake
import deltalake.exceptions
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from featurekube import ondemand, s3_prefixes
from featurekube.joins import plan
from featurekube.offline import layout

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

__all__ = [
    "DuckDBSettings",
    "Entities",
    "execute",
    "filesystem",
    "to_micros",
    "to_table",
]

_MAX_INT64 = 9_223_372_036_854_775_807
_TWO_TO_64 = 18_446_744_073_709_551_616
# Few entity rows are joined by hashing instead (see _hash_sql) when a view holds this
# many times more rows than there are entity rows, and the pairs of rows of equal keys
# number at most _MAX_PAIRS_PER_ROW times the view's rows: then sorting the view's rows
# costs more than pairing them.
_FEW_ENTITIES = 20
_MAX_PAIRS_PER_ROW = 2
# The pairs are counted in the keys of about this many of the view's files, spread
# over its partitions: the rate of pairs per row is what decides, and reading every
# file's keys to count it cost a fifth of a pull of 100,000 entity rows.
_SAMPLED_FILES = 8
# Readers of plain parquet files cannot apply these Delta features; deltalake's own
# engine reads such tables.
_NEEDS_DELTA_ENGINE = frozenset({"deletionVectors", "columnMapping"})


@dataclass(frozen=True)
class DuckDBSettings:
    """How the join runs on this machine."""

    chunk_rows: int = 4_000_000
    """Entity rows joined at a time; a larger frame goes through in chunks, each
    streamed out before the next is read."""
    memory_limit: str | None = None
    """DuckDB's memory limit (e.g. ``"4GB"``) beyond which it spills to disk; None:
    DuckDB's default, 80% of the machine's memory."""
    temp_directory: str | None = None
    """Where DuckDB spills; None: a fresh directory under the system's temporary
    directory, removed afterwards."""
    threads: int | None = None
    """DuckDB's worker threads; None: one per core."""
    progress: bool | None = None
    """Show a progress bar: True always, False never, None on a terminal only. It
    appears once a pull has taken :attr:`progress_after_seconds`."""
    progress_after_seconds: float = 1.0
    """How long a pull runs before its progress bar appears, in seconds."""
    strategy: Literal["auto", "asof", "hash"] = "auto"
    """How each view is joined; both give the same rows. ``asof`` sorts the view's rows
    (best for many entity rows), ``hash`` pairs entity rows with the view's rows of
    equal keys (best for few), ``auto`` chooses per view by counting those pairs."""


def _kind(arrow: pa.DataType) -> plan.ColumnKind:
    if pa.types.is_dictionary(arrow):  # a pandas categorical, say
        return _kind(arrow.value_type)
    if pa.types.is_integer(arrow):
        return "integer"
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "string"
    if pa.types.is_string_view(arrow):
        return "string"
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    return "other"


def to_micros(values: pa.Array | pa.ChunkedArray, *, round_up: bool) -> pa.Array:
    """Timestamps as int64 microseconds since the epoch (UTC; naive ones are UTC)."""
    unit = values.type.unit
    raw = pc.cast(values, pa.int64())
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    if unit == "us":
        return raw
    valid = raw.is_valid().to_numpy(zero_copy_only=False)
    ints = raw.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if unit == "s":
        ints = ints * 1_000_000
    elif unit == "ms":
        ints = ints * 1_000
    elif unit == "ns":
        ints = -((-ints) // 1_000) if round_up else ints // 1_000
    return pa.array(ints, type=pa.int64(), mask=~valid)


class Entities:
    """The caller's entity rows: an Arrow table in memory, or a parquet dataset (a
    file or a directory, on disk or S3) read in chunks, in file order."""

    def __init__(
        self,
        *,
        table: pa.Table | None = None,
        dataset: pads.Dataset | None = None,
        uri: str | None = None,
    ) -> None:
        if (table is None) == (dataset is None):
            raise ValueError("give exactly one of table or dataset")
        self._table = table
        self._dataset = dataset
        self.uri = uri
        """Where a dataset's files are (a path or a URI); None for rows in memory."""

    @classmethod
    def from_source(
        cls, source: pd.DataFrame | pa.Table | pa.RecordBatch | str | os.PathLike[str]
    ) -> Entities:
        """Entity rows from pandas, Arrow, or the path or URI of parquet data."""
        if isinstance(source, pa.Table):
            return cls(table=source)
        if isinstance(source, pa.RecordBatch):
            return cls(table=pa.Table.from_batches([source]))
        if isinstance(source, str | os.PathLike):
            return cls(dataset=_open_parquet(os.fspath(source)), uri=os.fspath(source))
        if type(source).__module__.startswith("pandas") and hasattr(source, "columns"):
            try:
                return cls(table=pa.Table.from_pandas(source, preserve_index=False))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise plan.EntityFrameError(
                    f"the entity DataFrame does not convert to Arrow: {exc}. Give each "
                    "column one type (e.g. no mix of numbers and strings)"
                ) from exc
        raise plan.EntityFrameError(
            f"entity rows must be a pandas DataFrame, a pyarrow Table, or the path of "
            f"parquet data (local or s3://), not {type(source).__name__}"
        )

    def in_memory(self) -> pa.Table | None:
        """The rows, if they are in memory; None for a dataset, read in chunks."""
        return self._table

    @property
    def schema(self) -> pa.Schema:
        if self._table is not None:
            return self._table.schema
        assert self._dataset is not None
        return self._dataset.schema

    @property
    def num_rows(self) -> int:
        if self._table is not None:
            return int(self._table.num_rows)
        assert self._dataset is not None
        return int(self._dataset.count_rows())

    def _column_batches(self, name: str) -> Iterator[pa.Array | pa.ChunkedArray]:
        if self._table is not None:
            yield self._table.column(name)
        else:
            assert self._dataset is not None
            for batch in self._dataset.to_batches(columns=[name]):
                yield batch.column(0)

    def describe(self, timestamp_column: str) -> plan.EntityFrame:
        """Columns and kinds, and the range of the timestamp column if it is one."""
        columns = tuple(plan.EntityColumn(f.name, _kind(f.type), str(f.type)) for f in self.schema)
        frame = plan.EntityFrame(columns)
        column = frame.column(timestamp_column)
        if column is None or column.kind != "timestamp":
            return frame
        earliest: int | None = None
        latest: int | None = None
        for values in self._column_batches(timestamp_column):
            # Rounding is monotonic: the rounded bounds are the bounds rounded.
            bounds = pc.min_max(pc.cast(values, pa.int64()))
            if not bounds["min"].is_valid:
                continue
            pair = pa.array([bounds["min"].as_py(), bounds["max"].as_py()]).cast(values.type)
            low = to_micros(pair, round_up=False)[0].as_py()
            high = to_micros(pair, round_up=True)[1].as_py()
            earliest = low if earliest is None else min(earliest, low)
            latest = high if latest is None else max(latest, high)
        if earliest is None or latest is None:
            return frame
        return plan.EntityFrame(
            columns, plan.utc_from_micros(earliest), plan.utc_from_micros(latest)
        )

    def chunks(self, rows: int) -> Iterator[pa.Table]:
        """The rows, in order, ``rows`` at a time (the last chunk may be shorter)."""
        if self._table is not None:
            for offset in range(0, max(self._table.num_rows, 1), rows):
                yield self._table.slice(offset, rows)
            return
        assert self._dataset is not None
        pending: list[pa.RecordBatch] = []
        count = 0
        given = False
        for batch in self._dataset.to_batches():
            pending.append(batch)
            count += batch.num_rows
            while count >= rows:
                table = pa.Table.from_batches(pending, schema=self._dataset.schema)
                yield table.slice(0, rows)
                given = True
                rest = table.slice(rows)
                pending, count = rest.to_batches(), rest.num_rows
        if count or not given:
            yield pa.Table.from_batches(pending, schema=self._dataset.schema)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem and path for a local path or an s3:// (or s3a://) URI; S3
    is reached as the standard AWS settings of the environment say."""
    uri = s3_prefixes.normalize(uri)
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).absolute())
    remote, path = pafs.FileSystem.from_uri(uri)
    return remote, path


def _open_parquet(source: str) -> pads.Dataset:
    try:
        found, path = filesystem(source)
        return pads.dataset(path, format="parquet", filesystem=found)
    except (OSError, pa.ArrowInvalid) as exc:
        raise plan.EntityFrameError(
            f"cannot read entity rows from {source}: {exc}. Give the path of a parquet "
            "file or of a directory of them, on disk or s3://"
        ) from exc


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class _Source:
    """A view's rows as registered for the join."""

    rows: int
    """How many rows the files read hold, before filtering (an estimate)."""
    sample: str | None = None
    """A relation holding the join keys of the files read, or of every few of them,
    for counting pairs; None if the rows cannot be read twice (a stream of batches)."""


def _open_view(con: duckdb.DuckDBPyConnection, name: str, view: plan.ViewJoin) -> _Source:
    """Make relation ``name`` in ``con`` hold the rows of ``view``'s offline table that
    its time bounds allow, reading only the partitions and columns the join needs."""
    columns = list(view.columns)
    if view.latest is None:
        # No entity row has a time: nothing can be joined, so nothing is read.
        con.register(name, _empty_rows(view))
        return _Source(rows=0, sample=name)
    try:
        table = deltalake.DeltaTable(s3_prefixes.normalize(view.table_uri))
    except deltalake.exceptions.TableNotFoundError as exc:
        raise plan.OfflineStoreError(
            f"{view.where} has no offline table at {view.table_uri}: it has not been "
            "materialized offline yet (wait for its first window), or the offline URI "
            "is wrong"
        ) from exc
    except (OSError, deltalake.exceptions.DeltaError) as exc:
        raise plan.OfflineStoreError(
            f"cannot read the offline table of {view.where} at {view.table_uri}: {exc}"
        ) from exc
    schema = pa.schema(table.schema().to_arrow())
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise plan.OfflineStoreError(
            f"the offline table of {view.where} at {view.table_uri} has no column "
            f"{', '.join(missing)}: it was written for another version of the view's spec. "
            "Check the view's status.version and that its materialization has caught up"
        )
    pruning: list[tuple[str, str, Any]] = []
    if layout.EVENT_DATE in table.metadata().partition_columns:
        first, last = view.partitions
        if first is not None:
            pruning.append((layout.EVENT_DATE, ">=", first))
        if last is not None:
            pruning.append((layout.EVENT_DATE, "<=", last))
    reader_features = set(table.protocol().reader_features or ())
    if reader_features & _NEEDS_DELTA_ENGINE:
        # deltalake's engine applies deletion vectors and column mapping; the event-time
        # bounds are applied by the join's own filter.
        predicate = " AND ".join(f"{c} {op} '{value}'" for c, op, value in pruning) or None
        reader = pa.RecordBatchReader.from_stream(table.scan(columns=columns, predicate=predicate))
        con.register(name, reader)
        return _Source(rows=int(table.count()))
    actions = pa.table(table.get_add_actions(flatten=True))
    files = table.file_uris(file_pruning_predicate=pruning or None)
    projected = pa.schema([schema.field(c) for c in columns])
    keys = [k.name for k in view.keys]
    # Every few files, spread over the partitions read, for counting pairs.
    sampled = files[:: max(1, len(files) // _SAMPLED_FILES)]
    sample = name
    if not files:
        con.register(name, projected.empty_table())
    elif "://" not in files[0]:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {_parquet_sql(files, columns)}")
        if len(sampled) < len(files):
            sample = f"({_parquet_sql(sampled, keys)})"
    else:
        remote, _ = filesystem(files[0])
        paths = [filesystem(f)[1] for f in files]
        con.register(name, pads.dataset(paths, schema=projected, filesystem=remote))
        if len(sampled) < len(files):
            sample = f"{name}_sample"
            chosen = [filesystem(f)[1] for f in sampled]
            con.register(sample, pads.dataset(chosen, schema=projected, filesystem=remote))
    # The log counts every file's rows; the share of files read estimates the rows read.
    records: int = pc.sum(actions.column("num_records")).as_py() if actions.num_rows else 0
    rows = int((records or 0) * len(files) // max(actions.num_rows, 1))
    return _Source(rows=rows, sample=sample)


def _parquet_sql(files: list[str], columns: list[str]) -> str:
    """The ``columns`` of local parquet ``files``."""
    listed = ", ".join(_literal(f) for f in files)
    return (
        f"SELECT {', '.join(_quote(c) for c in columns)} FROM read_parquet([{listed}], "
        "union_by_name = true)"
    )


def _empty_rows(view: plan.ViewJoin) -> pa.Table:
    """No rows, typed as the view's table would type them."""
    fields = [
        *(pa.field(k.name, pa.int64() if k.type == "int64" else pa.string()) for k in view.keys),
        pa.field(layout.EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")),
        pa.field(layout.CREATED_TIMESTAMP, pa.timestamp("us", tz="UTC")),
        *(pa.field(f.name, ondemand.ARROW_TYPES[f.type]) for f in view.features),
    ]
    unique = {f.name: f for f in fields}
    return pa.schema(list(unique.values())).empty_table()


def _bounds(view: plan.ViewJoin) -> list[str]:
    """Row filters on the event time that the plan's bounds allow."""
    column = _quote(layout.EVENT_TIMESTAMP)
    found = []
    if view.latest is not None:
        found.append(f"{column} <= TIMESTAMPTZ {_literal(view.latest.isoformat())}")
    if view.earliest is not None:
        found.append(f"{column} >= TIMESTAMPTZ {_literal(view.earliest.isoformat())}")
    return found


def _rows_sql(source: str, view: plan.ViewJoin) -> str:
    """The view's rows as the joins take them: keys, the event time ``__e`` and the
    created time ``__c`` in microseconds, for aggregation views with a TTL the latest
    event ``__l``, features."""
    event = _quote(layout.EVENT_TIMESTAMP)
    created = _quote(layout.CREATED_TIMESTAMP)
    latest = (
        f"epoch_us(coalesce({_quote(view.ttl_from)}, {event})) AS __l, "
        if _counts_from_latest(view)
        else ""
    )
    keys = [
        f"CAST({_quote(k.name)} AS {'BIGINT' if k.type == 'int64' else 'VARCHAR'}) "
        f"AS {_quote(k.name)}"
        for k in view.keys
    ]
    features = [f"{_quote(f.name)} AS __f{j}" for j, f in enumerate(view.features)]
    where = " AND ".join([f"{event} IS NOT NULL", *_bounds(view)])
    return (
        f"SELECT {', '.join(keys)}, epoch_us({event}) AS __e, "
        f"coalesce(epoch_us({created}), -{_MAX_INT64}) AS __c, {latest}"
        f"{', '.join(features)} FROM {source} WHERE {where}"
    )


def _order_sql(event: str, created: str) -> str:
    """The order pair (E, created), both int64, as one HUGEINT: E * 2^64 + created
    orders as the pair does, and compares and sorts faster than a struct would."""
    return f"(CAST({event} AS HUGEINT) * {_TWO_TO_64} + {created})"


def _entities_sql(view: plan.ViewJoin) -> str:
    """The entity rows as a view's ASOF join takes them: position, keys, times and
    the order (T, +infinity); a row without a time gets a null order, which matches
    nothing."""
    keys = ", ".join(_quote(k.name) for k in view.keys)
    order = _order_sql("__t", str(_MAX_INT64))
    return f"(SELECT __row, {keys}, __t_up, {order} AS __o FROM __entities)"


def _pairs_sql(view: plan.ViewJoin, rows: str) -> str:
    """How many (entity row, view row) pairs have equal keys, the work of _hash_sql,
    and how many view rows there are, in the relation ``rows``."""
    keys = ", ".join(_quote(k.name) for k in view.keys)
    typed = ", ".join(
        f"CAST({_quote(k.name)} AS {'BIGINT' if k.type == 'int64' else 'VARCHAR'}) "
        f"AS {_quote(k.name)}"
        for k in view.keys
    )
    on = " AND ".join(f"r.{_quote(k.name)} = e.{_quote(k.name)}" for k in view.keys)
    return (
        f"SELECT (SELECT coalesce(sum(e.__n), 0) FROM (SELECT {typed} FROM {rows}) r JOIN "
        f"(SELECT {keys}, count(*) AS __n FROM __entities GROUP BY ALL) e ON {on}), "
        f"(SELECT count(*) FROM {rows})"
    )


def _ttl_micros(view: plan.ViewJoin) -> int | None:
    return None if view.ttl is None else view.ttl // dt.timedelta(microseconds=1)


def _counts_from_latest(view: plan.ViewJoin) -> bool:
    """Whether the TTL counts from a column of its own (``__l``), not the event time."""
    return view.ttl is not None and view.ttl_from != layout.EVENT_TIMESTAMP


def _hash_sql(view: plan.ViewJoin, rows_sql: str) -> str:
    """One view's join by hashing: every view row of equal keys with E <= T (and, with
    a TTL, not older than it allows) is paired with the entity row, and the pair of the
    greatest order is kept: the same row ASOF gives, without sorting the view's rows.
    Its columns are those of :func:`_view_sql`, but entity rows that pair with no row
    are left out (their features are null): an inner join keeps no unmatched rows, and
    the order is made for the pairs only, not for every view row."""
    on = [f"e.{_quote(k.name)} = v.{_quote(k.name)}" for k in view.keys]
    on.append("v.__e <= e.__t")
    ttl = _ttl_micros(view)
    if ttl is not None:
        on.append(f"v.{'__l' if _counts_from_latest(view) else '__e'} >= e.__t_up - {ttl}")
    features = range(len(view.features))
    values = ", ".join(f"'f{j}': v.__f{j}" for j in features)
    selected = ["__row", *(f"__v.f{j} AS __f{j}" for j in features)]
    order = _order_sql("v.__e", "v.__c")
    return (
        f"SELECT {', '.join(selected)} FROM (SELECT e.__row, arg_max({{{values}}}, {order}) "
        f"AS __v FROM __entities e JOIN ({rows_sql}) v "
        f"ON {' AND '.join(on)} GROUP BY e.__row)"
    )


def _view_sql(view: plan.ViewJoin, relation: str) -> str:
    """One view's ASOF join: per entity row, its position and the features of the
    view row it takes, null when that row is older than the TTL allows (it has the
    greatest E <= T, so every other candidate is older still)."""
    ttl = _ttl_micros(view)
    # E >= T - ttl read off the order, so that the sorted rows need not carry E too:
    # created lies within +-(2^63 - 1), less than half of 2^64.
    fresh = f"v.__o >= {_order_sql(f'e.__t_up - {ttl}', f'-{_MAX_INT64}')}"
    if _counts_from_latest(view):
        fresh = f"v.__l >= e.__t_up - {ttl}"
    selected = ["e.__row"]
    for j in range(len(view.features)):
        if ttl is None:
            selected.append(f"v.__f{j}")
        else:
            selected.append(f"CASE WHEN {fresh} THEN v.__f{j} END AS __f{j}")
    on = " AND ".join(f"e.{_quote(k.name)} = v.{_quote(k.name)}" for k in view.keys)
    keys = ", ".join(_quote(k.name) for k in view.keys)
    features = ", ".join(f"__f{j}" for j in range(len(view.features)))
    latest = "__l, " if _counts_from_latest(view) else ""
    rows = f"(SELECT {keys}, {_order_sql('__e', '__c')} AS __o, {latest}{features} FROM {relation})"
    return (
        f"SELECT {', '.join(selected)} FROM {_entities_sql(view)} e "
        f"ASOF LEFT JOIN {rows} v ON {on} AND e.__o >= v.__o"
    )


def _entity_keys(join_plan: plan.JoinPlan, chunk: pa.Table) -> pa.Table:
    """The chunk's positions, join keys (as the views type them) and times in µs,
    rounded down (for E <= T) and up (for T - E <= ttl)."""
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "__row": pa.array(np.arange(chunk.num_rows, dtype=np.int64))
    }
    for key in join_plan.key_columns:
        target = pa.int64() if key.type == "int64" else pa.string()
        try:
            columns[key.name] = pc.cast(chunk.column(key.name), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise plan.EntityFrameError(
                f"entity column {key.name!r} does not convert to {key.type}: {exc}"
            ) from exc
    times = chunk.column(join_plan.timestamp_column)
    columns["__t"] = to_micros(times, round_up=False)
    columns["__t_up"] = to_micros(times, round_up=True)
    return pa.table(columns)


def _inverse(positions: pa.ChunkedArray, rows: int) -> pa.Array:
    """Indices that put a result whose rows are at ``positions`` back in entity order;
    null (giving null features) for the positions missing from it."""
    order = np.full(rows, -1, dtype=np.int64)
    order[positions.to_numpy()] = np.arange(len(positions), dtype=np.int64)
    missing = order < 0
    return pa.array(order, mask=missing if missing.any() else None)


def _features(view: plan.ViewJoin, joined: pa.Table) -> list[pa.ChunkedArray | pa.Array]:
    """One view's feature columns from its join result (in entity order), typed as the
    spec says."""
    columns: list[pa.ChunkedArray | pa.Array] = []
    for j, feature in enumerate(view.features):
        values = joined.column(f"__f{j}")
        wanted = ondemand.ARROW_TYPES[feature.type]
        columns.append(values if values.type == wanted else pc.cast(values, wanted))
    return columns


class _Progress:
    """A progress bar on stderr, shown once a pull has run for a while."""

    def __init__(self, settings: DuckDBSettings, total: int, description: str) -> None:
        self._enabled = settings.progress if settings.progress is not None else sys.stderr.isatty()
        self._after = settings.progress_after_seconds
        self._started = time.monotonic()
        self._total = total
        self._description = description
        self._display: Any = None
        self._task: Any = None

    def update(self, done: float, offset: float = 0) -> None:
        """Report ``offset + done`` units of the total done."""
        done += offset
        if not self._enabled:
            return
        if self._display is None:
            if time.monotonic() - self._started < self._after:
                return
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._display = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._display.start()
            self._task = self._display.add_task(self._description, total=self._total)
        self._display.update(self._task, completed=min(done, self._total))

    def close(self) -> None:
        if self._display is not None:
            self._display.stop()


def _run(con: duckdb.DuckDBPyConnection, sql: str, report: Callable[[float], None]) -> pa.Table:
    """Run ``sql`` in a worker thread, reporting its progress (0 to 1) until it ends."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["table"] = con.sql(sql).to_arrow_table()
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="featurekube-join", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
            done = con.query_progress()
            if done >= 0:
                report(done / 100)
    except KeyboardInterrupt:
        con.interrupt()
        worker.join()
        raise
    if "error" in outcome:
        raise outcome["error"]
    table: pa.Table = outcome["table"]
    return table


@contextlib.contextmanager
def _connect(settings: DuckDBSettings) -> Iterator[duckdb.DuckDBPyConnection]:
    spill = settings.temp_directory or tempfile.mkdtemp(prefix="featurekube-duckdb-")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET temp_directory = {_literal(spill)}")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = true")
        con.execute("SET enable_progress_bar_print = false")
        if settings.memory_limit is not None:
            con.execute(f"SET memory_limit = {_literal(settings.memory_limit)}")
        if settings.threads is not None:
            con.execute(f"SET threads = {int(settings.threads)}")
        yield con
    finally:
        con.close()
        if settings.temp_directory is None:
            shutil.rmtree(spill, ignore_errors=True)


def _join_sql(
    con: duckdb.DuckDBPyConnection,
    view: plan.ViewJoin,
    relation: str,
    source: _Source,
    entities: pa.Table,
    strategy: str,
) -> str:
    """The cheaper exact join of ``view`` for these entity rows: hashing for few entity
    rows with few pairs, else ASOF (which sorts the view's rows)."""
    table = relation if relation.startswith("__rows_") else f"({relation})"
    rows_sql = f"SELECT * FROM {table}"
    if strategy == "hash":
        return _hash_sql(view, rows_sql)
    if (
        strategy == "auto"
        and source.sample is not None
        and entities.num_rows * _FEW_ENTITIES <= source.rows
    ):
        ((pairs, counted),) = con.execute(_pairs_sql(view, source.sample)).fetchall()
        if int(pairs) <= _MAX_PAIRS_PER_ROW * int(counted):
            return _hash_sql(view, rows_sql)
    return _view_sql(view, table)


def execute(
    join_plan: plan.JoinPlan, entities: Entities, settings: DuckDBSettings | None = None
) -> Iterator[pa.Table]:
    """The result, chunk by chunk, in entity order: the caller's columns as given,
    then the features, then the request-time transformations."""
    settings = settings or DuckDBSettings()
    transformations = plan.compile_transformations(join_plan)
    rows = entities.num_rows
    chunks = max(1, math.ceil(rows / settings.chunk_rows))
    views = join_plan.views
    progress = _Progress(
        settings,
        total=chunks * len(views),
        description=f"joining {rows:,} entity rows with {len(views)} feature views",
    )
    try:
        with _connect(settings) as con:
            relations: list[str] = []
            sources: list[_Source] = []
            for index, view in enumerate(views):
                source = f"__source_{index}"
                sources.append(_open_view(con, source, view))
                rows_sql = _rows_sql(source, view)
                if chunks > 1:
                    # Read once, joined by every chunk; DuckDB spills it if it must.
                    con.execute(f"CREATE TEMP TABLE __rows_{index} AS {rows_sql}")
                    relations.append(f"__rows_{index}")
                else:
                    relations.append(rows_sql)
            for number, chunk in enumerate(entities.chunks(settings.chunk_rows)):
                keys = _entity_keys(join_plan, chunk)
                con.register("__entities", keys)
                columns = list(chunk.columns)
                for index, view in enumerate(views):
                    report = functools.partial(progress.update, offset=number * len(views) + index)
                    sql = _join_sql(
                        con, view, relations[index], sources[index], keys, settings.strategy
                    )
                    joined = _run(con, sql, report)
                    order = _inverse(joined.column("__row"), chunk.num_rows)
                    joined = joined.drop_columns(["__row"]).take(order)
                    columns.extend(_features(view, joined))
                con.unregister("__entities")
                names = [*chunk.column_names, *(f.output for f in join_plan.feature_columns)]
                result = pa.Table.from_arrays(columns, names=names)
                if transformations is not None:
                    computed = transformations.evaluate(result)
                    result = pa.Table.from_arrays(
                        [*result.columns, *computed.columns],
                        names=[*result.column_names, *computed.column_names],
                    )
                progress.update((number + 1) * len(views))
                yield result
    finally:
        progress.close()


def to_table(
    join_plan: plan.JoinPlan, entities: Entities, settings: DuckDBSettings | None = None
) -> pa.Table:
    """The whole result as one Arrow table."""
    return pa.concat_tables(execute(join_plan, entities, settings))
