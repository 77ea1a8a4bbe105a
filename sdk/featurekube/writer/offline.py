"""Writing a view's rows to its offline Delta table with delta-rs (no JVM); does I/O.

The table's columns are :mod:`featurekube.offline.layout`'s: join keys, features,
``event_timestamp``, ``created_timestamp``, ``ingestion_timestamp`` and the partition
column ``event_date``; timestamps in microseconds, UTC.

API (used by the materialization job and by the feature server's Push RPC)::

    writer = OfflineWriter("s3://bucket/offline/rides/driver-profile/v1", view)
    writer.append(rows)                        # add rows (pushes)
    writer.replace_window(rows, start, end)    # a materialized window [start, end)

``rows`` are those of :mod:`featurekube.writer.rows` (dicts or Arrow, streamed batch by
batch); both methods add ``ingestion_timestamp`` (the time of the call) and
``event_date``, fill a missing ``created_timestamp`` with the ingestion time, and
return an :class:`OfflineWriteResult`. Each call is one Delta commit: readers see all of
its rows or none. :meth:`OfflineWriter.replace_window` deletes the rows whose event time
is in [start, end) and adds the given ones in that same commit (delta-rs'
``write_deltalake(mode="overwrite", predicate=...)``), so re-running a window replaces
exactly its rows; a row outside the window is a
:class:`~featurekube.writer.errors.RowError`. The first write creates the table.

Several writers may write one table at once (two windows of a backfill, several
feature-server replicas): on S3 commits use conditional PUTs (``conditional_put=etag``),
so no commit is lost, and a commit that conflicts with a concurrent one is retried from
the start — when ``rows`` can be read again (a ``pyarrow.Table``, a list, or a callable
returning fresh rows); a one-shot stream fails with
:class:`~featurekube.writer.errors.OfflineWriteError` instead. S3 is reached with the
standard AWS settings of the environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``,
credentials, and ``AWS_ALLOW_HTTP=true`` for a plain-HTTP endpoint).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featurekube import s3_prefixes
from featurekube.offline import layout
from featurekube.spec import v1alpha1
from featurekube.writer import rows as row_codec
from featurekube.writer.errors import OfflineWriteError, RowError, WriteError

__all__ = ["OfflineWriteResult", "OfflineWriter", "offline_schema", "storage_options_for"]

log = logging.getLogger(__name__)

_CONFLICT_NAMES = ("CommitFailedError", "ConcurrentAppend", "ConcurrentDelete", "conflict")


@dataclass(frozen=True)
class OfflineWriteResult:
    """What a write did."""

    rows: int
    """Rows written."""
    version: int
    """The table version the write committed."""


def offline_schema(spec: v1alpha1.FeatureViewSpec) -> pa.Schema:
    """The offline table's columns: :func:`~featurekube.writer.rows.row_schema`, then
    ``ingestion_timestamp`` and ``event_date``."""
    schema = row_codec.row_schema(spec)
    return schema.append(pa.field(layout.INGESTION_TIMESTAMP, row_codec.TIMESTAMP)).append(
        pa.field(layout.EVENT_DATE, pa.date32(), nullable=False)
    )


def storage_options_for(uri: str, given: Mapping[str, str] | None = None) -> dict[str, str]:
    """delta-rs storage options for ``uri``: on S3, safe concurrent commits; ``given``
    added last."""
    options: dict[str, str] = {}
    if uri.startswith(("s3://", "s3a://")):
        options["conditional_put"] = "etag"
    options.update(given or {})
    return options


def _iso(moment: dt.datetime) -> str:
    utc = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


class OfflineWriter:
    """Writes one view's rows to its offline Delta table; see the module docstring."""

    def __init__(
        self,
        uri: str,
        view: v1alpha1.FeatureView | v1alpha1.FeatureViewSpec,
        *,
        storage_options: Mapping[str, str] | None = None,
        label: str | None = None,
        max_commit_attempts: int = 6,
        target_file_bytes: int | None = None,
    ) -> None:
        self.uri = s3_prefixes.normalize(uri)  # Spark spells S3 s3a://; delta-rs s3://
        self.spec = view.spec if isinstance(view, v1alpha1.FeatureView) else view
        self.label = row_codec.view_label(view, label)
        self.name = view.metadata.name if isinstance(view, v1alpha1.FeatureView) else None
        self.storage_options = storage_options_for(self.uri, storage_options)
        self.max_commit_attempts = max_commit_attempts
        self.target_file_bytes = target_file_bytes
        """The size data files are cut at (None: delta-rs' default, 100 MiB). delta-rs
        holds a file in memory until it uploads it whole: this bounds a write's memory."""
        self.schema = offline_schema(self.spec)
        """The table's Arrow schema."""

    def append(
        self,
        rows: row_codec.Rows | Callable[[], row_codec.Rows],
        *,
        now: dt.datetime | None = None,
    ) -> OfflineWriteResult:
        """Add ``rows`` to the table in one commit."""
        return self._write(rows, now, predicate=None, window=None)

    def replace_window(
        self,
        rows: row_codec.Rows | Callable[[], row_codec.Rows],
        start: dt.datetime,
        end: dt.datetime,
        *,
        now: dt.datetime | None = None,
    ) -> OfflineWriteResult:
        """Replace the table's rows with event times in [start, end) by ``rows``, in one
        commit. Every row's event time must lie in the window."""
        start, end = _utc(start), _utc(end)
        if not start < end:
            raise ValueError(f"the window [{_iso(start)}, {_iso(end)}) is empty")
        last_day = (end - dt.timedelta(microseconds=1)).date()
        predicate = (
            f"{layout.EVENT_DATE} >= '{start.date().isoformat()}' AND "
            f"{layout.EVENT_DATE} <= '{last_day.isoformat()}' AND "
            f"{layout.EVENT_TIMESTAMP} >= '{_iso(start)}' AND "
            f"{layout.EVENT_TIMESTAMP} < '{_iso(end)}'"
        )
        return self._write(rows, now, predicate=predicate, window=(start, end))

    def _write(
        self,
        rows: row_codec.Rows | Callable[[], row_codec.Rows],
        now: dt.datetime | None,
        *,
        predicate: str | None,
        window: tuple[dt.datetime, dt.datetime] | None,
    ) -> OfflineWriteResult:
        import deltalake

        ingested = _utc(now or dt.datetime.now(dt.UTC))
        replayable = callable(rows) or isinstance(rows, pa.Table | list | tuple)
        for attempt in range(1, self.max_commit_attempts + 1):
            source = rows() if callable(rows) else rows
            counter = _Counter()
            batches = self._prepare(source, ingested, window, counter)
            reader = pa.RecordBatchReader.from_batches(self.schema, batches)
            try:
                # Written through the loaded table, which the write brings to the
                # version it commits: no second read of the log to learn it.
                table = self._table()
                target = self.uri if table is None else table
                if predicate is None:
                    deltalake.write_deltalake(
                        target,
                        reader,
                        mode="append",
                        partition_by=[layout.EVENT_DATE],
                        name=self.name,
                        storage_options=self.storage_options,
                        target_file_size=self.target_file_bytes,
                    )
                else:
                    deltalake.write_deltalake(
                        target,
                        reader,
                        mode="overwrite",
                        predicate=predicate,
                        partition_by=[layout.EVENT_DATE],
                        name=self.name,
                        storage_options=self.storage_options,
                        target_file_size=self.target_file_bytes,
                    )
            except Exception as exc:
                if counter.error is not None:
                    # A bad row stopped the stream; the commit never happened.
                    raise counter.error from None
                if not _is_conflict(exc) or not replayable or attempt == self.max_commit_attempts:
                    raise self._failure(exc, attempt) from exc
                log.info("%s: commit to %s conflicted, retrying: %s", self.label, self.uri, exc)
                time.sleep(random.uniform(0.1, 0.5 * attempt))
                continue
            if table is None:  # the write created the table
                table = deltalake.DeltaTable(self.uri, storage_options=self.storage_options)
            return OfflineWriteResult(rows=counter.rows, version=table.version())
        raise AssertionError("unreachable")

    def _table(self) -> Any:
        """The table as it stands (a ``deltalake.DeltaTable``), None if there is none."""
        import deltalake
        from deltalake.exceptions import TableNotFoundError

        try:
            return deltalake.DeltaTable(self.uri, storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def _prepare(
        self,
        rows: row_codec.Rows,
        ingested: dt.datetime,
        window: tuple[dt.datetime, dt.datetime] | None,
        counter: _Counter,
    ) -> Iterator[pa.RecordBatch]:
        ingestion = pa.scalar(ingested, row_codec.TIMESTAMP)
        try:
            batches = row_codec.iter_batches(
                self.spec, rows, created_default=ingested, label=self.label
            )
            for batch in batches:
                if not batch.num_rows:
                    continue
                events = batch.column(layout.EVENT_TIMESTAMP)
                if window is not None:
                    self._check_window(events, window, counter.rows)
                dates = pc.cast(events, pa.date32())
                columns = [*batch.columns, pa.repeat(ingestion, batch.num_rows), dates]
                counter.rows += batch.num_rows
                yield pa.RecordBatch.from_arrays(columns, schema=self.schema)
        except WriteError as exc:
            counter.error = exc
            raise

    def _check_window(
        self, events: pa.Array, window: tuple[dt.datetime, dt.datetime], offset: int
    ) -> None:
        start, end = (pa.scalar(moment, row_codec.TIMESTAMP) for moment in window)
        outside = pc.or_(pc.less(events, start), pc.greater_equal(events, end))
        if pc.any(outside).as_py():
            index = pc.index(outside, True).as_py()
            raise RowError(
                f"{self.label}: row {offset + index} has event time "
                f"{_iso(events[index].as_py())}, outside the window being replaced "
                f"[{_iso(window[0])}, {_iso(window[1])})",
                row=offset + index,
                column=layout.EVENT_TIMESTAMP,
            )

    def _failure(self, exc: Exception, attempt: int) -> OfflineWriteError:
        tried = f" (attempt {attempt})" if attempt > 1 else ""
        return OfflineWriteError(
            f"{self.label}: writing the offline table {self.uri} failed{tried}: "
            f"{type(exc).__name__}: {str(exc).strip()[:2000]}"
        )


@dataclass
class _Counter:
    rows: int = 0
    error: WriteError | None = None


def _is_conflict(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return any(name in text for name in _CONFLICT_NAMES)
