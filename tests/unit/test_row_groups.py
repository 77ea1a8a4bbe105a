"""Reading a dataset one parquet row group at a time (featurekube.materialize.row_groups)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from featurekube.materialize import row_groups


def _dataset(root: Path) -> pads.Dataset:
    """Two hive partitions of two files each, each file of three row groups of 10 rows."""
    for day in (1, 2):
        for part in range(2):
            first = 100 * day + 30 * part
            table = pa.table(
                {
                    "k": pa.array(range(first, first + 30), pa.int64()),
                    "v": pa.array([float(i) for i in range(30)]),
                    "unread": pa.array(["x"] * 30),
                }
            )
            folder = root / f"day={day}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, folder / f"part-{part}.parquet", row_group_size=10)
    return pads.dataset(root, format="parquet", partitioning="hive")


def test_the_rows_are_the_scanners_in_file_and_row_group_order(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path)
    wanted = (pc.field("k") >= 105) & (pc.field("k") < 245) & (pc.field("v") != 7.0)

    reader = row_groups.read(dataset, ["day", "k", "v"], wanted, batch_size=4)
    batches = list(reader)

    assert reader.schema == pa.schema(
        [dataset.schema.field("day"), pa.field("k", pa.int64()), pa.field("v", pa.float64())]
    )
    assert max(b.num_rows for b in batches) <= 4
    expected = dataset.to_table(columns=["day", "k", "v"], filter=wanted)
    assert pa.Table.from_batches(batches, reader.schema).equals(expected)
    assert pa.Table.from_batches(batches).column("k").to_pylist() == sorted(
        expected.column("k").to_pylist()
    )


def test_without_a_filter_every_row_is_read(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path)

    table = row_groups.read(dataset, ["k"], None, batch_size=1000).read_all()

    assert table.num_rows == 120


def test_nothing_is_read_before_it_is_asked_for(tmp_path: Path) -> None:
    """Row groups are decoded as the consumer takes them: a file removed after the first
    batch was taken has not been read ahead, and reading on fails on it."""
    dataset = _dataset(tmp_path)
    reader = row_groups.read(dataset, ["k"], None, batch_size=10)

    assert reader.read_next_batch().column("k")[0].as_py() == 100
    (tmp_path / "day=2" / "part-1.parquet").unlink()

    with pytest.raises(FileNotFoundError):
        reader.read_all()
