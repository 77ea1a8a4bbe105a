"""The online writer's items, built a column at a time, against a row-by-row build."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from featurekube import writer
from featurekube.online import keys, layout, values
from featurekube.spec import v1alpha1
from featurekube.writer import online as online_writer
from featurekube.writer import rows as row_codec

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
KEY_TYPES = {"driver_id": "int64", "zone": "string"}
FEATURES = {"speed": "float64", "status": "string", "trips": "int64", "online": "bool"}


def _view(ttl: str | None) -> v1alpha1.FeatureView:
    spec: dict[str, Any] = {
        "owner": "dispatch@example.com",
        "entities": [{"name": "driver_id", "type": "int64"}, {"name": "zone", "type": "string"}],
        "source": {"push": {}},
        "features": [{"name": n, "type": t} for n, t in FEATURES.items()],
    }
    if ttl:
        spec["ttl"] = ttl
    return v1alpha1.FeatureView.model_validate(
        {"metadata": {"name": "live", "namespace": "rides"}, "spec": spec}
    )


def _writer(ttl: str | None = "90s") -> writer.OnlineWriter:
    # The client is never called: building items does no I/O.
    return writer.OnlineWriter("live", _view(ttl), client=object())


def _expected(row: dict[str, Any], created: dt.datetime, ttl_seconds: int | None) -> dict[str, Any]:
    micros = values.to_attribute("timestamp", row["event_timestamp"])
    assert micros is not None
    event = int(micros["N"])
    made = values.to_attribute("timestamp", created)
    assert made is not None
    item: dict[str, Any] = {
        layout.ENTITY_KEY: {"S": keys.encode_entity_key(KEY_TYPES, row)},
        layout.EVENT_TIME: {"N": str(event)},
        layout.CREATED_TIME: made,
    }
    if ttl_seconds is not None:
        item[layout.EXPIRES_AT] = {"N": str(math.ceil((event + ttl_seconds * 10**6) / 10**6))}
    for name, value_type in FEATURES.items():
        attribute = values.to_attribute(value_type, row[name])
        if attribute is not None:
            item[name] = attribute
    return item


@pytest.mark.parametrize("ttl", ["90s", None])
def test_items_built_a_column_at_a_time_equal_those_built_row_by_row(ttl: str | None) -> None:
    rows = [
        {
            "driver_id": i - 2,
            "zone": ["SF/N", "", "ü x", "a%b"][i % 4],
            "speed": [0.1, None, math.nan, -math.inf, 1e300, -0.0][i % 6],
            "status": None if i % 5 == 0 else f"s{i}",
            "trips": None if i % 3 == 0 else i * 10**12,
            "online": [True, False, None][i % 3],
            "event_timestamp": T0 + dt.timedelta(microseconds=i * 333_333),
        }
        for i in range(60)
    ]
    online = _writer(ttl)
    (batch,) = row_codec.iter_batches(online.spec, rows, created_default=T0, label="live")

    entries, oversized = online._build(batch)

    assert oversized == []

    assert [e.item for e in entries] == [_expected(r, T0, 90 if ttl else None) for r in rows]
    assert [e.key for e in entries] == [e.item[layout.ENTITY_KEY]["S"] for e in entries]


def test_only_an_item_over_the_limit_is_refused() -> None:
    online = _writer()
    base = {"driver_id": 1, "zone": "z", "speed": 1.0, "trips": 1, "online": True}
    empty = {**base, "status": "", "event_timestamp": T0}
    (batch,) = row_codec.iter_batches(online.spec, [empty], created_default=T0, label="live")
    (entry,), _ = online._build(batch)
    room = online_writer.MAX_ITEM_BYTES - online_writer.item_size(entry.item)

    fits = {**empty, "status": "x" * room}
    (batch,) = row_codec.iter_batches(online.spec, [fits], created_default=T0, label="live")
    (entry,), _ = online._build(batch)
    assert online_writer.item_size(entry.item) == online_writer.MAX_ITEM_BYTES

    over = {**empty, "driver_id": 2, "status": "é" * (room // 2 + 1)}  # two bytes each
    with pytest.raises(writer.ItemTooLargeError, match="driver_id:i:2/zone:s:z"):
        online._entries(row_codec.iter_batches(online.spec, [fits, over], created_default=T0))
    # A row a newer one of its entity replaces is never written: its size does not count.
    newer = {**fits, "driver_id": 2, "event_timestamp": T0 + dt.timedelta(seconds=1)}
    rows = row_codec.iter_batches(online.spec, [over, newer], created_default=T0)
    kept = online._entries(rows)["driver_id:i:2/zone:s:z"]
    assert kept.item["status"] == {"S": "x" * room}
