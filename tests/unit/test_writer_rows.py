"""Rows reaching the writers: streams pass through without being held."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pyarrow as pa

from featurekube.spec import v1alpha1
from featurekube.writer import rows as row_codec

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
SPEC = v1alpha1.FeatureViewSpec.model_validate(
    {
        "owner": "dispatch@example.com",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"push": {}},
        "features": [{"name": "speed", "type": "float64"}],
    }
)


def test_a_stream_of_batches_is_read_one_batch_at_a_time() -> None:
    pulled = 0

    def stream() -> Iterator[pa.RecordBatch]:
        nonlocal pulled
        for start in range(0, 50_000, 1_000):
            pulled += 1
            yield pa.record_batch(
                {
                    "driver_id": pa.array(range(start, start + 1_000), pa.int64()),
                    "speed": pa.array([1.5] * 1_000, pa.float64()),
                    "event_timestamp": pa.array([T0] * 1_000, pa.timestamp("us", "UTC")),
                }
            )

    batches = row_codec.iter_batches(SPEC, stream(), created_default=T0)

    first = next(batches)
    assert first.num_rows == 1_000 and pulled == 1  # nothing read ahead, nothing held
    assert sum(b.num_rows for b in batches) == 49_000 and pulled == 50


def test_dict_rows_are_made_into_batches_of_at_most_the_chunk_size() -> None:
    rows = ({"driver_id": i, "speed": 0.5, "event_timestamp": T0} for i in range(25_000))

    sizes = [b.num_rows for b in row_codec.iter_batches(SPEC, rows, created_default=T0)]

    assert sizes == [10_000, 10_000, 5_000]


def test_a_full_tie_keeps_the_row_of_greatest_values_in_declared_order_null_lowest() -> None:
    spec = v1alpha1.FeatureViewSpec.model_validate(
        {
            "owner": "a",
            "entities": [{"name": "driver_id", "type": "int64"}],
            "source": {"push": {}},
            "features": [{"name": "zone", "type": "string"}, {"name": "speed", "type": "float64"}],
        }
    )
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = pa.table(
        {
            "driver_id": [1, 1, 1, 2, 2, 3, 3],
            "zone": ["a", "b", "b", None, None, "x", "x"],
            "speed": [9.0, None, 1.0, None, 2.0, 1.0, 1.0],
            "event_timestamp": [at] * 5 + [at, at + dt.timedelta(seconds=1)],
        }
    )

    kept = row_codec.resolve_full_ties(spec, rows).to_pylist()

    # Driver 1: zone decides first ("b"), then speed (null lowest); driver 2: the
    # non-null speed; driver 3: two event times, no tie, both kept, in order.
    assert [(r["driver_id"], r["zone"], r["speed"]) for r in kept] == [
        (1, "b", 1.0),
        (2, None, 2.0),
        (3, "x", 1.0),
        (3, "x", 1.0),
    ]
    untied = rows.slice(5)
    assert row_codec.resolve_full_ties(spec, untied) is untied
