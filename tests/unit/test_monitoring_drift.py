"""Statistics and drift without stores: the quantile definition, the bins, the PSI,
DuckDB's statistics against the definitions, and the report's ``drift`` field."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import statistics
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from featurekube.materialize import report
from featurekube.monitoring import drift, profiling, stats
from featurekube.spec import v1alpha1

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)


# -- the definitions ---------------------------------------------------------------------


def test_nearest_rank_is_exact_where_floating_point_is_not() -> None:
    # 0.55 · 100 is 55.000000000000007 in floating point: ceil would give rank 56.
    assert math.ceil(0.55 * 100) == 56
    assert stats.nearest_rank(100, 55) == 55
    for n in range(1, 400):
        for percent in stats.PERCENTS:
            exact = max(1, math.ceil(percent * n / 100 - 1e-9))
            assert stats.nearest_rank(n, percent) == exact
            # What the engines compute from the probe level gives the same rank.
            level = stats.PROBE_LEVELS[stats.PERCENTS.index(percent)]
            assert max(1, math.ceil(level * n)) == exact


def test_quantiles_are_values_of_the_data_by_nearest_rank() -> None:
    values = [5, 1, None, 4, 2, 3, 6, 7]
    q = stats.quantiles_of(values)
    assert q is not None and len(q) == 21
    assert q[0] == 1 and q[-1] == 7
    assert q[10] == 4  # p50 of 7 values: rank 4
    assert q[5] == 2  # p25: rank ceil(1.75) = 2
    assert stats.quantiles_of([None, None]) is None
    with_nan, without = stats.quantiles_of([float("nan"), 1.0]), stats.quantiles_of([1.0])
    assert with_nan is not None and without is not None
    assert math.isnan(with_nan[-1]) and without[-1] == 1.0  # NaN sorts above every number


def test_top_values_rank_by_count_then_value_and_keep_twenty() -> None:
    counts = {f"v{i:02d}": 1 for i in range(30)} | {"z": 9, "a": 9}
    top = stats.rank_top_values(counts)
    assert len(top) == stats.TOP_VALUES
    assert top[:3] == [("a", 9), ("z", 9), ("v00", 1)]


def test_numeric_bins_are_closed_on_the_right() -> None:
    edges = drift.cut_points([1.0, 2.0, 2.0, float("nan"), None, 3.0])
    assert edges == (1.0, 2.0, 3.0)
    assert [drift.numeric_bin(v, edges) for v in (-math.inf, 1.0, 1.5, 3.0, 3.5, math.inf)] == [
        0,
        0,
        1,
        2,
        3,
        3,
    ]
    assert drift.numeric_bin(math.nan, edges) is None


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift() -> None:
    reference = [0.1] * 10
    assert drift.psi(reference, [100] * 10) == 0.0
    slight = drift.psi(reference, [90, 110] * 5)
    large = drift.psi(reference, [0, 0, 0, 0, 0, 100, 100, 100, 200, 500])
    assert slight is not None and large is not None
    assert 0 < slight < 0.1 < 0.2 < large
    assert drift.psi(reference, [0] * 10) is None
    # An empty bin counts as EPSILON: large, never infinite.
    empty = drift.psi([0.5, 0.5], [0, 10])
    assert empty is not None and math.isfinite(empty)
    expected = (drift.EPSILON - 0.5) * math.log(drift.EPSILON / 0.5) + 0.5 * math.log(2)
    assert empty == pytest.approx(expected)
    with pytest.raises(ValueError, match="3 counts for 2"):
        drift.psi([0.5, 0.5], [1, 2, 3])


def test_reference_keys_and_fingerprints() -> None:
    period = v1alpha1.DriftReference.model_validate(
        {"period": {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}}
    )
    key = drift.reference_key(period)
    assert key == "period:2026-01-01T00:00:00Z/2026-02-01T00:00:00Z"
    assert drift.fingerprint(key, {"a": "int64"}) != drift.fingerprint(key, {"a": "float64"})
    assert drift.fingerprint(key, {"a": "int64", "b": "string"}) == drift.fingerprint(
        key, {"b": "string", "a": "int64"}
    )
    other = drift.reference_key(v1alpha1.DriftReference.model_validate({"trainingPull": "m-1"}))
    assert other == "trainingPull:m-1"
    assert drift.fingerprint(other, {}) != drift.fingerprint(key, {})


# -- DuckDB's statistics against the definitions -------------------------------------------

COLUMNS = [
    ("x", "x", "float64"),
    ("i", "i", "int64"),
    ("s", "s", "string"),
    ("b", "b", "bool"),
    ("t", "t", "timestamp"),
]


def _table(rng: random.Random, n: int, shift: float = 0.0, letters: str = "abcde") -> pa.Table:
    return pa.table(
        {
            "x": [rng.gauss(shift, 1) if rng.random() > 0.05 else None for _ in range(n)],
            "i": [rng.randrange(0, 1000) + int(shift * 300) for _ in range(n)],
            "s": [rng.choice(letters) for _ in range(n)],
            "b": [rng.random() < 0.3 + shift / 4 for _ in range(n)],
            "t": pa.array([T0] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def _statistics(
    table: pa.Table, reference: drift.ReferenceProfile | None = None
) -> dict[str, stats.FeatureStatistics]:
    with duckdb.connect() as connection:
        connection.register("rows", table)
        found = profiling.window_statistics(connection, "rows", COLUMNS, reference)
    return {s.feature: s for s in found}


def _profile(table: pa.Table) -> drift.ReferenceProfile:
    with duckdb.connect() as connection:
        connection.register("rows", table)
        return profiling.profile(
            connection, "rows", COLUMNS, key="k", fingerprint="f", description="d", computed_at=T0
        )


@pytest.mark.parametrize("n", [1, 2, 7, 20, 100, 101, 180, 999])
def test_duckdb_statistics_follow_the_definitions(n: int) -> None:
    table = _table(random.Random(n), n)
    found = _statistics(table)
    for name in ("x", "i"):
        values = [v for v in table.column(name).to_pylist() if v is not None]
        s = found[name]
        assert (s.count, s.nulls) == (len(values), table.num_rows - len(values))
        assert s.quantiles == stats.quantiles_of(values)
        assert (s.min, s.max) == (min(values), max(values))
        assert s.mean == pytest.approx(sum(values) / len(values), rel=1e-12)
        if len(values) > 1:
            mean = sum(values) / len(values)
            variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
            assert s.stddev == pytest.approx(math.sqrt(variance), rel=1e-9, abs=1e-12)
        else:
            assert s.stddev is None
    letters: dict[str, int] = {}
    for v in table.column("s").to_pylist():
        letters[v] = letters.get(v, 0) + 1
    assert found["s"].top_values == stats.rank_top_values(letters)
    assert {v for v, _ in found["b"].top_values or ()} <= {"true", "false"}
    assert found["t"].quantiles is None and found["t"].top_values is None
    assert found["t"].count == n and found["s"].min is None


def test_a_reference_profile_bins_at_deciles_and_shares_sum_to_one() -> None:
    reference = _profile(_table(random.Random(1), 5000))
    x = reference.features["x"]
    assert x.kind == "numeric" and len(x.edges) == 9 and len(x.fractions) == 10
    assert all(f == pytest.approx(0.1, abs=0.002) for f in x.fractions)
    assert sum(x.fractions) == pytest.approx(1.0)
    s = reference.features["s"]
    assert s.kind == "categorical" and sorted(s.values) == list("abcde")
    assert s.fractions[-1] == 0.0  # no other value
    assert "t" not in reference.features  # timestamps get no drift


def test_psi_of_the_same_distribution_is_near_zero_and_of_a_shift_large() -> None:
    reference = _profile(_table(random.Random(1), 5000))
    same = _statistics(_table(random.Random(1), 5000), reference)
    alike = _statistics(_table(random.Random(2), 5000), reference)
    shifted = _statistics(_table(random.Random(3), 5000, shift=1.0, letters="aab"), reference)
    for name in ("x", "i", "s", "b"):
        assert same[name].psi == pytest.approx(0.0, abs=1e-12)
        little, large = alike[name].psi, shifted[name].psi
        assert little is not None and little < 0.02
        assert large is not None and large > 0.2
    assert same["t"].psi is None


def test_window_bins_count_exactly_as_the_pure_bins() -> None:
    rng = random.Random(4)
    reference = _profile(_table(rng, 1000))
    window = _table(rng, 777, shift=0.3)
    x = reference.features["x"]
    counts = [0] * len(x.fractions)
    for v in window.column("x").to_pylist():
        if v is not None:
            index = drift.numeric_bin(v, x.edges)
            assert index is not None
            counts[index] += 1
    assert _statistics(window, reference)["x"].psi == drift.psi(x.fractions, counts)


# -- the report --------------------------------------------------------------------------


def test_the_report_carries_drift_and_notes_and_trims_drift_last() -> None:
    result = report.MaterializationReport(
        view="FeatureView rides/trips", start=T0, end=T0 + dt.timedelta(hours=1), published=True
    )
    assert result.to_json()["drift"] is None and result.to_json()["notes"] == []
    result.drift = {"rating": 0.123456, "trips": 0.0}
    result.notes.append("drift not computed: a reason")
    doc = result.to_json()
    assert doc["drift"] == {"rating": 0.1235, "trips": 0.0}
    assert doc["notes"] == ["drift not computed: a reason"]

    result.drift = {f"feature_{i:03d}": i / 1000 for i in range(256)}
    result.features = {f"feature_{i:03d}": report.FeatureStats(i, 0.0, 1.0) for i in range(256)}
    message = json.loads(result.to_termination_message())
    assert len(result.to_termination_message().encode()) <= report.TERMINATION_MESSAGE_LIMIT
    assert message["features"] is None and message["truncated"] is True
    assert message["driftTruncated"] is True
    kept = message["drift"]
    assert 0 < len(kept) < 256
    assert min(kept.values()) >= max(v for k, v in result.drift.items() if k not in kept)
    assert message["rows"] == {"read": 0, "offline": 0, "online": 0}


def test_a_trimmed_report_keeps_every_violated_check_before_any_drift() -> None:
    result = report.MaterializationReport(
        view="FeatureView rides/trips", start=T0, end=T0 + dt.timedelta(hours=1), published=True
    )
    result.drift = {f"feature_{i:03d}": i / 1000 for i in range(256)}
    checks = [report.Check(f"feature_{i:03d}", "max", "Warn", bound=1.0) for i in range(20)]
    result.violations = [report.Violation(check, rows=3) for check in checks]

    message = json.loads(result.to_termination_message())

    assert [v["feature"] for v in message["violations"]] == [c.feature for c in checks]
    assert all(v["rows"] == 3 and "message" not in v for v in message["violations"])
    assert message["driftTruncated"] is True and len(message["drift"]) < 256


def test_a_training_pull_reference_needs_a_dns_label_for_a_name() -> None:
    from featurekube import errors
    from featurekube.monitoring import references

    for name in ("Eta_Model", "-eta", "x" * 64, ""):
        with pytest.raises(errors.DefinitionsError, match="expected a DNS label"):
            references.save_training_reference(
                name, pa.table({"x": [1]}), [("x", "x", "int64")], "s3://lake/offline/v1"
            )


def test_means_and_deviations_do_not_depend_on_the_order_of_the_values() -> None:
    rng = random.Random(5)
    values = [rng.uniform(-1e6, 1e6) * 10 ** rng.randrange(-8, 8) for _ in range(5000)]
    shuffled = values[:]
    rng.shuffle(shuffled)
    assert profiling.exact_moments(pa.array(values)) == profiling.exact_moments(pa.array(shuffled))
    mean, deviation = profiling.exact_moments(pa.array(values))
    assert mean == pytest.approx(math.fsum(values) / len(values), rel=1e-12)
    assert deviation == pytest.approx(statistics.stdev(values), rel=1e-12)
    assert profiling.exact_moments(pa.array([], pa.float64())) == (None, None)
    assert profiling.exact_moments(pa.array([2.0])) == (2.0, None)
    nan_mean, nan_deviation = profiling.exact_moments(pa.array([1.0, math.nan]))
    assert math.isnan(nan_mean or 0.0) and math.isnan(nan_deviation or 0.0)
    assert profiling.exact_moments(pa.array([1.0, math.inf]))[0] == math.inf
    table = pa.table({"x": pa.array(values)})
    with duckdb.connect() as connection:
        connection.register("rows", table)
        (found,) = profiling.window_statistics(
            connection, "rows", [("x", "x", "float64")], values=table
        )
    assert (found.mean, found.stddev) == (mean, deviation)


def test_statistics_from_sorted_columns_are_duckdbs_quantiles_and_the_exact_moments() -> None:
    # The python engine sorts each numeric column once for its mean, deviation and
    # quantiles; they must be what DuckDB's quantile_disc and exact_moments give.
    rng = random.Random(11)
    special = [math.nan, math.inf, -math.inf, 1.5, None]
    with duckdb.connect() as connection:
        for trial in range(30):
            n = rng.choice([1, 2, 19, 20, 21, 101, rng.randrange(1, 2000)])
            if trial % 3 == 0:
                type_ = "int64"
                values = [rng.randrange(-(10**18), 10**18) for _ in range(n)]
                data = pa.array(values, pa.int64())
            else:
                type_ = "float64"
                mixed = [
                    rng.choice(special) if rng.random() < 0.1 else rng.uniform(-9, 9)
                    for _ in range(n)
                ]
                finite = [v for v in mixed if v is None or math.isfinite(v)]
                data = pa.array(mixed if trial % 3 == 2 else finite, pa.float64())
            # In chunks, as a column fetched from DuckDB comes.
            cut = rng.randrange(0, n + 1)
            table = pa.table({"x": pa.chunked_array([data.slice(0, cut), data.slice(cut)])})
            connection.register("rows", table)
            (sorted_,) = profiling.window_statistics(
                connection, "rows", [("x", "x", type_)], values=table
            )
            (duck,) = profiling.window_statistics(connection, "rows", [("x", "x", type_)])
            connection.unregister("rows")
            expected = (duck.count, duck.nulls, duck.min, duck.max, duck.quantiles)
            found = (sorted_.count, sorted_.nulls, sorted_.min, sorted_.max, sorted_.quantiles)
            assert _nan_safe(found) == _nan_safe(expected), (trial, type_, n)
            moments = profiling.exact_moments(data)
            assert _nan_safe((sorted_.mean, sorted_.stddev)) == _nan_safe(moments)


def _nan_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list | tuple):
        return [_nan_safe(v) for v in value]
    return value
