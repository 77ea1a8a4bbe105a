"""A streaming aggregation's micro-batches against a real tile table (delta-rs on local
disk; no network, no JVM): events arriving out of order in batches of any size, the too-late ones
left out, give at every boundary the point-in-time values the aggregation kernel
computes from the applied events; a batch run again changes nothing; the stream waits
for the history before its split, and a micro-batch that finds it gone writes nothing."""

from __future__ import annotations

import datetime as dt
import math
import random
from pathlib import Path
from typing import Any

# pyarrow's first conversion of Python values imports pandas: done at collection.
import pandas  # type: ignore[import-untyped]  # noqa: F401
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from test_tile_merge import EVERY_FUNCTION, HOUR, MINUTE, T0, _events, _table, _view

from featurekube.materialize import aggregate, plan, stream_aggregation, stream_windows, tiles
from featurekube.materialize.errors import MaterializeError

NAMES = [a["name"] for a in EVERY_FUNCTION]


def _point_in_time(rows: list[dict[str, Any]], t: int) -> dict[str, Any] | None:
    """The row with the greatest (event time, created time) at or before ``t``."""
    best = None
    for row in rows:
        if row["event"] <= t and (best is None or row["order"] > best["order"]):
            best = row
    return best


def _sorted(rows: pa.Table) -> str:
    """The rows in one order, as text (a NaN equal to a NaN)."""
    order = [("driver_id", "ascending"), ("event_timestamp", "ascending")]
    return repr(rows.sort_by(order).to_pylist())


@pytest.mark.parametrize("seed", [5])
def test_micro_batches_out_of_order_give_the_kernels_values_at_every_boundary(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    view = _view(EVERY_FUNCTION)
    since = T0 + dt.timedelta(days=3)
    batch = plan.plan_materialization(view, since, since + dt.timedelta(seconds=1))
    lo = plan.to_micros(since)
    events = _table(_events(rng, lo, lo + 4 * HOUR, 200, drivers=3))
    # Each event arrives up to 45 minutes after its time; 30 are allowed.
    times = events.column(plan.EVENT_MICROS).to_pylist()
    arrival = [e + rng.randrange(0, 45 * MINUTE) for e in times]
    events = events.append_column("__arrival", pa.array(arrival))
    events = events.sort_by([("__arrival", "ascending")]).drop_columns(["__arrival"])
    aggregator = stream_aggregation.StreamAggregator(
        batch, since, dt.timedelta(minutes=30), offline_uri=str(tmp_path / "offline")
    )
    written: list[pa.Table] = []
    applied: list[pa.Table] = []
    dropped = 0
    batch_id, at = 0, 0
    while at < events.num_rows:
        size = rng.randrange(5, 40)
        chunk = events.slice(at, size)
        cut = aggregator.late_before(batch_id)
        if cut is not None:
            on_time = pc.greater_equal(chunk.column(plan.EVENT_MICROS), plan.to_micros(cut))
            dropped += chunk.num_rows - pc.sum(on_time.cast(pa.int64())).as_py()
            chunk = chunk.filter(on_time)
        now = dt.datetime.now(dt.UTC)
        out = aggregator.apply(chunk, batch_id, "app", now)
        if batch_id == 3:  # run again after a crash: the same rows, nothing merged twice
            again = aggregator.apply(chunk, batch_id, "app", now)
            assert again.replayed and not out.replayed
            assert _sorted(again.rows) == _sorted(out.rows)
        applied.append(chunk)
        written.append(out.rows)
        at += size
        batch_id += 1
    assert dropped > 0, "no event came too late: the test tests no lateness"

    kept = pa.concat_tables(applied)
    rows = pa.concat_tables(written).to_pylist()
    agg = plan.plan_materialization(view, since, since + dt.timedelta(hours=8)).aggregation
    assert agg is not None
    last = max(plan.to_micros(r["event_timestamp"]) for r in rows)
    compared = 0
    for driver in sorted(set(kept.column("driver_id").to_pylist())):
        mine = kept.filter(pc.equal(kept.column("driver_id"), driver))
        expected = [
            r | {"event": r["event_timestamp"], "order": (r["event_timestamp"], 0)}
            for r in aggregate.aggregate_entity(mine, agg).to_pylist()
        ]
        streamed = [
            r
            | {
                "event": plan.to_micros(r["event_timestamp"]),
                "order": (
                    plan.to_micros(r["event_timestamp"]),
                    plan.to_micros(r["created_timestamp"]),
                ),
            }
            for r in rows
            if r["driver_id"] == driver
        ]
        for t in range(lo - lo % (10 * MINUTE), last + 1, 10 * MINUTE):
            want, got = _point_in_time(expected, t), _point_in_time(streamed, t)
            assert (want is None) == (got is None), (driver, t)
            if want is None or got is None:
                continue
            compared += 1
            for name in NAMES:
                a, b = want[name], got[name]
                assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), (
                    driver,
                    t,
                    name,
                )
            assert plan.to_micros(got["latest_event_timestamp"]) == want["latest_event_timestamp"]
    assert compared > 30


def test_the_stream_waits_for_the_history_before_its_split_and_never_writes_without_it(
    tmp_path: Path,
) -> None:
    view = _view(EVERY_FUNCTION)
    since = T0 + dt.timedelta(days=3)
    batch = plan.plan_materialization(view, since, since + dt.timedelta(seconds=1))
    aggregator = stream_aggregation.StreamAggregator(
        batch,
        since,
        dt.timedelta(minutes=30),
        offline_uri=str(tmp_path / "offline"),
        history_start=T0,
    )
    assert aggregator.history is not None
    first, last = aggregator.history
    interval = aggregator.interval
    events = _table(_events(random.Random(3), last + 1, last + HOUR, 20, drivers=2))
    layout = tiles.layout_for(aggregator.aggregation, ["driver_id"], events.schema)
    assert layout is not None

    def store(ends: list[int]) -> None:  # what a batch window stores: markers of intervals
        aggregator.store.replace(
            layout.schema().empty_table(),
            layout,
            computed=[(interval, end) for end in ends],
            cleared=[],
        )

    # No tile table yet: every interval the windows reach back to is missing.
    every = list(range(first, last + 1, interval))
    assert aggregator.history_gap() == stream_windows.HistoryGap(len(every), first, last)
    store(every[:-3])
    reports: list[stream_windows.HistoryGap | None] = []
    pauses: list[float] = []

    def sleep(seconds: float) -> None:  # the batch windows reach the stream's start
        pauses.append(seconds)
        store(every[-3:])

    aggregator.wait_for_history(2.0, reports.append, sleep)

    assert reports == [stream_windows.HistoryGap(3, every[-3], last), None]
    assert pauses == [2.0]
    with pytest.raises(ValueError, match="between 0 and 300 seconds"):
        aggregator.wait_for_history(0, reports.append, sleep)

    # The tile table loses an interval of the history (replaced meanwhile): the next
    # micro-batch fails before it merges or writes anything.
    aggregator.store.replace(
        layout.schema().empty_table(),
        layout,
        computed=[],
        cleared=[(interval, last - interval, last - interval)],
    )
    with pytest.raises(MaterializeError, match="no longer in the tile table"):
        aggregator.apply(events, 0, "app", dt.datetime.now(dt.UTC))
    assert aggregator.store.transaction_version("app-tiles") is None


def test_a_stream_that_starts_with_its_views_history_waits_for_nothing(tmp_path: Path) -> None:
    view = _view(EVERY_FUNCTION)
    since = T0 + dt.timedelta(days=3)
    batch = plan.plan_materialization(view, since, since + dt.timedelta(seconds=1))

    aggregator = stream_aggregation.StreamAggregator(
        batch, since, dt.timedelta(minutes=30), offline_uri=str(tmp_path / "offline")
    )

    # No startTime and no batch window before the stream: no interval before the split
    # is ever stored, and the view counts the stream's events alone.
    assert aggregator.history is None and aggregator.history_gap() is None
    reports: list[stream_windows.HistoryGap | None] = []
    aggregator.wait_for_history(1.0, reports.append, lambda _: None)
    assert reports == [None]


def test_an_idle_advance_writes_the_values_windows_emptied_by_the_time_passed(
    tmp_path: Path,
) -> None:
    view = _view(EVERY_FUNCTION)
    since = T0 + dt.timedelta(days=3)
    batch = plan.plan_materialization(view, since, since + dt.timedelta(seconds=1))
    allowed = dt.timedelta(minutes=30)
    aggregator = stream_aggregation.StreamAggregator(
        batch, since, allowed, offline_uri=str(tmp_path / "offline")
    )
    lo = plan.to_micros(since)
    events = _table(_events(random.Random(7), lo, lo + HOUR, 40, drivers=3))
    now = dt.datetime.now(dt.UTC)
    assert aggregator.advance(since + dt.timedelta(hours=5)) is None  # nothing applied yet
    first = aggregator.apply(events, 0, "app", now)
    watermark = first.watermark
    assert watermark is not None

    # Not past a boundary yet: nothing.
    assert aggregator.advance(plan.from_micros(watermark) + allowed) is None
    # Idle for hours: the 30-minute and 1-hour windows empty, the others go on.
    moment = since + dt.timedelta(hours=5)
    idle = aggregator.advance(moment)

    assert idle is not None
    target = plan.to_micros(moment - allowed)
    assert idle.watermark == target and idle.boundary == -(-target // (10 * MINUTE)) * 10 * MINUTE
    agg = plan.plan_materialization(view, since, since + dt.timedelta(hours=8)).aggregation
    assert agg is not None
    rows = pa.concat_tables([first.rows, idle.rows]).to_pylist()
    compared = 0
    for driver in sorted(set(events.column("driver_id").to_pylist())):
        mine = events.filter(pc.equal(events.column("driver_id"), driver))
        expected = [
            r | {"event": r["event_timestamp"], "order": (r["event_timestamp"], 0)}
            for r in aggregate.aggregate_entity(mine, agg).to_pylist()
        ]
        streamed = [
            r
            | {
                "event": plan.to_micros(r["event_timestamp"]),
                "order": (
                    plan.to_micros(r["event_timestamp"]),
                    plan.to_micros(r["created_timestamp"]),
                ),
            }
            for r in rows
            if r["driver_id"] == driver
        ]
        for t in range(lo, idle.boundary + 1, 10 * MINUTE):
            want, got = _point_in_time(expected, t), _point_in_time(streamed, t)
            assert (want is None) == (got is None), (driver, t)
            if want is None or got is None:
                continue
            compared += 1
            assert {n: got[n] for n in NAMES} == {n: want[n] for n in NAMES} or any(
                isinstance(want[n], float) and math.isnan(want[n]) for n in NAMES
            ), (driver, t)
        newest = [r for r in idle.newest.to_pylist() if r["driver_id"] == driver]
        # Online: the value at the new boundary (from the last boundary it changed at).
        (online,) = newest
        assert plan.to_micros(online["event_timestamp"]) <= idle.boundary
        assert online["n_30m"] == 0  # the window emptied without an event
    assert compared > 30

    # Kept once written: the next micro-batch is judged by it, a batch run again by its
    # own watermark, and the same advance again moves nothing.
    aggregator.record_advance(target)
    assert aggregator.advance(moment) is None
    assert aggregator.watermark_before(1) == target
    assert aggregator.watermark_before(0) is None
    again = aggregator.apply(events, 0, "app", now)
    assert again.replayed and aggregator.watermark_before(1) == target
    reopened = stream_aggregation.StreamAggregator(
        batch, since, allowed, offline_uri=str(tmp_path / "offline")
    )
    assert reopened.watermark_before(1) == target

    # An advance between a batch's lateness check and its merge: the batch keeps the
    # watermark it was judged by (a run again judges alike) and stands at the advance.
    cut = reopened.late_before(1)
    assert cut == plan.from_micros(target) - allowed
    later = moment + dt.timedelta(hours=1)
    moved = reopened.advance(later)
    assert moved is not None and moved.watermark is not None
    reopened.record_advance(moved.watermark)
    late = _table(_events(random.Random(8), target - 20 * MINUTE, target, 5, drivers=3))
    out = reopened.apply(late, 1, "app", dt.datetime.now(dt.UTC))
    assert out.boundary == moved.boundary and out.watermark == moved.watermark
    # Online, each entity's row from the batch is at least as new as the advance's, so
    # the conditional write replaces what the advance wrote without the late events.
    advanced = {r["driver_id"]: r["event_timestamp"] for r in moved.newest.to_pylist()}
    for row in out.newest.to_pylist():
        assert row["event_timestamp"] >= advanced.get(row["driver_id"], row["event_timestamp"])
    assert reopened.watermark_before(1) == target  # a run again of batch 1
    assert reopened.watermark_before(2) == moved.watermark
