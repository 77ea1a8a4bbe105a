"""The write path of featurekube's stores, shared by the materialization job and the
feature server's Push RPC; does I/O (DynamoDB through boto3, Delta through delta-rs),
never imports pyspark.

- :class:`~featurekube.writer.online.OnlineWriter`: newest-values-only writes of a view's
  rows to its DynamoDB table, conditional per item (``write``) or in bulk under the
  table's write lease (``write_bulk``).
- :class:`~featurekube.writer.offline.OfflineWriter`: appends (``append``) and atomic
  window replacements (``replace_window``) of a view's Delta table.
- :mod:`featurekube.writer.rows`: what rows look like (dicts or Arrow), and the schema.
- :mod:`featurekube.writer.errors`: what goes wrong.

Example, as the Push RPC would write two pushed rows::

    from featurekube import writer

    rows = [{"driver_id": 1001, "current_zone_id": 12, "current_speed_kmh": 31.5,
             "event_timestamp": datetime(2026, 1, 1, 8, 0, tzinfo=UTC)}]
    writer.OnlineWriter(table, view).write(rows)
    writer.OfflineWriter(offline_uri, view).append(rows)
"""

from typing import TYPE_CHECKING, Any

from featurekube.writer.errors import (
    ItemTooLargeError,
    LeaseError,
    OfflineWriteError,
    OnlineWriteError,
    RowError,
    WriteError,
)
from featurekube.writer.online import (
    OnlineWriter,
    OnlineWriteResult,
    OnlineWriteSettings,
    PendingWindow,
)

if TYPE_CHECKING:
    from featurekube.writer.offline import OfflineWriter, OfflineWriteResult
    from featurekube.writer.rows import Rows, resolve_full_ties

__all__ = [
    "ItemTooLargeError",
    "LeaseError",
    "OfflineWriteError",
    "OfflineWriteResult",
    "OfflineWriter",
    "OnlineWriteError",
    "OnlineWriteResult",
    "OnlineWriteSettings",
    "OnlineWriter",
    "PendingWindow",
    "RowError",
    "Rows",
    "WriteError",
    "resolve_full_ties",
]


_LAZY = {
    "OfflineWriter": "offline",
    "OfflineWriteResult": "offline",
    "Rows": "rows",
    "resolve_full_ties": "rows",
}


def __getattr__(name: str) -> Any:
    # Arrow and the offline writer load on first use: a window's pending record is
    # written through the online writer before the job loads them.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'featurekube.writer' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"featurekube.writer.{module}"), name)
