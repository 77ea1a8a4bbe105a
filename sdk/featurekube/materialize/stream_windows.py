"""What one micro-batch of a streaming aggregation reads, writes and rejects; pure.

A streaming aggregation view keeps its partial aggregates in the version's tile table
(:mod:`featurekube.materialize.tiles`), the one its batch windows fill before the
stream's start (docs/semantics.md, "Streams" and "Tiles"). Each micro-batch:

1. rejects the events that are too late: more than ``allowedLateness`` behind the
   **watermark**, the greatest event time the stream had applied before the batch
   (:func:`late`). The watermark a batch is judged by is fixed before it runs, so a
   batch run again after a restart rejects the same events;
2. merges its events' interval tiles into the stored ones (only the intervals its
   events touch: :func:`touched_ends`), and drops the coarse tiles holding them;
3. computes, from tiles, the rows of the **affected entities** — those with an event
   in the batch, and those an interval leaves a window of at a boundary the watermark
   passed (:func:`leaving_tiles`) — at every boundary where one of their intervals
   enters or leaves a window, from the earliest boundary the batch changes
   (:func:`row_range`) up to the stream's current boundary, ``ceil(watermark)``;
4. writes each affected entity's row at the current boundary online, and appends
   all of those rows offline.

The stream owns the boundaries after ``split`` (:func:`split_boundary`), the last
boundary before its start ``since``, and so the intervals ending after it: the events
with E > split. The batch windows own the boundaries before ``since``, which read no
event after ``split``.

Its windows reach back across the split into the intervals the batch windows store
(:func:`history_range`): the stream reads the topic only once every one of them is
stored (:func:`missing_history`), so that no value it writes lacks their events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurekube.materialize import tiles
from featurekube.materialize.plan import AggregationPlan, AggregationStep

__all__ = [
    "HistoryGap",
    "StreamBoundaries",
    "boundaries",
    "ceil_boundary",
    "history_range",
    "late",
    "leaving_tiles",
    "missing_history",
    "newest_rows",
    "read_and_build",
    "row_plan",
    "split_boundary",
    "touched_ends",
]


def ceil_boundary(micros: int, interval: int) -> int:
    """The first boundary at or after ``micros``: the end of the interval holding it.

    >>> ceil_boundary(61, 60), ceil_boundary(60, 60), ceil_boundary(-1, 60)
    (120, 60, 0)
    """
    return -(-micros // interval) * interval


def split_boundary(since: int, interval: int) -> int:
    """The last boundary before ``since``: batch windows own it and every earlier
    one; the stream owns every later one, and the events after it.

    >>> split_boundary(120, 60), split_boundary(121, 60)
    (60, 120)
    """
    return ceil_boundary(since, interval) - interval


def history_range(
    split: int, interval: int, longest: int, history_start: int
) -> tuple[int, int] | None:
    """The ends (first, last) of the intervals before the split that the stream's
    windows read, (split - longest, split]: the batch windows store them all, their
    first window its windows' reach back too. None when the batch windows own no
    boundary, their history starting (``history_start``) after the split: then no
    interval before the split is ever stored, and the view counts the stream's events
    alone.

    >>> history_range(600, 60, 180, 0), history_range(600, 60, 180, 600)
    ((480, 600), (480, 600))
    >>> history_range(600, 60, 180, 601) is None
    True
    """
    if ceil_boundary(history_start, interval) > split:
        return None
    return split - longest + interval, split


@dataclass(frozen=True)
class HistoryGap:
    """The intervals of the history a stream needs that the tile table lacks."""

    missing: int
    """How many."""
    first: int
    """The end of the earliest (µs)."""
    last: int
    """The end of the latest (µs)."""


def missing_history(
    history: tuple[int, int] | None, stored: set[tiles.TileKey], interval: int
) -> HistoryGap | None:
    """Which intervals of ``history`` (:func:`history_range`) are not ``stored``
    (their markers); None when none is missing.

    >>> missing_history((60, 240), {(60, 60), (60, 240)}, 60)
    HistoryGap(missing=2, first=120, last=180)
    >>> missing_history(None, set(), 60) is None
    True
    """
    if history is None:
        return None
    first, last = history
    absent = [end for end in range(first, last + 1, interval) if (interval, end) not in stored]
    if not absent:
        return None
    return HistoryGap(len(absent), absent[0], absent[-1])


def late(events: Sequence[int] | np.ndarray, watermark: int | None, allowed: int) -> np.ndarray:
    """Which events (µs) are too late: more than ``allowed`` µs before ``watermark``
    (an event exactly ``allowed`` behind is applied). No watermark: none.

    >>> late([0, 20, 25], 30, 10).tolist()
    [True, False, False]
    """
    times = np.asarray(events, dtype=np.int64)
    if watermark is None:
        return np.zeros(len(times), dtype=bool)
    return times < watermark - allowed


def touched_ends(events: Sequence[int] | np.ndarray, interval: int) -> list[int]:
    """The ends of the intervals holding ``events`` (µs), ascending.

    >>> touched_ends([1, 60, 61, 200], 60)
    [60, 120, 240]
    """
    times = np.asarray(events, dtype=np.int64)
    return sorted({int(e) for e in -(-times // interval) * interval})


@dataclass(frozen=True)
class StreamBoundaries:
    """Where the stream stands before and after one micro-batch."""

    before: int
    """The current boundary before the batch: ``ceil(watermark)``, or the split."""
    after: int
    """... and after it."""


def boundaries(
    watermark_before: int | None, watermark_after: int | None, split: int, interval: int
) -> StreamBoundaries:
    """The stream's boundary before and after a batch, never before the split.

    >>> boundaries(None, 130, 60, 60)
    StreamBoundaries(before=60, after=180)
    """

    def at(watermark: int | None) -> int:
        if watermark is None:
            return split
        return max(split, ceil_boundary(watermark, interval))

    return StreamBoundaries(at(watermark_before), at(watermark_after))


def leaving_tiles(plan_windows: Iterable[int], interval: int, span: StreamBoundaries) -> set[int]:
    """The ends of the intervals that leave a window at a boundary the batch moves the
    stream past, (before, after]: an entity with events there changes value without
    an event of its own.

    >>> sorted(leaving_tiles([120], 60, StreamBoundaries(before=300, after=420)))
    [240, 300]
    """
    return {
        t - w for w in plan_windows for t in range(span.before + interval, span.after + 1, interval)
    }


def row_plan(
    steps: tuple[AggregationStep, ...], interval: int, first: int, last: int
) -> AggregationPlan:
    """The aggregation plan of the boundaries [first, last]."""
    return AggregationPlan(interval=interval, first_boundary=first, last_boundary=last, steps=steps)


def read_and_build(
    needed: Iterable[tiles.TileKey],
    touched: set[tiles.TileKey],
    stored: set[tiles.TileKey],
    sizes: Sequence[int],
) -> tuple[set[tiles.TileKey], list[tiles.TileKey], set[tiles.TileKey]]:
    """Where each ``needed`` tile comes from: ``touched`` intervals are merged by the
    batch; a coarse tile holding one is stale and built again from its parts, as is
    one not ``stored``; any other stored tile is read; an interval not stored has no
    events (the stream's) or was not computed (history before the split, which the
    batch windows store). Returns (tiles to read, coarse tiles to build, smaller
    sizes first, and the intervals neither stored nor touched).

    >>> m = 60
    >>> read, built, absent = read_and_build({(60, 3600), (3600, 3600)}, {(60, 3600)},
    ...     {(3600, 3600), (60, 60)}, (60, 3600))
    >>> sorted(read), built, len(absent)
    ([(60, 60)], [(3600, 3600)], 58)
    """
    ends = {end for _, end in touched}

    def is_stale(key: tiles.TileKey) -> bool:
        size, end = key
        return any(end - size < t <= end for t in ends)

    read: set[tiles.TileKey] = set()
    built: set[tiles.TileKey] = set()
    absent: set[tiles.TileKey] = set()
    pending = list(needed)
    seen: set[tiles.TileKey] = set()
    while pending:
        key = pending.pop()
        if key in seen:
            continue
        seen.add(key)
        if key in touched:
            continue
        if key[0] == sizes[0]:
            (read if key in stored else absent).add(key)
        elif key in stored and not is_stale(key):  # a coarse tile
            read.add(key)
        else:
            built.add(key)
            pending.extend(tiles.children(key, sizes))
    return read, sorted(built), absent


def newest_rows(rows: pa.Table, keys: Sequence[str], event: str) -> pa.Table:
    """Each entity's row with the greatest ``event`` (the rows are unique in keys and
    event time)."""
    if rows.num_rows == 0:
        return rows
    grouped = rows.group_by(list(keys)).aggregate([(event, "max")])
    newest = grouped.rename_columns([*keys, "__newest"])
    joined = rows.join(newest, list(keys))
    kept = joined.filter(pc.equal(joined.column(event), joined.column("__newest")))
    return kept.drop_columns(["__newest"]).select(rows.column_names)
