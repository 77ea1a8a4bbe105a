"""Finding rows that may tie on (keys, event time) while a window streams past
(featurekube.materialize.ties), and the hash the python engine feeds it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurekube.materialize import plan as planning
from featurekube.materialize import python_job, ties
from featurekube.spec import v1alpha1
from featurekube.writer import rows as row_codec

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _hashes(count: int, seed: int) -> Any:
    return np.random.default_rng(seed).integers(0, 2**63, count, dtype=np.uint64)


@pytest.mark.parametrize("slots", [1, 64, 1 << 12, 1 << 20])
def test_every_repeated_hash_is_a_suspect_within_a_batch_and_across_batches(slots: int) -> None:
    hashes = _hashes(5_000, 1)
    hashes[4_000] = hashes[100]  # across batches
    hashes[8] = hashes[7]  # within one
    found = ties.TieFilter(slots)
    for start in range(0, len(hashes), 333):
        found.add(hashes[start : start + 333])
    suspects = found.suspects()
    assert suspects is not None
    assert {int(hashes[100]), int(hashes[7])} <= {int(h) for h in suspects}


def test_distinct_hashes_in_a_large_table_are_rarely_suspects() -> None:
    found = ties.TieFilter(1 << 20)
    found.add(_hashes(10_000, 2))
    suspects = found.suspects()
    assert suspects is not None and len(suspects) < 200  # about n²/2m = 48 by chance
    empty = ties.TieFilter()
    empty.add(np.zeros(0, np.uint64))
    assert empty.suspects() is not None and len(empty.suspects()) == 0  # type: ignore[arg-type]


def test_too_many_suspects_give_up_rather_than_grow() -> None:
    found = ties.TieFilter(1, max_suspects=10)
    found.add(_hashes(20, 3))
    assert found.suspects() is None
    found.add(_hashes(5, 4))
    assert found.suspects() is None


def test_slots_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        ties.TieFilter(1000)


def _plan() -> planning.MaterializationPlan:
    view = v1alpha1.FeatureView.model_validate(
        {
            "metadata": {"name": "trips", "namespace": "rides"},
            "spec": {
                "owner": "team@example.com",
                "entities": [
                    {"name": "driver_id", "type": "int64"},
                    {"name": "city", "type": "string"},
                ],
                "source": {"batch": {"path": "s3://bucket/raw/trips/"}},
                "features": [{"name": "rate", "type": "float64"}],
            },
        }
    )
    return planning.plan_materialization(view, T0, T0 + dt.timedelta(days=1))


def test_a_rows_tie_hash_is_the_same_from_a_batch_and_from_the_spilled_file(
    tmp_path: Path,
) -> None:
    # The filter takes hashes of the batches as they are read; the check afterwards
    # hashes the spilled file's rows: ties would be missed if the two differed.
    plan = _plan()
    schema = row_codec.row_schema(plan.spec)
    micros = [0, 1, 86_399_999_999, 5_000_000]
    batch = pa.RecordBatch.from_pylist(
        [
            {
                "driver_id": index - 2,
                "city": ["zürich", "", "a b", "zürich"][index],
                "rate": 0.5,
                "event_timestamp": T0 + dt.timedelta(microseconds=m),
                "created_timestamp": T0,
            }
            for index, m in enumerate(micros)
        ],
        schema=schema,
    )
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_batches([batch]), path)
    with duckdb.connect() as connection:
        from_batch = python_job._tie_hashes(connection, batch, plan)
        spilled = f"read_parquet('{path}')"
        query = f"SELECT {python_job._tie_hash(plan)} FROM {spilled}"
        from_file = [h for (h,) in connection.execute(query).fetchall()]
    assert [int(h) for h in from_batch] == from_file
    assert len(set(from_file)) == len(micros)
