"""The online store interface the feature server reads through; no I/O.

Like httpx's transports: one small Protocol per ability, and backends that implement
them (:mod:`.dynamodb` for real, :mod:`.memory` for tests and for measuring the
server's own cost). Items are in the online layout of
:mod:`featurekube.online.layout`: attribute name -> DynamoDB attribute value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

    from featurekube_server import plan

__all__ = ["Item", "OnlineStore", "PushWriter", "TableRead"]

Item = Mapping[str, dict[str, Any]]
"""A stored item: attribute name -> DynamoDB attribute value ({"N": "3"}, ...)."""


@dataclass(frozen=True)
class TableRead:
    """Keys to read from one table, and the attributes wanted of their items; a store
    read takes at most one of these per table."""

    table: str
    keys: Sequence[str]
    """Encoded entity keys, each once."""
    attributes: Sequence[str] | None
    """Attributes besides the entity key and event time; None for whole items (a read
    of every feature of a view: naming them all would only make the store project)."""


class OnlineStore(Protocol):
    """Reads the latest values of entities from views' online tables."""

    async def read(self, reads: Sequence[TableRead]) -> dict[str, Mapping[str, Item]]:
        """The items of every read's keys, by table, each with its event time and those
        of its read's attributes it has; keys with no item are left out. The tables
        are read together, in as few calls as the store allows. Raises
        :class:`featurekube_server.errors.StoreUnavailableError` when the store does not
        answer; a caller bounds the call with a timeout (cancelling it)."""
        ...

    async def check(self, tables: Sequence[str]) -> None:
        """Return once the store answers and every one of ``tables`` exists; raise
        :class:`featurekube_server.errors.StoreUnavailableError` otherwise."""
        ...


class PushWriter(Protocol):
    """Writes rows pushed to a push-source view, as the materialization job writes:
    online only when newer than what is stored, appended offline."""

    async def push(self, view: plan.FeatureViewPlan, rows: pa.Table) -> int:
        """Write ``rows`` (join keys, the event timestamp field as timestamp[us, UTC],
        every feature of the view, each of its value type); returns the rows written."""
        ...
