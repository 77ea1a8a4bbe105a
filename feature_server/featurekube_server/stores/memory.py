"""An online store in memory; no I/O.

For users' tests (start a feature server over known values, no AWS needed) and for
measuring the server's own cost without a store's. Items are kept in the online layout
(:mod:`featurekube.online.layout`), so what the server reads from here is exactly what
it would read from DynamoDB. It is also a :class:`~.base.PushWriter`, applying the
online layout's newer-event-time rule (it has no offline side).

    store = MemoryStore()
    store.put(view, {"driver_id": 1001}, {"trips_7d": 12}, event_time=now)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from featurekube.online import keys, layout, values
from featurekube_server import errors
from featurekube_server.stores import base

if TYPE_CHECKING:
    import pyarrow as pa

    from featurekube_server import plan

__all__ = ["MemoryStore"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _micros(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # naive timestamps are UTC
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


class MemoryStore:
    """Tables of items in dictionaries.

    ``latency`` (seconds, default 0) delays every read, to test deadlines and
    draining; ``available`` set to False makes every call fail as an unreachable
    store does.
    """

    def __init__(self, latency: float = 0.0) -> None:
        self.tables: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self.latency = latency
        self.available = True

    # --- OnlineStore

    async def read(self, reads: Sequence[base.TableRead]) -> dict[str, Mapping[str, base.Item]]:
        if self.latency:
            await asyncio.sleep(self.latency)
        self._answer()
        found: dict[str, Mapping[str, base.Item]] = {}
        for read in reads:
            items = self._table(read.table)
            # Whole items, not projections: readers look only at what they asked for,
            # and copying would measure the copy rather than the server.
            found[read.table] = {key: items[key] for key in read.keys if key in items}
        return found

    async def check(self, tables: Sequence[str]) -> None:
        self._answer()
        for table in tables:
            self._table(table)

    # --- PushWriter

    async def push(self, view: plan.FeatureViewPlan, rows: pa.Table) -> int:
        if view.push is None:
            raise errors.PushUnsupportedError(f"feature view {view.name} is not a push source")
        self._answer()
        created = time.time_ns() // 1000
        for row in rows.to_pylist():
            event = row[view.push.timestamp_field]
            self.put(
                view,
                {e.name: row[e.name] for e in view.entities},
                {f.source: row[f.source] for f in view.push.features},
                event_time=event,
                created_time=created,
                types={f.source: f.type for f in view.push.features},
            )
        written: int = rows.num_rows
        return written

    # --- filling it

    def create_table(self, table: str) -> None:
        """Make an empty table (reads of a missing table fail as DynamoDB's do)."""
        self.tables.setdefault(table, {})

    def put_item(self, table: str, item: Mapping[str, dict[str, Any]]) -> None:
        """Store ``item`` (online layout) as it is, replacing any item of its key."""
        self.tables.setdefault(table, {})[item[layout.ENTITY_KEY]["S"]] = dict(item)

    def put(
        self,
        view: plan.FeatureViewPlan,
        entity: Mapping[str, object],
        features: Mapping[str, object],
        event_time: dt.datetime | int,
        created_time: dt.datetime | int | None = None,
        types: Mapping[str, str] | None = None,
    ) -> bool:
        """Store feature values (by their view names; None for nulls) of one entity of
        ``view``, unless a newer value is stored (the online rule); returns whether it
        was stored. Times are datetimes or microseconds since the epoch.
        """
        types = dict(types or {f.source: f.type for f in view.features})
        event = event_time if isinstance(event_time, int) else _micros(event_time)
        if created_time is None:
            created = time.time_ns() // 1000
        else:
            created = created_time if isinstance(created_time, int) else _micros(created_time)
        key = keys.encode_entity_key(view.key_types, entity)
        table = self.tables.setdefault(view.online_table, {})
        stored = table.get(key)
        if stored is not None:
            stored_event = int(stored[layout.EVENT_TIME]["N"])
            stored_created = int(stored[layout.CREATED_TIME]["N"])
            if (stored_event, stored_created) > (event, created):
                return False
        item: dict[str, dict[str, Any]] = {
            layout.ENTITY_KEY: {"S": key},
            layout.EVENT_TIME: {"N": str(event)},
            layout.CREATED_TIME: {"N": str(created)},
        }
        for name, value in features.items():
            attribute = values.to_attribute(types[name], value)
            if attribute is not None:
                item[name] = attribute
        table[key] = item
        return True

    def _table(self, table: str) -> dict[str, dict[str, dict[str, Any]]]:
        found = self.tables.get(table)
        if found is None:
            raise errors.StoreUnavailableError(
                f"online table {table} does not exist in the memory store: create it "
                "(create_table) or put items into it first"
            )
        return found

    def _answer(self) -> None:
        if not self.available:
            raise errors.StoreUnavailableError("the memory store is set unavailable")
