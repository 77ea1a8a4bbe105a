"""The errors of the write path, under the names this package uses; no I/O.

They are defined, with the whole tree, in :mod:`featurekube.errors`::

    WriteError               a row could not be written to a store
    ├── RowError             a row does not fit the view's schema (names row and column)
    ├── ItemTooLargeError    an online item is over DynamoDB's 400 KB item limit
    ├── OnlineWriteError     DynamoDB kept refusing or failing a request
    ├── LeaseError           the online table's write lease is held by another writer,
    │                        or was lost while writing
    └── OfflineWriteError    the Delta table could not be written

Each message names the view, and the entity or row and column where that applies.
"""

from __future__ import annotations

from featurekube.errors import (
    ItemTooLargeError,
    LeaseError,
    OfflineWriteError,
    OnlineWriteError,
    RowError,
    WriteError,
)

__all__ = [
    "ItemTooLargeError",
    "LeaseError",
    "OfflineWriteError",
    "OnlineWriteError",
    "RowError",
    "WriteError",
]
