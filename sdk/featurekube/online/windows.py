"""Which materialization windows of a view are not yet complete, as its online table
records them; pure.

A window's online values are written before its offline rows are committed, and a
window is complete once both are (docs/semantics.md, "Materialization windows"). Until
then the feature server must not serve what the window wrote. Every item a window
[start, end) writes has its event time in [start, end), so the window's range is
enough to tell them: the job records the range in the table's *windows item* (the
reserved key :data:`WINDOWS_KEY`) before it writes anything, and removes it once the
offline commit is done. A reader fetches that item with the entities' items and treats
an item whose event time lies in a pending range as absent (:func:`hidden`).

The windows item holds one map attribute, :data:`PENDING`: window id
(:func:`window_id`) -> the id of the run that last began the window. Only that run
removes the entry, so a run that finishes while another run of the same window is
still writing leaves the window hidden until that one finishes too.

>>> item = {"entity_key": {"S": WINDOWS_KEY},
...         PENDING: {"M": {window_id(100, 200): {"S": "run-1"}}}}
>>> ranges = pending_ranges(item)
>>> ranges, hidden(150, ranges), hidden(200, ranges)
(((100, 200),), True, False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PENDING", "WINDOWS_KEY", "hidden", "pending_ranges", "window_id"]

WINDOWS_KEY = "#windows"
"""The reserved item recording a table's pending windows. Encoded entity keys start
with a join key's name (a letter or ``_``), so no entity can have this key."""
PENDING = "pending"
"""The windows item's map of pending windows: window id -> run id (S)."""


def window_id(start_micros: int, end_micros: int) -> str:
    """The id of the window [start, end), times in microseconds since the epoch.

    >>> window_id(1767225600000000, 1767229200000000)
    '1767225600000000:1767229200000000'
    """
    return f"{start_micros}:{end_micros}"


def pending_ranges(item: Mapping[str, Mapping[str, Any]] | None) -> tuple[tuple[int, int], ...]:
    """The [start, end) ranges, in microseconds, of the windows ``item`` (the windows
    item as read, or None when the table has none) records as pending."""
    if not item:
        return ()
    entries = (item.get(PENDING) or {}).get("M") or {}
    ranges = []
    for key in entries:
        start, _, end = str(key).partition(":")
        ranges.append((int(start), int(end)))
    return tuple(sorted(ranges))


def hidden(event_micros: int, ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether an item of this event time may have been written by a pending window."""
    return any(start <= event_micros < end for start, end in ranges)
