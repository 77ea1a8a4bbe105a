"""The python engine's read-once plumbing (featurekube.materialize.spill): a bounded
hand-over of batches between threads, and a local file of them."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurekube.materialize import spill

SCHEMA = pa.schema([("k", pa.int64()), ("v", pa.float64())])


def _batch(start: int, rows: int = 3) -> pa.RecordBatch:
    keys = list(range(start, start + rows))
    return pa.RecordBatch.from_arrays(
        [pa.array(keys, pa.int64()), pa.array([k / 2 for k in keys])], schema=SCHEMA
    )


def test_a_feed_hands_every_batch_over_in_order_and_never_holds_more_than_its_depth() -> None:
    feed = spill.Feed(depth=2)
    received: list[int] = []
    consumer = threading.Thread(
        target=lambda: received.extend(b.column("k")[0].as_py() for b in feed)
    )
    assert feed.put(_batch(0)) and feed.put(_batch(3))  # as many as the depth, unconsumed
    consumer.start()
    for start in range(6, 30, 3):
        assert feed.put(_batch(start))
        assert feed._queue.qsize() <= 2
    feed.close()
    consumer.join(timeout=10)
    assert received == list(range(0, 30, 3))
    assert feed.taken


def test_a_feed_drops_batches_once_its_consumer_stopped_instead_of_blocking() -> None:
    feed = spill.Feed(depth=1)
    feed_iter = iter(feed)
    feed.put(_batch(0))
    taken = next(feed_iter)
    assert taken.num_rows == 3
    feed_iter.close()  # the consumer gives up (its write failed)
    assert not feed.put(_batch(3))
    assert not feed.put(_batch(6))  # would block forever on a full queue otherwise
    feed.close()


def test_a_feed_is_iterated_once_and_has_a_depth_of_at_least_one() -> None:
    feed = spill.Feed()
    iterator = iter(feed)
    feed.close()
    assert list(iterator) == []
    with pytest.raises(RuntimeError, match="only once"):
        list(feed)
    with pytest.raises(ValueError, match="at least 1"):
        spill.Feed(depth=0)


def test_a_spill_keeps_every_batch_in_order_one_row_group_each(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    with spill.Spill(path, SCHEMA) as out:
        for start in (0, 3, 6):
            out.write(_batch(start))
    assert out.rows == 9
    read = pq.ParquetFile(path)
    assert read.metadata.num_row_groups == 3
    assert read.read().column("k").to_pylist() == list(range(9))


def test_a_spill_file_reads_back_in_batches_of_at_most_the_size_asked(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    with spill.Spill(path, SCHEMA) as out:
        for start in range(0, 30, 3):
            out.write(_batch(start))

    batches = list(spill.read(path, 4))

    assert max(b.num_rows for b in batches) <= 4
    assert pa.Table.from_batches(batches).column("k").to_pylist() == list(range(30))
