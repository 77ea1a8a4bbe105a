"""The parity check's decisions, without I/O: keys, sampling, which entities a race
may have touched, value equality, the status written, and when a check is due."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from featurekube import parity
from featurekube.online import keys
from featurekube_operator import parity as checks

UTC = dt.UTC
S = 1_000_000
ITEM = parity.Item("driver_id:i:1", event_time=100 * S, created_time=101 * S)
CALM = {"asked_from": 1_000 * S, "asked_to": 1_001 * S, "ttl": None, "settle": 60 * S}


@pytest.mark.parametrize(
    ("types", "values"),
    [
        ({"driver_id": "int64"}, {"driver_id": -7}),
        ({"zone": "string", "driver_id": "int64"}, {"driver_id": 7, "zone": "SF/N:x%"}),
        ({"name": "string"}, {"name": ""}),
    ],
)
def test_an_online_key_decodes_to_the_join_keys_it_encodes(
    types: dict[str, str], values: dict[str, object]
) -> None:
    encoded = keys.encode_entity_key(types, values)
    assert parity.decode_entity_key(types, encoded) == values


def test_a_key_of_other_join_keys_is_refused_naming_them() -> None:
    with pytest.raises(ValueError, match=r"driver_id \(int64\)"):
        parity.decode_entity_key({"driver_id": "int64"}, "driver_id:s:7")


def test_the_windows_item_and_foreign_items_are_not_entities() -> None:
    assert parity.item_from_attributes({"entity_key": {"S": "#windows"}}) is None
    assert parity.item_from_attributes({"entity_key": {"S": "driver_id:i:1"}}) is None
    item = parity.item_from_attributes(
        {
            "entity_key": {"S": "driver_id:i:1"},
            "event_time": {"N": "5"},
            "created_time": {"N": "6"},
            "latest_event_time": {"N": "4"},
        }
    )
    assert item == parity.Item("driver_id:i:1", 5, 6, 4)
    assert item.ttl_from == 4


def test_the_sample_is_bounded_distinct_and_random() -> None:
    keys_ = [f"k{i}" for i in range(1000)] * 2
    first = parity.choose_sample(keys_, 100, seed=1)
    assert len(first) == len(set(first)) == 100
    assert first != parity.choose_sample(keys_, 100, seed=2)
    assert parity.choose_sample(["b", "a"], 100, seed=1) == ["a", "b"]


def test_a_calm_entity_is_compared() -> None:
    assert parity.skip_reason(ITEM, ITEM, (), **CALM) is None  # type: ignore[arg-type]


def test_an_item_replaced_or_gone_while_the_check_ran_is_left_out() -> None:
    rewritten = parity.Item(ITEM.key, ITEM.event_time, ITEM.created_time + 1)  # type: ignore[operator]
    assert parity.skip_reason(ITEM, rewritten, (), **CALM) == "changed"  # type: ignore[arg-type]
    assert parity.skip_reason(ITEM, None, (), **CALM) == "changed"  # type: ignore[arg-type]


def test_an_item_of_a_pending_window_is_left_out_whichever_side_saw_the_window() -> None:
    window = (90 * S, 110 * S)
    assert parity.skip_reason(ITEM, ITEM, (window,), **CALM) == "pending"  # type: ignore[arg-type]
    # Half-open: a window ending at the event time does not hold it.
    assert parity.skip_reason(ITEM, ITEM, ((0, 100 * S),), **CALM) is None  # type: ignore[arg-type]


def test_a_value_written_within_the_settle_time_is_left_out() -> None:
    fresh = parity.Item(ITEM.key, 100 * S, created_time=990 * S)
    assert parity.skip_reason(fresh, fresh, (), **CALM) == "recent"  # type: ignore[arg-type]
    ahead = parity.Item(ITEM.key, 2_000 * S, created_time=100 * S)  # a future event time
    assert parity.skip_reason(ahead, ahead, (), **CALM) == "recent"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ttl_seconds", "reason"),
    [(900, "ttl"), (961, "ttl"), (962, None), (839, None), (840, "ttl"), (1_000, None)],
)
def test_a_value_whose_ttl_runs_out_around_the_request_is_left_out(
    ttl_seconds: int, reason: str | None
) -> None:
    # Valid from 100 s for ttl; the request is answered between 1,000 s and 1,001 s,
    # with 60 s of settle either side.
    calm = {**CALM, "ttl": ttl_seconds * S}
    assert parity.skip_reason(ITEM, ITEM, (), **calm) == reason  # type: ignore[arg-type]


def test_the_ttl_of_an_aggregation_counts_from_the_entitys_latest_event() -> None:
    aggregate = parity.Item(ITEM.key, 500 * S, created_time=500 * S, latest_event_time=100 * S)
    calm = {**CALM, "ttl": 900 * S}
    assert parity.skip_reason(aggregate, aggregate, (), **calm) == "ttl"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value_type", "online", "offline", "equal"),
    [
        ("int64", 2**62 + 1, 2**62 + 1, True),
        ("int64", 2**62 + 1, 2**62, False),
        ("int64", 1, True, False),
        ("string", "a", "a", True),
        ("string", "a", "A", False),
        ("bool", False, False, True),
        ("bool", False, None, False),
        ("float64", 0.1 + 0.2, 0.30000000000000004, True),
        ("float64", 0.1 + 0.2, 0.3, False),
        ("float64", math.nan, math.nan, True),
        ("float64", -0.0, 0.0, True),
        ("float64", math.inf, math.inf, True),
        ("float64", None, None, True),
        ("float64_array", [1.0, math.nan], [1.0, math.nan], True),
        ("float64_array", [1.0], [1.0, 2.0], False),
        (
            "timestamp",
            dt.datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            dt.datetime(2026, 1, 1, 0, 0, 0, 1),
            True,
        ),
        (
            "timestamp",
            dt.datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            dt.datetime(2026, 1, 1, tzinfo=UTC),
            False,
        ),
    ],
)
def test_values_are_equal_exactly_by_their_type(
    value_type: str, online: object, offline: object, equal: bool
) -> None:
    assert parity.values_equal(value_type, online, offline) is equal


def test_a_mismatch_names_feature_and_entity_and_both_values() -> None:
    found = parity.compare_entity(
        {"driver_id": 7},
        {"rating": "float64", "trips": "int64"},
        {"rating": 4.5, "trips": 3},
        {"rating": 4.25, "trips": 3},
    )
    assert [m.to_status() for m in found] == [
        {"feature": "rating", "entity": '{"driver_id": 7}', "online": "4.5", "offline": "4.25"}
    ]
    (missing,) = parity.compare_entity({"driver_id": 7}, {"trips": "int64"}, {"trips": 3}, {})
    assert missing.to_status() == {"feature": "trips", "entity": '{"driver_id": 7}', "online": "3"}


def test_the_status_keeps_eight_examples_and_the_rate_of_values() -> None:
    comparison = parity.Comparison()
    for entity in range(20):
        mismatch = parity.Mismatch("f", f'{{"id": {entity}}}', "1", "2")
        comparison.add(4, [mismatch] if entity % 2 else [])
    status = parity.summarize(comparison, dt.datetime(2026, 1, 1, tzinfo=UTC))
    assert status["checkedAt"] == "2026-01-01T00:00:00Z"
    assert (status["entities"], status["values"], status["mismatches"]) == (20, 80, 10)
    assert status["mismatchRate"] == 10 / 80
    assert len(status["examples"]) == parity.EXAMPLES
    empty = parity.summarize(parity.Comparison(), dt.datetime(2026, 1, 1, tzinfo=UTC))
    assert (empty["mismatchRate"], "examples" in empty) == (0.0, False)


def _service(parity_spec: dict[str, object], checked_at: str | None) -> dict[str, object]:
    return {
        "metadata": {
            "name": "eta-model",
            "namespace": "rides",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"monitoring": {"parity": parity_spec}},
        "status": {"parity": {"checkedAt": checked_at}} if checked_at else {},
    }


def test_a_check_is_due_an_interval_and_a_jitter_after_the_last() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    body = _service({"interval": "1h"}, "2026-01-01T00:00:00Z")
    assert not checks.is_due(body, start + dt.timedelta(minutes=59))
    assert checks.is_due(body, start + dt.timedelta(minutes=67))
    never = _service({"interval": "1h"}, None)
    assert checks.is_due(never, start + dt.timedelta(minutes=7)), "a tenth of an hour at most"
    assert not checks.is_due(_service({"enabled": False}, None), start + dt.timedelta(days=1))


def test_the_jitter_spreads_services_over_a_tenth_of_the_interval() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    hour = dt.timedelta(hours=1)
    due = {parity.due_at(start, start, hour, f"rides/model-{i}") for i in range(50)}
    assert len(due) > 40
    assert all(start + hour <= d <= start + hour + hour / 10 for d in due)


def test_the_operator_reads_the_switch_and_limits_of_the_check() -> None:
    from featurekube_operator.settings import OperatorSettings

    settings = OperatorSettings.from_env(
        {
            "FEATUREKUBE_PARITY_ENABLED": "false",
            "FEATUREKUBE_PARITY_MAX_CONCURRENT": "4",
            "FEATUREKUBE_PARITY_TIMEOUT_SECONDS": "30",
            "FEATUREKUBE_PARITY_CA_FILE": "/etc/featurekube/parity-ca/ca.crt",
        }
    )
    assert (settings.parity_enabled, settings.parity_max_concurrent) == (False, 4)
    assert settings.parity_timeout_seconds == 30.0
    assert settings.parity_ca_file == "/etc/featurekube/parity-ca/ca.crt"
    assert OperatorSettings.from_env({"FEATUREKUBE_PARITY_ENABLED": "true"}).parity_enabled
    assert OperatorSettings.from_env({}).parity_settle_seconds == 60.0
