"""A streaming aggregation's pure parts: which events are too late for the watermark,
which boundaries and intervals a micro-batch touches, where its tiles come from, and
tiles of several micro-batches merged into exactly the tiles of all their events."""

from __future__ import annotations

import datetime as dt
import random
from fractions import Fraction

# pyarrow's first conversion of Python values imports pandas, seconds on a busy machine:
# done here, at collection, rather than within a test's time limit.
import pandas  # type: ignore[import-untyped]  # noqa: F401
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from test_tile_merge import EVERY_FUNCTION, HOUR, MINUTE, T0, _events, _table, _view

from featurekube.materialize import moments, plan, stream_windows, tiles

S = 10 * MINUTE


def test_an_event_more_than_the_allowed_lateness_behind_the_watermark_is_late() -> None:
    watermark = 100 * MINUTE
    events = [watermark - 31 * MINUTE, watermark - 30 * MINUTE, watermark + MINUTE, 0]

    assert stream_windows.late(events, watermark, 30 * MINUTE).tolist() == [
        True,
        False,
        False,
        True,
    ]
    assert not stream_windows.late(events, None, 30 * MINUTE).any()


def test_the_stream_owns_the_boundaries_after_the_last_one_before_its_start() -> None:
    assert stream_windows.split_boundary(60 * MINUTE, S) == 50 * MINUTE
    assert stream_windows.split_boundary(65 * MINUTE, S) == 60 * MINUTE
    # No watermark yet: the stream stands at the split; then at ceil(watermark).
    span = stream_windows.boundaries(None, 61 * MINUTE, 50 * MINUTE, S)
    assert (span.before, span.after) == (50 * MINUTE, 70 * MINUTE)
    # Never before the split, whatever the watermark.
    assert stream_windows.boundaries(10 * MINUTE, 20 * MINUTE, 50 * MINUTE, S).after == 50 * MINUTE


def test_intervals_leaving_a_window_at_each_boundary_the_stream_passes() -> None:
    span = stream_windows.StreamBoundaries(before=60 * MINUTE, after=80 * MINUTE)

    leaving = stream_windows.leaving_tiles([30 * MINUTE, HOUR], S, span)

    # Boundaries 70 and 80: the 30m window drops the intervals ending at 40 and 50,
    # the hour those ending at 10 and 20.
    assert sorted(e // MINUTE for e in leaving) == [10, 20, 40, 50]
    assert stream_windows.leaving_tiles([HOUR], S, stream_windows.StreamBoundaries(80, 80)) == set()


def test_a_coarse_tile_holding_a_touched_interval_is_built_again() -> None:
    sizes = tiles.tile_sizes(S)
    hour = (HOUR, 2 * HOUR)
    touched = {(S, 2 * HOUR - S)}
    needed = {hour, (HOUR, HOUR), (S, 3 * HOUR)}
    stored = {hour, (HOUR, HOUR), (S, 2 * HOUR - 2 * S)}

    read, built, absent = stream_windows.read_and_build(needed, touched, stored, sizes)

    # The stale hour is built from its intervals: the touched one is merged, one is
    # stored, the others are not (no events, or not computed yet); the earlier hour
    # is read as it is.
    assert built == [hour]
    assert read == {(HOUR, HOUR), (S, 2 * HOUR - 2 * S)}
    assert absent == {(S, HOUR + k * S) for k in (1, 2, 3, 6)} | {(S, 3 * HOUR)}


def _keys(table: pa.Table) -> list[tuple[int, int, int]]:
    return sorted(
        zip(
            table.column("driver_id").to_pylist(),
            table.column(tiles.TILE_SIZE).to_pylist(),
            table.column(tiles.TILE_END).to_pylist(),
            strict=True,
        )
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tiles_of_micro_batches_merged_are_the_tiles_of_all_their_events(seed: int) -> None:
    rng = random.Random(seed)
    view = _view(EVERY_FUNCTION)
    start = T0 + (2 * 24 + 3) * dt.timedelta(hours=1)
    agg = plan.plan_materialization(view, start, start + dt.timedelta(hours=1)).aggregation
    assert agg is not None
    lo = plan.to_micros(start)
    events = _table(_events(rng, lo, lo + 3 * HOUR, 300, drivers=3))
    layout = tiles.layout_for(agg, ["driver_id"], events.schema)
    assert layout is not None
    # Events in arrival order, split into micro-batches; equal (event, created) times
    # across batches included.
    order = list(range(events.num_rows))
    rng.shuffle(order)
    shuffled = events.take(pa.array(order))
    merged = layout.schema().empty_table()
    at = 0
    while at < shuffled.num_rows:
        size = rng.randrange(1, 60)
        part = tiles.build_tiles(shuffled.slice(at, size), layout)
        merged = tiles.merge_rows(pa.concat_tables([merged, part]), layout)
        at += size

    whole = tiles.build_tiles(events, layout)

    assert _keys(merged) == _keys(whole)
    ordered = [(k, "ascending") for k in ("driver_id", tiles.TILE_SIZE, tiles.TILE_END)]
    a, b = merged.sort_by(ordered), whole.sort_by(ordered)
    for name in layout.schema().names:
        if name.endswith("#moments"):
            # The same exact sums, whatever scale each text was written at.
            left = [_moments(t) for t in a.column(name).to_pylist()]
            assert left == [_moments(t) for t in b.column(name).to_pylist()], name
        elif name.endswith("#distinct"):
            assert [sorted(v, key=str) for v in a.column(name).to_pylist()] == [
                sorted(v, key=str) for v in b.column(name).to_pylist()
            ], name
        else:
            assert a.column(name).equals(b.column(name)) or _same_nan(a, b, name), name


def _moments(text: str | None) -> tuple[Fraction, Fraction, bool, bool, bool] | None:
    """A tile's exact sums as numbers, whatever scale its text was written at."""
    if text is None:
        return None
    m = moments.Moments.from_text(text)
    scale = Fraction(2) ** m.e
    return m.s1 * scale, m.s2 * scale * scale, m.nan, m.pos_inf, m.neg_inf


def _same_nan(a: pa.Table, b: pa.Table, name: str) -> bool:
    x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
    return all(p == q or (p != p and q != q) for p, q in zip(x, y, strict=True))


def test_each_entitys_newest_row() -> None:
    rows = pa.table(
        {
            "driver_id": [1, 1, 2, 2, 2],
            "event_timestamp": [10, 20, 5, 30, 7],
            "n": [1, 2, 3, 4, 5],
        }
    )

    newest = stream_windows.newest_rows(rows, ["driver_id"], "event_timestamp")

    assert sorted(newest.to_pylist(), key=lambda r: r["driver_id"]) == [
        {"driver_id": 1, "event_timestamp": 20, "n": 2},
        {"driver_id": 2, "event_timestamp": 30, "n": 4},
    ]
    assert pc.sum(newest.column("n")).as_py() == 6


def _intervals(keys: set[tiles.TileKey], sizes: tuple[int, ...]) -> set[int]:
    """The ends of the smallest tiles that ``keys`` consist of."""
    out: set[int] = set()
    pending = list(keys)
    while pending:
        key = pending.pop()
        if key[0] == sizes[0]:
            out.add(key[1])
        else:
            pending.extend(tiles.children(key, sizes))
    return out


@pytest.mark.parametrize("since_minutes", [0, 7, 10])
def test_the_history_the_stream_waits_for_is_what_its_windows_read_and_the_batch_stores(
    since_minutes: int,
) -> None:
    view = _view(EVERY_FUNCTION)
    since = T0 + dt.timedelta(days=3, minutes=since_minutes)
    agg = plan.plan_materialization(view, since, since + dt.timedelta(seconds=1)).aggregation
    assert agg is not None
    sizes = tiles.tile_sizes(S)
    split = stream_windows.split_boundary(plan.to_micros(since), S)
    history_start = plan.to_micros(T0)

    history = stream_windows.history_range(split, S, agg.longest_window, history_start)

    assert history is not None
    wanted = set(range(history[0], history[1] + 1, S))
    # The stream's windows at its first boundaries read exactly these intervals before
    # the split, however far its first micro-batch moves it.
    for last in (split + S, split + 7 * HOUR, split + 3 * 24 * HOUR):
        rows = stream_windows.row_plan(agg.steps, S, split + S, last)
        read = _intervals(tiles.needed_tiles(rows, sizes), sizes)
        assert {end for end in read if end <= split} == wanted, last
    # The batch windows from the history's start store every one of them: their first
    # window its windows' reach back, the later ones their own intervals.
    first = stream_windows.ceil_boundary(history_start, S)
    batch = plan.AggregationPlan(
        interval=S, first_boundary=first, last_boundary=split, steps=agg.steps
    )
    stored = tiles.resolve(tiles.needed_tiles(batch, sizes), (first, split), set(), sizes)
    assert wanted <= set(stored.from_source)


def test_no_history_is_waited_for_when_the_batch_windows_own_no_boundary() -> None:
    split = 100 * S
    longest = 2 * HOUR

    # The batch windows start at or before the split: they own it, and store its reach.
    assert stream_windows.history_range(split, S, longest, split) == (split - longest + S, split)
    assert stream_windows.history_range(split, S, longest, split - S + 1) is not None
    # They start after it (the stream starts where the view's history does): none.
    assert stream_windows.history_range(split, S, longest, split + 1) is None
    assert stream_windows.history_range(split, S, longest, split + S) is None


def test_the_missing_history_is_the_intervals_without_a_marker() -> None:
    history = (10 * S, 20 * S)
    every = {(S, k * S) for k in range(10, 21)}

    assert stream_windows.missing_history(history, every, S) is None
    assert stream_windows.missing_history(history, set(), S) == stream_windows.HistoryGap(
        11, 10 * S, 20 * S
    )
    # A coarse tile's marker is not an interval's: the stream builds coarse tiles
    # holding its own intervals from their parts.
    partial = (every - {(S, 12 * S), (S, 15 * S)}) | {(HOUR, 18 * S)}
    assert stream_windows.missing_history(history, partial, S) == stream_windows.HistoryGap(
        2, 12 * S, 15 * S
    )
    assert stream_windows.missing_history(None, set(), S) is None
