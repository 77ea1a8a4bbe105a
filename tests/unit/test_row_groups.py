"""Reading a dataset one parquet row group at a time (featurekube.materialize.row_groups)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import deltalake
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from featurekube.materialize import plan, python_job, row_groups
from featurekube.spec import v1alpha1


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


class _SlowFiles(pafs.FileSystemHandler):  # type: ignore[misc]  # untyped
    """The local filesystem, each file's opening taking ``delay`` seconds, as a request
    to an object store does; counts the openings under way at once."""

    def __init__(self, delay: float) -> None:
        self.local = pafs.LocalFileSystem()
        self.delay = delay
        self.lock = threading.Lock()
        self.open = self.most = 0

    def open_input_file(self, path: str) -> Any:
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
        try:
            time.sleep(self.delay)
            return self.local.open_input_file(path)
        finally:
            with self.lock:
                self.open -= 1

    def get_type_name(self) -> str:
        return "slow"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> Any:
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector: Any) -> Any:
        return self.local.get_file_info(selector)

    def open_input_stream(self, path: str) -> Any:
        return self.local.open_input_stream(path)

    def __getattr__(self, name: str) -> Any:  # writes: not used by a read
        raise NotImplementedError(name)

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = None
    delete_file = move = copy_file = open_output_stream = open_append_stream = None


def _windows(root: Path, files: _SlowFiles) -> pads.Dataset:
    """40 files of 10 rows each, as a source holding one file a window: which of them
    hold a window's rows is known only from their footers, each a request to the store."""
    for part in range(40):
        table = pa.table({"k": pa.array(range(10 * part, 10 * part + 10), pa.int64())})
        pq.write_table(table, root / f"part-{part:02d}.parquet")
    return pads.dataset(str(root), format="parquet", filesystem=pafs.PyFileSystem(files))


WINDOW = (pc.field("k") >= 195) & (pc.field("k") < 205)


def test_the_footers_of_many_files_are_fetched_side_by_side(tmp_path: Path) -> None:
    files = _SlowFiles(delay=0.02)
    dataset = _windows(tmp_path, files)

    table = row_groups.read(dataset, ["k"], WINDOW, batch_size=100).read_all()

    assert table.column("k").to_pylist() == list(range(195, 205))
    assert files.most > 1


def test_footers_fetched_ahead_serve_the_count_that_would_fetch_them_in_turn(
    tmp_path: Path,
) -> None:
    files = _SlowFiles(delay=0.02)
    dataset = _windows(tmp_path, files)

    row_groups.fetch_footers(dataset, WINDOW)
    assert files.most > 1
    opened: list[str] = []
    files.open_input_file = _counted(files.open_input_file, opened)  # type: ignore[method-assign]

    assert dataset.count_rows(filter=WINDOW) == 10
    assert len(opened) <= 2  # the two files whose rows straddle the window's edges


def _counted(open_: Any, opened: list[str]) -> Any:
    def counted(path: str) -> Any:
        opened.append(path)
        return open_(path)

    return counted


def test_work_ahead_keeps_the_order_and_its_window_and_stops_when_left() -> None:
    started: list[int] = []

    def task(item: int) -> int:
        started.append(item)
        time.sleep(0.001 * (item % 3))  # finished out of order
        return item * 10

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(row_groups._ahead(pool, task, range(20), 5)) == [i * 10 for i in range(20)]
        started.clear()
        taken = row_groups._ahead(pool, task, range(1000), 5)
        assert next(taken) == 0
        time.sleep(0.05)
        assert len(started) <= 1 + 5  # the one taken, and the window after it
        taken.close()
    assert len(started) <= 1 + 5


def test_a_delta_sources_window_opens_only_the_files_its_log_places_in_the_window(
    tmp_path: Path,
) -> None:
    """A Delta log keeps each file's least and greatest event time, so the python
    engine's count and read of a window open only the files whose times meet it, not
    one footer per file of the source as a parquet source needs."""
    days = 20
    first = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for day in range(days):
        moment = first + dt.timedelta(days=day)
        events = [moment + dt.timedelta(hours=hour) for hour in (1, 7, 13)]
        deltalake.write_deltalake(
            tmp_path,
            pa.table(
                {
                    "driver_id": pa.array([1, 2, 1], pa.int64()),
                    "event_timestamp": pa.array(events, pa.timestamp("us", tz="UTC")),
                    "trips": pa.array([day, day, day + 1], pa.int64()),
                }
            ),
            mode="append",
        )
    files = _SlowFiles(delay=0)
    opened: list[str] = []
    files.open_input_file = _counted(files.open_input_file, opened)  # type: ignore[method-assign]
    source = deltalake.DeltaTable(tmp_path).to_pyarrow_dataset(
        filesystem=pafs.SubTreeFileSystem(str(tmp_path), pafs.PyFileSystem(files))
    )
    view = v1alpha1.FeatureView.model_validate(
        {
            "metadata": {"name": "driver-trips", "namespace": "rides"},
            "spec": {
                "owner": "tests",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "source": {"batch": {"path": "s3://unread/raw/trips/", "format": "delta"}},
                "features": [{"name": "trips", "type": "int64"}],
            },
        }
    )
    start = first + dt.timedelta(days=7)
    end = start + dt.timedelta(days=1)

    window = plan.plan_materialization(view, start, end)
    assert python_job.count_input_rows(window, source=source) == 3
    assert len(set(opened)) == 1

    result = python_job.run(view, start, end, offline_uri=None, online_table=None, source=source)
    assert result.rows_read == 3
    assert len(set(opened)) == 1
