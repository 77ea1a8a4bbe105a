"""Pushed rows written through featurekube's write path (:mod:`featurekube.writer`), the
one the materialization job uses: online to the view's DynamoDB table, only where
newer than what is stored, and appended offline to its Delta table (network I/O).

The write path is synchronous (boto3, delta-rs); it runs in a worker thread. A
request's deadline stops waiting for it, not the write itself, which stays correct
when it lands late: an online write never replaces a newer value.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from featurekube import writer
from featurekube.offline import layout as offline_layout
from featurekube_server import errors

if TYPE_CHECKING:
    import pyarrow as pa

    from featurekube_server import plan

__all__ = ["WritePathPusher"]


class WritePathPusher:
    """A :class:`~featurekube_server.stores.base.PushWriter` over the shared write path."""

    def __init__(self) -> None:
        self._online: dict[str, writer.OnlineWriter] = {}
        self._offline: dict[str, writer.OfflineWriter] = {}

    async def push(self, view: plan.FeatureViewPlan, rows: pa.Table) -> int:
        target = view.push
        if target is None or target.spec is None:
            raise errors.PushUnsupportedError(
                f"the serving plan gives no spec for feature view {view.namespace}/{view.name}, "
                "so its rows cannot be written: the operator must render push.spec"
            )
        if target.timestamp_field != offline_layout.EVENT_TIMESTAMP:
            names = [
                offline_layout.EVENT_TIMESTAMP if n == target.timestamp_field else n
                for n in rows.column_names
            ]
            rows = rows.rename_columns(names)
        return await asyncio.to_thread(self._write, view, rows)

    def _write(self, view: plan.FeatureViewPlan, rows: pa.Table) -> int:
        target = view.push
        assert target is not None and target.spec is not None
        label = f"FeatureView {view.namespace}/{view.name}"
        # The rows of one push share a created time: equal keys and event times are
        # full ties, resolved here as the job resolves them, the same in both stores.
        rows = writer.resolve_full_ties(target.spec, rows)
        try:
            if target.online:
                online = self._online.get(view.online_table)
                if online is None:
                    online = writer.OnlineWriter(view.online_table, target.spec, label=label)
                    self._online[view.online_table] = online
                online.write(rows)
            if target.offline and target.offline_uri:
                offline = self._offline.get(target.offline_uri)
                if offline is None:
                    offline = writer.OfflineWriter(target.offline_uri, target.spec, label=label)
                    self._offline[target.offline_uri] = offline
                offline.append(rows)
        except writer.RowError as exc:
            raise errors.InvalidPushError(str(exc)) from exc
        except writer.WriteError as exc:
            raise errors.StoreUnavailableError(str(exc)) from exc
        written: int = rows.num_rows
        return written
