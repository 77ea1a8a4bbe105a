"""The errors of the write path; no I/O.

    FeaturekubeError
    └── WriteError               a row could not be written to a store
        ├── RowError             a row does not fit the view's schema (names row and column)
        ├── ItemTooLargeError    an online item is over DynamoDB's 400 KB item limit
        ├── OnlineWriteError     DynamoDB kept refusing or failing a request
        ├── LeaseError           the online table's write lease is held by another writer,
        │                        or was lost while writing
        └── OfflineWriteError    the Delta table could not be written

Each message names the view, and the entity or row and column where that applies.
"""

from __future__ import annotations

from featurekube.errors import FeaturekubeError

__all__ = [
    "ItemTooLargeError",
    "LeaseError",
    "OfflineWriteError",
    "OnlineWriteError",
    "RowError",
    "WriteError",
]


class WriteError(FeaturekubeError):
    """Rows could not be written to the online or the offline store."""


class RowError(WriteError, ValueError):
    """A row does not fit the view's schema: a missing key, an unknown column, a value of
    the wrong type, or (for a window replace) an event time outside the window."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        super().__init__(message)
        self.row = row
        """Position of the offending row in the input, from 0, when known."""
        self.column = column
        """The offending column, when known."""


class ItemTooLargeError(WriteError):
    """An entity's online item would exceed DynamoDB's item size limit (400 KB)."""

    def __init__(self, message: str, *, entity_key: str, size: int) -> None:
        super().__init__(message)
        self.entity_key = entity_key
        self.size = size


class OnlineWriteError(WriteError):
    """DynamoDB refused or failed requests after every retry (throttling, unprocessed
    items, a missing table, an error of the service)."""


class LeaseError(WriteError):
    """The online table's write lease could not be taken in time, or was lost."""


class OfflineWriteError(WriteError):
    """The Delta table could not be written (storage error, or concurrent commits kept
    conflicting)."""
