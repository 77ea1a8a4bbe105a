"""Writing feature values to a view's DynamoDB table, newer event times only; does I/O.

The layout is :mod:`featurekube.online.layout`'s: one item per entity. A value replaces
the stored one only if its event time is later, or equal with a later-or-equal created
time — the order of the point-in-time rule (docs/semantics.md) — so a late or re-run window never
overwrites newer values, and parity with the offline store holds.

API (used by the materialization job and by the feature server's Push RPC)::

    writer = OnlineWriter("featurekube.rides.driver-profile.v1", view)   # view: FeatureView
    result = writer.write(rows)        # conditional PutItem per entity, in parallel
    result = writer.write_bulk(rows)   # under the table's write lease, BatchWriteItem

``rows`` are those of :mod:`featurekube.writer.rows` (dicts or Arrow): join keys,
features, ``event_timestamp``, optional ``created_timestamp`` (default: now). Rows of
one entity are reduced to the newest first. Both methods return an
:class:`OnlineWriteResult` (entities, written, stale) and raise
:class:`~featurekube.writer.errors.RowError`, :class:`~featurekube.writer.errors.ItemTooLargeError`
(before anything of that chunk is sent), :class:`~featurekube.writer.errors.OnlineWriteError`
or :class:`~featurekube.writer.errors.LeaseError`.

Two ways to write, because BatchWriteItem cannot carry a condition:

- :meth:`OnlineWriter.write` sends one conditional PutItem per entity (the condition of
  :func:`featurekube.online.layout.newer_condition`) from a bounded thread pool. It is
  safe beside any other writer, and suits small, latency-bound writes such as pushes.
- :meth:`OnlineWriter.write_bulk` first takes the table's *write lease* (an item under
  the reserved key :data:`LEASE_KEY`, taken and renewed with conditional writes). While
  it holds the lease no other bulk writer writes, so what it reads stays true until it
  writes: a row whose event time is later than the table's *watermark* as the write
  began (the item :data:`WATERMARK_KEY`, which every writer raises to its greatest
  event time before writing, so no stored item is later), of an entity this write has
  not yet written, is newer than whatever is stored; for the others, a strongly
  consistent BatchGetItem of the stored event and created times tells. Only the rows
  found newer are written, unconditionally, 25 to a BatchWriteItem. Windows
  materialized in order never need the read; re-runs and late windows do.
  That is 25 times fewer requests than PutItem, which is what bounds a Python writer
  (and moto) long before DynamoDB's capacity does. The lease excludes only writers that
  take it: the materialization job writes batch-source views through ``write_bulk``
  and the feature server writes push-source views through ``write``, so no table has
  both kinds.

The lease is renewed whenever a third of its duration has passed, and a writer that
cannot renew it in time stops with :class:`~featurekube.writer.errors.LeaseError`
rather than write unguarded. As with any lease, a request delayed in the network for
longer than the lease's remaining two thirds could still land after another writer
took over; keep ``lease_seconds`` well above request timeouts (the default client's
are 10 s connect and 30 s read, the lease 120 s). Clocks of writers are assumed to
agree within a few seconds.

Unprocessed items and keys, throttling and 5xx errors are retried with exponential
backoff and jitter, up to ``max_attempts`` per request.

A materialization window is recorded as pending in the table's windows item
(:mod:`featurekube.online.windows`) before it writes, so that readers hide what it
writes until it is complete: :meth:`OnlineWriter.open_window` records it,
:meth:`OnlineWriter.close_window` removes it once the window is complete in both stores,
and :meth:`OnlineWriter.withdraw_window` undoes it for a run that wrote nothing.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import datetime as dt
import itertools
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from featurekube.offline import layout as offline_layout
from featurekube.online import keys, layout, values, windows
from featurekube.spec import v1alpha1
from featurekube.writer import bodies, labels
from featurekube.writer.errors import (
    ItemTooLargeError,
    LeaseError,
    OnlineWriteError,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from featurekube.writer import rows as row_codec

# Arrow is imported where rows are handled, not with the module: a window's pending
# record is written through this module before the job loads Arrow.

__all__ = [
    "LEASE_KEY",
    "MAX_ITEM_BYTES",
    "WATERMARK_KEY",
    "OnlineWriteResult",
    "OnlineWriteSettings",
    "OnlineWriter",
    "PendingWindow",
    "item_size",
]

log = logging.getLogger(__name__)

LEASE_KEY = "#lease"
"""The reserved item holding a table's write lease. Encoded entity keys start with a
join key's name (a letter or ``_``), so no entity can have this key."""
LEASE_OWNER = "lease_owner"
LEASE_UNTIL = "lease_until"
WATERMARK_KEY = "#watermark"
"""The reserved item whose ``event_time`` is at least every stored item's: raised by
every writer, before it writes, to the greatest event time it writes."""
MAX_ITEM_BYTES = 400 * 1024
"""DynamoDB's item size limit, attribute names included."""

_BATCH_WRITE = 25  # DynamoDB's limit per BatchWriteItem
_BATCH_GET = 100  # DynamoDB's limit per BatchGetItem
_RETRYABLE = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    }
)


@dataclass(frozen=True)
class OnlineWriteSettings:
    """How hard the writer pushes DynamoDB."""

    concurrency: int = 8
    """Requests in flight at once (threads). Default 8."""
    max_attempts: int = 10
    """Tries of one request (throttled, unprocessed items, 5xx) before giving up."""
    backoff_seconds: float = 0.05
    """First retry delay; doubles each attempt, with full jitter. Default 0.05 s."""
    max_backoff_seconds: float = 5.0
    """Longest retry delay. Default 5 s."""
    chunk_entities: int = 10_000
    """``write_bulk``: entities read, compared and written per step; bounds memory."""
    lease_seconds: float = 120.0
    """``write_bulk``: how long a write lease lasts unless renewed. Default 120 s."""
    lease_wait_seconds: float = 1800.0
    """``write_bulk``: how long to wait for another writer's lease. Default 30 min."""
    settle_seconds: float = 1.0
    """How long a window's pending record stands before the window's first item is
    written: feature servers read eventually consistently, and DynamoDB's copies of an
    item usually agree within a second, so a server that sees an item of the window
    sees the record too. Default 1 s."""


@dataclass(frozen=True)
class PendingWindow:
    """A run's pending record of its window, from :meth:`OnlineWriter.open_window`."""

    start: dt.datetime
    end: dt.datetime
    run: str
    """This run's id, the record's value while this run owns it."""
    superseded: str | None
    """The id of the run whose record this one replaced, if any."""
    launched: bool = False
    """Whether the record already held :attr:`run` when this run opened it: its
    launcher wrote it before starting the run, so it has stood since before the run
    began."""


@dataclass(frozen=True)
class OnlineWriteResult:
    """What a write did."""

    entities: int = 0
    """Distinct entities in the input."""
    written: int = 0
    """Items written (created or replaced)."""
    stale: int = 0
    """Entities not written: the table held a value as new or newer."""

    def __add__(self, other: OnlineWriteResult) -> OnlineWriteResult:
        return OnlineWriteResult(
            self.entities + other.entities, self.written + other.written, self.stale + other.stale
        )


class _KeyFilter:
    """The keys a bulk write has written, as a bitmap of their hashes: constant memory
    (8 MiB) whatever the number of entities. It may answer yes for a key never added
    (about 1.5% of keys after a million), which costs only a read of that key; never
    no for one that was."""

    _BITS = 1 << 26

    def __init__(self) -> None:
        self._bitmap = bytearray(self._BITS // 8)

    def update(self, keys_: Iterable[str]) -> None:
        bitmap, mask = self._bitmap, self._BITS - 1
        for key in keys_:
            bit = hash(key) & mask
            bitmap[bit >> 3] |= 1 << (bit & 7)

    def __contains__(self, key: str) -> bool:
        bit = hash(key) & (self._BITS - 1)
        return bool(self._bitmap[bit >> 3] >> (bit & 7) & 1)


@dataclass(frozen=True)
class _Chunk:
    """A chunk of a bulk write whose writes were sent: its entities' keys."""

    keys: frozenset[str]
    writes: list[concurrent.futures.Future[None]]


class _Entry(NamedTuple):
    # A tuple: a bulk write makes one per row, and a frozen dataclass's __init__
    # costs several times a tuple's.
    key: str
    event: int
    created: int
    item: dict[str, Any]

    @property
    def order(self) -> tuple[int, int]:
        return (self.event, self.created)


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """An upper bound of DynamoDB's size of ``item``: names and values in bytes, a
    number at most 21 bytes.

    >>> item_size({"k": {"S": "abc"}, "n": {"N": "12"}})
    8
    """
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if "S" in value:
            size += len(value["S"].encode())
        elif "N" in value:
            size += min(len(value["N"]) // 2 + 2, 21)
        elif "B" in value:
            size += len(value["B"])
        else:
            size += 1
    return size


def _fixed_item_bytes(features: Mapping[str, str]) -> int:
    """The most an item of ``features`` takes besides its key, strings and arrays:
    every attribute name, 21 bytes a number (its four times too), 1 a bool."""
    names = sum(len(name.encode()) for name in (*layout.RESERVED, *features))
    bounded = [t for t in features.values() if t not in ("string", "float64_array")]
    return names + 21 * 4 + sum(1 if t == "bool" else 21 for t in bounded)


def _micros(column: pa.ChunkedArray | pa.Array) -> list[int]:
    import pyarrow as pa

    return column.cast(pa.int64()).to_pylist()  # type: ignore[no-any-return]


def _default_client(concurrency: int) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        config=Config(
            max_pool_connections=concurrency + 4,
            connect_timeout=10,
            read_timeout=30,
            retries={"mode": "standard", "max_attempts": 3},
            # Items are built here, not typed by people: skip botocore's slow validation.
            parameter_validation=False,
        ),
    )


class OnlineWriter:
    """Writes one view's rows to its online table; see the module docstring."""

    def __init__(
        self,
        table: str,
        view: v1alpha1.FeatureView | v1alpha1.FeatureViewSpec,
        client: Any | None = None,
        *,
        settings: OnlineWriteSettings | None = None,
        label: str | None = None,
    ) -> None:
        self.table = table
        self.spec = view.spec if isinstance(view, v1alpha1.FeatureView) else view
        self.settings = settings or OnlineWriteSettings()
        self.client = client if client is not None else _default_client(self.settings.concurrency)
        # BatchWriteItem bodies encoded with json.dumps, not walked through botocore's
        # serializer: a fifth of the client's CPU per request (bodies.py).
        self._request_items: Callable[[dict[str, Any]], dict[str, Any]] = (
            bodies.RequestItems if bodies.install(self.client) else dict
        )
        self.label = labels.view_label(view, label)
        self._key_types = {e.name: e.type for e in self.spec.entities}
        self._features = self.spec.feature_types()
        ttl = self.spec.ttl
        self._ttl_micros = (
            int(v1alpha1.parse_duration(ttl).total_seconds()) * 1_000_000 if ttl else None
        )
        self._fixed_item_bytes = _fixed_item_bytes(self._features)

    # -- public ------------------------------------------------------------------------

    def write(self, rows: row_codec.Rows, *, now: dt.datetime | None = None) -> OnlineWriteResult:
        """Write ``rows`` with one conditional PutItem per entity; safe beside any writer."""
        entries = self._entries(self._batches(rows, now))
        if not entries:
            return OnlineWriteResult()
        self._raise_watermark(max(e.event for e in entries.values()))
        with concurrent.futures.ThreadPoolExecutor(self.settings.concurrency) as pool:
            outcomes = list(pool.map(self._put_if_newer, entries.values()))
        written = sum(outcomes)
        return OnlineWriteResult(len(entries), written, len(entries) - written)

    def write_bulk(
        self,
        rows: row_codec.Rows,
        *,
        now: dt.datetime | None = None,
        on_progress: Callable[[int], None] | None = None,
        before_first_item: Callable[[], None] | None = None,
    ) -> OnlineWriteResult:
        """Write ``rows`` under the table's write lease with BatchWriteItem.

        Streams: ``rows`` are consumed ``chunk_entities`` at a time. Each chunk's items
        are built while earlier chunks' writes are in flight, and its own writes queue
        behind theirs, so the store never waits on a chunk boundary; at most two chunks
        are in flight. A chunk holding an entity that an unfinished chunk writes waits
        for it first, so a later chunk always sees an earlier one's writes of the same
        entity. ``on_progress`` is called with the number of entities of each chunk done.
        ``before_first_item`` is called once, just before the first entity's item is
        sent: the lease, the watermark and the first chunk's items are ready by then, so
        a caller that must wait before items land (a window's pending record settling,
        :mod:`featurekube.materialize.publish`) waits while they are prepared.
        """
        result = OnlineWriteResult()
        in_flight: collections.deque[_Chunk] = collections.deque()

        def settle(keep: int) -> None:
            while len(in_flight) > keep:
                done = in_flight.popleft()
                for future in done.writes:
                    future.result()  # raises the first failure
                if on_progress is not None:
                    on_progress(len(done.keys))

        with (
            concurrent.futures.ThreadPoolExecutor(self.settings.concurrency) as pool,
            # Reads of their own, not queued behind the writes in flight.
            concurrent.futures.ThreadPoolExecutor(self.settings.concurrency) as reads,
            self._lease() as lease,
        ):
            # Under the lease, an entity this call has not written holds values no
            # later than the watermark it started with (none: nothing is stored).
            started = watermark = self._watermark()
            written = _KeyFilter()
            try:
                for chunk in self._chunks(self._batches(rows, now)):
                    entries = self._entries(chunk)
                    if not entries:
                        continue
                    if any(not c.keys.isdisjoint(entries) for c in in_flight):
                        settle(0)
                    # Later than that watermark and not written by this call: newer
                    # than whatever is stored. Only the others are read.
                    unknown = [
                        key
                        for key, e in entries.items()
                        if (started is not None and e.event <= started) or key in written
                    ]
                    stored = self._stored_versions(reads, unknown) if unknown else {}
                    todo = [e for e in entries.values() if _is_newer(e.order, stored.get(e.key))]
                    newest = max(e.event for e in entries.values())
                    if watermark is None or newest > watermark:
                        self._raise_watermark(newest)
                        watermark = newest
                    if before_first_item is not None and todo:
                        before_first_item()
                        before_first_item = None
                    writes = [
                        pool.submit(self._batch_write, todo[i : i + _BATCH_WRITE], lease)
                        for i in range(0, len(todo), _BATCH_WRITE)
                    ]
                    in_flight.append(_Chunk(frozenset(entries), writes))
                    written.update(entries)
                    result += OnlineWriteResult(len(entries), len(todo), len(entries) - len(todo))
                    settle(1)
                settle(0)
            finally:
                for unfinished in in_flight:
                    for future in unfinished.writes:
                        future.cancel()
        return result

    def open_window(
        self,
        start: dt.datetime,
        end: dt.datetime,
        *,
        recorded: PendingWindow | None = None,
    ) -> PendingWindow:
        """Record the window [start, end) as pending: readers hide the items it writes
        until :meth:`close_window`. A run of the same window still recorded (under way,
        or dead) is superseded: only the latest run's close publishes the window.

        ``recorded``: the record as the run's launcher (the operator) wrote it before
        starting the run; it is written again under its run id, as it may have been
        withdrawn since, and is ``launched`` when it still held that id. None: a new id."""
        run = recorded.run if recorded is not None else uuid.uuid4().hex
        name = windows.window_id(_to_micros(start), _to_micros(end))
        key = {layout.ENTITY_KEY: {"S": windows.WINDOWS_KEY}}
        # Two updates: a map entry cannot be set in the same expression that makes
        # the map. Both are idempotent.
        self._update(
            "recording the window as pending",
            Key=key,
            UpdateExpression="SET #p = if_not_exists(#p, :empty)",
            ExpressionAttributeNames={"#p": windows.PENDING},
            ExpressionAttributeValues={":empty": {"M": {}}},
        )
        answer = self._update(
            "recording the window as pending",
            Key=key,
            UpdateExpression="SET #p.#w = :run",
            ExpressionAttributeNames={"#p": windows.PENDING, "#w": name},
            ExpressionAttributeValues={":run": {"S": run}},
            # UPDATED_OLD may leave out an entry set to the value it held (moto does).
            ReturnValues="ALL_OLD",
        )
        old = (answer or {}).get("Attributes", {}).get(windows.PENDING, {}).get("M", {})
        previous = old.get(name, {}).get("S")
        if recorded is not None and previous == run:
            return PendingWindow(start, end, run, recorded.superseded, launched=True)
        return PendingWindow(start, end, run, previous)

    def close_window(self, window: PendingWindow) -> bool:
        """Remove ``window``'s pending record: the window is complete, readers see what
        it wrote. False when a later run of the window took the record over; that run
        publishes the window when it completes."""
        return self._update_record(window, "REMOVE #p.#w", {}) is not None

    def withdraw_window(self, window: PendingWindow) -> bool:
        """Undo :meth:`open_window` for a run that wrote nothing: the record is put back
        as it was, the superseded run's if there was one (whatever that run wrote stays
        hidden), else removed. False when a later run took the record over."""
        if window.superseded is None:
            return self.close_window(window)
        restored = {":before": {"S": window.superseded}}
        return self._update_record(window, "SET #p.#w = :before", restored) is not None

    def _update_record(
        self, window: PendingWindow, expression: str, values: dict[str, Any]
    ) -> dict[str, Any] | None:
        name = windows.window_id(_to_micros(window.start), _to_micros(window.end))
        return self._update(
            "updating the window's pending record",
            Key={layout.ENTITY_KEY: {"S": windows.WINDOWS_KEY}},
            UpdateExpression=expression,
            ConditionExpression="#p.#w = :run",
            ExpressionAttributeNames={"#p": windows.PENDING, "#w": name},
            ExpressionAttributeValues={":run": {"S": window.run}, **values},
        )

    # -- rows to items -----------------------------------------------------------------

    def _batches(self, rows: row_codec.Rows, now: dt.datetime | None) -> Iterator[pa.RecordBatch]:
        from featurekube.writer import rows as row_codec

        moment = now or dt.datetime.now(dt.UTC)
        return row_codec.iter_batches(self.spec, rows, created_default=moment, label=self.label)

    def _chunks(self, batches: Iterator[pa.RecordBatch]) -> Iterator[list[pa.RecordBatch]]:
        chunk: list[pa.RecordBatch] = []
        size = 0
        limit = self.settings.chunk_entities
        for batch in batches:
            for start in range(0, batch.num_rows, limit):
                part = batch.slice(start, limit)
                chunk.append(part)
                size += part.num_rows
                if size >= limit:
                    yield chunk
                    chunk, size = [], 0
        if chunk:
            yield chunk

    def _entries(
        self, batches: Iterator[pa.RecordBatch] | Sequence[pa.RecordBatch]
    ) -> dict[str, _Entry]:
        """The newest entry of each entity among ``batches``, items built and checked
        against DynamoDB's size limit (a row a newer one replaces is not written, so
        its size does not matter)."""
        newest: dict[str, _Entry] = {}
        oversized: list[tuple[_Entry, int]] = []
        for batch in batches:
            if not batch.num_rows:
                continue
            entries, too_large = self._build(batch)
            oversized += too_large
            for entry in entries:
                held = newest.get(entry.key)
                if held is None or entry.order >= held.order:
                    newest[entry.key] = entry
        for entry, size in oversized:
            if newest[entry.key] is entry:
                raise self._too_large(entry, size)
        return newest

    def _build(self, batch: pa.RecordBatch) -> tuple[list[_Entry], list[tuple[_Entry, int]]]:
        """The entries of ``batch``'s rows, and those whose items are over DynamoDB's
        size limit with their sizes. Built a column at a time: per-row calls were most
        of a bulk write's own CPU time."""
        entity_keys = keys.encode_entity_keys(
            self._key_types, {name: batch.column(name).to_pylist() for name in self._key_types}
        )
        events = _micros(batch.column(offline_layout.EVENT_TIMESTAMP))
        createds = _micros(batch.column(offline_layout.CREATED_TIMESTAMP))
        names = [layout.ENTITY_KEY, layout.EVENT_TIME, layout.CREATED_TIME]
        columns: list[list[dict[str, Any] | None]] = [
            [{"S": key} for key in entity_keys],
            [{"N": str(event)} for event in events],
            [{"N": str(created)} for created in createds],
        ]
        # The TTL counts from the entity's latest event: an aggregation row's own, or
        # for plain features the event time (docs/semantics.md, "TTL").
        anchors = events
        if offline_layout.LATEST_EVENT_TIMESTAMP in batch.schema.names:
            latest = _micros(batch.column(offline_layout.LATEST_EVENT_TIMESTAMP))
            anchors = [e if t is None else t for e, t in zip(events, latest, strict=True)]
            names.append(layout.LATEST_EVENT_TIME)
            columns.append([{"N": str(anchor)} for anchor in anchors])
        if self._ttl_micros is not None:
            ttl = self._ttl_micros
            names.append(layout.EXPIRES_AT)
            # The ceiling of the seconds: an item never expires early.
            columns.append([{"N": str(-(-(anchor + ttl) // 1_000_000))} for anchor in anchors])
        nullable = []
        for name, value_type in self._features.items():
            column = batch.column(name)
            names.append(name)
            columns.append(values.to_attributes(value_type, column.to_pylist()))
            if column.null_count:
                nullable.append(name)
        # Every row has one value per name: the outer zip checks the columns' lengths.
        rows = zip(*columns, strict=True)
        items: list[dict[str, Any]] = [dict(zip(names, row, strict=False)) for row in rows]
        for name in nullable:  # a null is an absent attribute
            for item in items:
                if item[name] is None:
                    del item[name]
        entries = list(map(_Entry, entity_keys, events, createds, items))
        flagged = self._maybe_too_large(batch, entity_keys)
        sizes = ((entries[i], item_size(items[i])) for i in flagged)
        return entries, [(entry, size) for entry, size in sizes if size > MAX_ITEM_BYTES]

    def _maybe_too_large(self, batch: pa.RecordBatch, entity_keys: list[str]) -> list[int]:
        """The rows whose items might exceed DynamoDB's limit, from a bound computed a
        column at a time: every attribute name, 21 bytes a number, and the lengths of
        keys, strings and arrays. Only these are measured exactly."""
        import pyarrow as pa
        import pyarrow.compute as pc

        variable = pa.array(map(len, entity_keys), pa.int64())  # percent-encoded: ASCII
        for name, value_type in self._features.items():
            if value_type == "string":
                lengths = pc.binary_length(batch.column(name))
            elif value_type == "float64_array":
                lengths = pc.multiply(pc.list_value_length(batch.column(name)), 8)
            else:
                continue
            variable = pc.add(variable, pc.fill_null(lengths, 0))
        over = pc.greater(variable, MAX_ITEM_BYTES - self._fixed_item_bytes)
        return pc.indices_nonzero(over).to_pylist()  # type: ignore[no-any-return]

    def _too_large(self, entry: _Entry, size: int) -> ItemTooLargeError:
        largest = max(
            (name for name in entry.item if name in self._features),
            key=lambda name: item_size({name: entry.item[name]}),
            default=None,
        )
        hint = (
            f"; its largest feature is {largest} "
            f"({item_size({largest: entry.item[largest]})} bytes)"
            if largest
            else ""
        )
        return ItemTooLargeError(
            f"{self.label}: the online item of entity {entry.key} is about {size} bytes, over "
            f"DynamoDB's item limit of 400 KB ({MAX_ITEM_BYTES} bytes){hint}. Shrink that "
            "feature (shorter strings or arrays), or split the view's features across views",
            entity_key=entry.key,
            size=size,
        )

    # -- DynamoDB ----------------------------------------------------------------------

    def _put_if_newer(self, entry: _Entry) -> bool:
        """PutItem under the newer-values condition; False if the stored value won."""
        condition = layout.newer_condition()
        for attempt in itertools.count(1):
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item=entry.item,
                    ExpressionAttributeValues={
                        ":e": {"N": str(entry.event)},
                        ":c": {"N": str(entry.created)},
                    },
                    **condition,
                )
                return True
            except Exception as exc:
                code = _error_code(exc)
                if code == "ConditionalCheckFailedException":
                    return False
                self._retry_or_raise(exc, code, attempt, f"PutItem of entity {entry.key}")
        raise AssertionError("unreachable")

    def _watermark(self) -> int | None:
        """The table's watermark; None if nothing was ever written (no item exists)."""
        for attempt in itertools.count(1):
            try:
                item = self.client.get_item(
                    TableName=self.table,
                    Key={layout.ENTITY_KEY: {"S": WATERMARK_KEY}},
                    ConsistentRead=True,
                ).get("Item")
            except Exception as exc:
                self._retry_or_raise(exc, _error_code(exc), attempt, "reading the watermark")
                continue
            return int(item[layout.EVENT_TIME]["N"]) if item else None
        raise AssertionError("unreachable")

    def _raise_watermark(self, event: int) -> None:
        """Make the watermark at least ``event``, before items of that time are written."""
        # A failed condition means the watermark is already as high.
        self._update(
            "raising the watermark",
            Key={layout.ENTITY_KEY: {"S": WATERMARK_KEY}},
            UpdateExpression="SET #e = :e",
            ConditionExpression="attribute_not_exists(#e) OR #e < :e",
            ExpressionAttributeNames={"#e": layout.EVENT_TIME},
            ExpressionAttributeValues={":e": {"N": str(event)}},
        )

    def _update(self, what: str, **arguments: Any) -> dict[str, Any] | None:
        """UpdateItem on the table, retried: its answer, None when its condition failed."""
        for attempt in itertools.count(1):
            try:
                answer: dict[str, Any] = self.client.update_item(TableName=self.table, **arguments)
                return answer
            except Exception as exc:
                code = _error_code(exc)
                if code == "ConditionalCheckFailedException":
                    return None
                self._retry_or_raise(exc, code, attempt, what)
        raise AssertionError("unreachable")

    def _stored_versions(
        self, pool: concurrent.futures.ThreadPoolExecutor, keys_: list[str]
    ) -> dict[str, tuple[int, int]]:
        groups = [keys_[i : i + _BATCH_GET] for i in range(0, len(keys_), _BATCH_GET)]
        stored: dict[str, tuple[int, int]] = {}
        for part in pool.map(self._batch_get, groups):
            stored.update(part)
        return stored

    def _batch_get(self, group: list[str]) -> dict[str, tuple[int, int]]:
        request: dict[str, Any] = {
            self.table: {
                "Keys": [{layout.ENTITY_KEY: {"S": key}} for key in group],
                "ProjectionExpression": "#k, #e, #c",
                "ExpressionAttributeNames": {
                    "#k": layout.ENTITY_KEY,
                    "#e": layout.EVENT_TIME,
                    "#c": layout.CREATED_TIME,
                },
                "ConsistentRead": True,
            }
        }
        found: dict[str, tuple[int, int]] = {}
        for attempt in itertools.count(1):
            try:
                answer = self.client.batch_get_item(RequestItems=request)
            except Exception as exc:
                self._retry_or_raise(exc, _error_code(exc), attempt, "BatchGetItem")
                continue
            for item in answer.get("Responses", {}).get(self.table, ()):
                found[item[layout.ENTITY_KEY]["S"]] = (
                    int(item[layout.EVENT_TIME]["N"]),
                    int(item[layout.CREATED_TIME]["N"]),
                )
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return found
            self._backoff(attempt, "BatchGetItem left keys unprocessed")
        raise AssertionError("unreachable")

    def _batch_write(self, group: list[_Entry], lease: _Lease) -> None:
        pending: list[dict[str, Any]] = [{"PutRequest": {"Item": e.item}} for e in group]
        for attempt in itertools.count(1):
            lease.check()
            try:
                request = self._request_items({self.table: pending})
                answer = self.client.batch_write_item(RequestItems=request)
            except Exception as exc:
                self._retry_or_raise(exc, _error_code(exc), attempt, "BatchWriteItem")
                continue
            pending = (answer.get("UnprocessedItems") or {}).get(self.table) or []
            if not pending:
                return
            self._backoff(attempt, f"BatchWriteItem left {len(pending)} items unprocessed")

    def _retry_or_raise(self, exc: Exception, code: str | None, attempt: int, what: str) -> None:
        if code == "ResourceNotFoundException":
            raise OnlineWriteError(
                f"{self.label}: online table {self.table} does not exist. The operator creates "
                "it when the view is applied; `featurekube materialize` creates it for local runs"
            ) from exc
        if code not in _RETRYABLE:
            raise OnlineWriteError(f"{self.label}: {what} on {self.table} failed: {exc}") from exc
        self._backoff(attempt, f"{what} throttled ({code})", cause=exc)

    def _backoff(self, attempt: int, why: str, cause: Exception | None = None) -> None:
        settings = self.settings
        if attempt >= settings.max_attempts:
            raise OnlineWriteError(
                f"{self.label}: {why} on table {self.table}, still after {attempt} attempts; "
                "the table's capacity may be too low for this write rate: raise it, or lower "
                "the writer's concurrency"
            ) from cause
        ceiling = min(settings.max_backoff_seconds, settings.backoff_seconds * 2 ** (attempt - 1))
        time.sleep(random.uniform(0, ceiling))

    @contextlib.contextmanager
    def _lease(self) -> Iterator[_Lease]:
        lease = _Lease(self)
        lease.acquire()
        try:
            yield lease
        finally:
            lease.release()


def _to_micros(moment: dt.datetime) -> int:
    utc = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    delta = utc - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _is_newer(new: tuple[int, int], stored: tuple[int, int] | None) -> bool:
    """The rule of :func:`featurekube.online.layout.newer_condition`, in Python."""
    if stored is None:
        return True
    return stored[0] < new[0] or (stored[0] == new[0] and stored[1] <= new[1])


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


class _Lease:
    """A table's write lease: one item, taken and renewed with conditional writes."""

    def __init__(self, writer: OnlineWriter) -> None:
        self.writer = writer
        self.owner = uuid.uuid4().hex
        self.seconds = writer.settings.lease_seconds
        self._renewed_at = 0.0
        self._lock = threading.Lock()

    @property
    def _key(self) -> dict[str, Any]:
        return {layout.ENTITY_KEY: {"S": LEASE_KEY}}

    def _until(self) -> tuple[dict[str, str], dict[str, str]]:
        until = time.time() + self.seconds
        return {"N": str(int(until * 1_000_000))}, {"N": str(int(until) + 86400)}

    def acquire(self) -> None:
        writer = self.writer
        deadline = time.monotonic() + writer.settings.lease_wait_seconds
        failures = 0
        for attempt in itertools.count(1):
            until, expires = self._until()
            started = time.monotonic()
            try:
                writer.client.put_item(
                    TableName=writer.table,
                    Item={
                        **self._key,
                        LEASE_OWNER: {"S": self.owner},
                        LEASE_UNTIL: until,
                        layout.EXPIRES_AT: expires,
                    },
                    ConditionExpression="attribute_not_exists(#k) OR #u < :now OR #o = :me",
                    ExpressionAttributeNames={
                        "#k": layout.ENTITY_KEY,
                        "#u": LEASE_UNTIL,
                        "#o": LEASE_OWNER,
                    },
                    ExpressionAttributeValues={
                        ":now": {"N": str(int(time.time() * 1_000_000))},
                        ":me": {"S": self.owner},
                    },
                )
                self._renewed_at = started
                return
            except Exception as exc:
                code = _error_code(exc)
                if code != "ConditionalCheckFailedException":
                    failures += 1
                    writer._retry_or_raise(exc, code, failures, "taking the write lease")
                    continue
            if time.monotonic() > deadline:
                raise LeaseError(
                    f"{writer.label}: another writer has held the write lease of online table "
                    f"{writer.table} for over {writer.settings.lease_wait_seconds:.0f} s "
                    f"({self._holder()}). Another materialization of this view is writing; "
                    "wait for it, or if it died, for its lease to lapse"
                )
            time.sleep(min(5.0, 0.2 * attempt))

    def _holder(self) -> str:
        try:
            item = self.writer.client.get_item(
                TableName=self.writer.table, Key=self._key, ConsistentRead=True
            ).get("Item")
        except Exception:
            return "holder unknown"
        if not item:
            return "now free"
        until = int(item[LEASE_UNTIL]["N"]) / 1_000_000
        moment = dt.datetime.fromtimestamp(until, dt.UTC).isoformat(timespec="seconds")
        return f"owner {item[LEASE_OWNER]['S']}, until {moment}"

    def check(self) -> None:
        """Renew the lease when a third of it has passed; raise if it cannot be trusted."""
        with self._lock:
            elapsed = time.monotonic() - self._renewed_at
            if elapsed < self.seconds / 3:
                return
            if elapsed >= self.seconds * 2 / 3:
                raise LeaseError(
                    f"{self.writer.label}: the write lease of online table {self.writer.table} "
                    f"was last renewed {elapsed:.0f} s ago, too long to trust (it lasts "
                    f"{self.seconds:.0f} s); the write stopped and must be run again"
                )
            self._renew()

    def _renew(self) -> None:
        writer = self.writer
        until, expires = self._until()
        started = time.monotonic()
        try:
            writer.client.update_item(
                TableName=writer.table,
                Key=self._key,
                UpdateExpression="SET #u = :until, #x = :expires",
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={
                    "#u": LEASE_UNTIL,
                    "#x": layout.EXPIRES_AT,
                    "#o": LEASE_OWNER,
                },
                ExpressionAttributeValues={
                    ":until": until,
                    ":expires": expires,
                    ":me": {"S": self.owner},
                },
            )
        except Exception as exc:
            raise LeaseError(
                f"{writer.label}: lost the write lease of online table {writer.table} "
                f"({self._holder()}); the write stopped and must be run again"
            ) from exc
        self._renewed_at = started

    def release(self) -> None:
        try:
            self.writer.client.delete_item(
                TableName=self.writer.table,
                Key=self._key,
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": LEASE_OWNER},
                ExpressionAttributeValues={":me": {"S": self.owner}},
            )
        except Exception as exc:
            # Lost already, or the store is down: the lease lapses on its own.
            log.debug("releasing the write lease of %s: %s", self.writer.table, exc)
