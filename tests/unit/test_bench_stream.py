"""The streaming benchmark's arithmetic: when a probe counts as visible, when lag counts
as bounded, what the producer sends, and which settings it takes."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from benchmarks import _streaming, bench_stream


def test_a_probe_is_visible_once_its_event_time_or_a_newer_one_is_read() -> None:
    probes = _streaming.Probes()
    probes.sent(3, 100.0)
    probes.sent(3, 101.0)
    probes.observed(3, 99.0, 100.5)  # an older value: nothing yet
    probes.observed(3, None, 100.6)  # no item: nothing yet
    probes.observed(4, 101.0, 100.7)  # another entity's item
    assert probes.seen == []
    probes.observed(3, 101.0, 102.5)  # the newer probe's value stands for both
    assert probes.seen == [(100.0, 2.5), (101.0, 1.5)]
    probes.observed(3, 101.0, 103.0)  # seen once only
    assert probes.latencies(0, 200) == [2.5, 1.5]


def test_only_probes_sent_in_the_interval_count_and_unseen_ones_at_their_age() -> None:
    probes = _streaming.Probes()
    for at in (10.0, 20.0, 30.0):
        probes.sent(1, at)
    probes.observed(1, 20.0, 21.0)
    assert probes.latencies(15, 40) == [1.0]
    assert probes.latencies(15, 40, now=35.0) == [1.0, 5.0]
    assert probes.unseen(15, 40) == 1
    assert probes.unseen(0, 15) == 0


def test_lag_that_saws_between_micro_batches_is_bounded() -> None:
    samples = [(t / 4, (t % 8) * 250) for t in range(80)]  # up for 2 s, then a batch
    verdict = _streaming.judge_lag(samples, rate=1000)
    assert verdict.bounded
    assert verdict.growth_per_second == 0


def test_lag_whose_troughs_rise_faster_than_a_tenth_of_the_rate_is_unbounded() -> None:
    samples = [(t / 4, (t % 8) * 250 + 30 * t) for t in range(80)]  # troughs +120/s
    verdict = _streaming.judge_lag(samples, rate=1000)
    assert not verdict.bounded
    assert verdict.growth_per_second == pytest.approx(120, rel=0.05)
    slow = [(t / 4, (t % 8) * 250 + 10 * t) for t in range(80)]  # +40/s: keeps up
    assert _streaming.judge_lag(slow, rate=1000).bounded


def test_lag_that_stays_far_behind_is_unbounded_even_when_flat() -> None:
    samples = [(float(t), 100_000 - 1000 * (t % 2)) for t in range(20)]  # 100 s behind
    verdict = _streaming.judge_lag(samples, rate=1000)
    assert not verdict.bounded
    assert verdict.growth_per_second == 0
    assert _streaming.judge_lag([(t, lag - 50_000) for t, lag in samples], rate=1000).bounded


def test_lag_that_never_falls_in_a_third_of_the_interval_is_unbounded() -> None:
    # One micro-batch in the middle: the consumer may be anywhere, and is far from fresh.
    samples = [(t / 4, 40 * t if t < 40 else 40 * (t - 40)) for t in range(80)]
    verdict = _streaming.judge_lag(samples, rate=1000)
    assert not verdict.bounded
    assert verdict.growth_per_second is None


def test_lag_cannot_be_judged_from_too_few_samples_or_one_instant() -> None:
    with pytest.raises(ValueError, match="3 samples"):
        _streaming.judge_lag([(0.0, 1), (1.0, 2)], rate=10)
    with pytest.raises(ValueError, match="same time"):
        _streaming.judge_lag([(5.0, 1)] * 3, rate=10)


def test_an_event_carries_its_send_time_as_its_event_time() -> None:
    sent = dt.datetime(2026, 12, 3, 21, 30, 5, 123456, tzinfo=dt.UTC)
    micros = int(sent.timestamp()) * 1_000_000 + sent.microsecond
    event = json.loads(_streaming.render_event(42, 7, micros))
    assert event["driver_id"] == 42
    assert event["trips"] == 7
    assert isinstance(event["fare"], float)
    assert dt.datetime.fromisoformat(event["event_timestamp"]) == sent


def test_settings_default_to_the_full_ramp_and_both_subjects() -> None:
    settings = bench_stream.settings_from({})
    assert settings.rates[0] == 500
    assert set(bench_stream.LATENCY_RATES) <= set(settings.rates)
    assert settings.subjects == ("featurekube", "feast")
    shorter = bench_stream.settings_from(
        {
            "FEATUREKUBE_BENCH_STREAM_RATES": "10000, 1000",
            "FEATUREKUBE_BENCH_STREAM_SECONDS": "5",
            "FEATUREKUBE_BENCH_STREAM_SUBJECTS": "feast",
        }
    )
    assert (shorter.rates, shorter.seconds, shorter.subjects) == ((1000, 10000), 5.0, ("feast",))
    reversed_ = bench_stream.settings_from(
        {"FEATUREKUBE_BENCH_STREAM_SUBJECTS": "feast,featurekube,feast"}
    )
    assert reversed_.subjects == ("feast", "featurekube")  # run in this order, once each


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RATES", "fast", "not a list of integers"),
        ("RATES", "0,1000", "1 to 1000000"),
        ("SECONDS", "1", r"not in \[3"),
        ("WARMUP", "soon", "not a number"),
        ("SUBJECTS", "tecton", "featurekube and/or feast"),
    ],
)
def test_a_bad_setting_is_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"FEATUREKUBE_BENCH_STREAM_{name}=.*{message}"):
        bench_stream.settings_from({f"FEATUREKUBE_BENCH_STREAM_{name}": value})


def _step(rate: int, *, bounded: bool, kept: bool = True) -> bench_stream._Step:
    seconds = 10.0
    return bench_stream._Step(
        rate=rate,
        window=(0.0, seconds),
        sent=int(rate * seconds * (1.0 if kept else 0.5)),
        elapsed=seconds,
        latencies=[1.0],
        unseen=0,
        lag=_streaming.LagVerdict(bounded, 0.0 if bounded else float(rate), 0),
        batch_seconds=[1.0],
    )


def test_the_ramp_goes_on_past_one_stall_and_ends_at_the_second_in_a_row() -> None:
    ramp = [_step(500, bounded=True), _step(1000, bounded=False)]
    assert not bench_stream._ends_ramp(ramp)
    ramp.append(_step(2000, bounded=True))
    assert not bench_stream._ends_ramp(ramp)
    ramp += [_step(5000, bounded=False), _step(10000, bounded=False)]
    assert bench_stream._ends_ramp(ramp)
    assert bench_stream._sustained(ramp) == (
        2000,
        "lag grew without bound at 1000/s, 5000/s, 10000/s",
    )


def test_a_rate_the_producer_cannot_keep_ends_the_ramp_with_a_lower_bound() -> None:
    ramp = [_step(1000, bounded=True), _step(50000, bounded=True, kept=False)]
    assert bench_stream._ends_ramp(ramp)
    assert bench_stream._sustained(ramp) == (
        1000,
        "the producer could not keep 50000/s (a lower bound)",
    )
    assert bench_stream._sustained([_step(500, bounded=False)])[0] is None
    assert bench_stream._sustained([_step(500, bounded=True)]) == (
        500,
        "every rate was held (a lower bound)",
    )
