"""The materialization plan and the aggregation kernel, without Spark or stores.

The kernel is checked against a reference written the slow, obvious way: the value of
every aggregation and the latest event at every boundary, a row wherever they change.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import random
import statistics
from typing import Any

import pyarrow as pa
import pytest

from featurekube.materialize import aggregate, plan
from featurekube.materialize.errors import PlanError, TransformationError
from featurekube.spec import v1alpha1

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = 60_000_000


def _view(**spec: Any) -> v1alpha1.FeatureView:
    body: dict[str, Any] = {
        "owner": "team@example.com",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://bucket/raw/trips/"}},
    }
    body.update(spec)
    return v1alpha1.FeatureView.model_validate(
        {"metadata": {"name": "trips", "namespace": "rides"}, "spec": body}
    )


AGGREGATIONS = [
    {"name": "n_30m", "column": "trip_id", "function": "count", "window": "30m"},
    {"name": "riders_1h", "column": "rider_id", "function": "count_distinct", "window": "1h"},
    {"name": "fare_1h", "column": "fare", "function": "sum", "window": "1h", "type": "float64"},
    {"name": "mean_fare_30m", "column": "fare", "function": "mean", "window": "30m"},
    {"name": "sd_fare_1h", "column": "fare", "function": "stddev", "window": "1h"},
    {"name": "min_fare_1h", "column": "fare", "function": "min", "window": "1h", "type": "float64"},
    {"name": "max_zone_30m", "column": "zone", "function": "max", "window": "30m", "type": "int64"},
    {"name": "last_zone_1h", "column": "zone", "function": "last", "window": "1h", "type": "int64"},
    {
        "name": "trip_sum_1h",
        "column": "trip_id",
        "function": "sum",
        "window": "1h",
        "type": "int64",
    },
]


def _agg_view() -> v1alpha1.FeatureView:
    return _view(aggregationInterval="10m", aggregations=AGGREGATIONS)


# -- the plan ---------------------------------------------------------------------------


def test_plain_features_read_exactly_the_window() -> None:
    view = _view(
        source={"batch": {"path": "s3://bucket/raw/", "createdTimestampField": "created"}},
        features=[{"name": "rating", "type": "float64"}],
    )

    p = plan.plan_materialization(view, dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2))

    assert (p.read_start, p.read_end) == (T0, T0 + dt.timedelta(days=1))
    assert p.aggregation is None
    assert p.source_columns() == ["driver_id", "event_timestamp", "created", "rating"]
    assert p.label == "FeatureView rides/trips"


def test_an_aggregation_window_owns_the_boundaries_in_it_and_reads_back_one_window_more() -> None:
    start, end = T0 + dt.timedelta(minutes=5), T0 + dt.timedelta(hours=1)

    p = plan.plan_materialization(_agg_view(), start, end)

    assert p.aggregation is not None
    # Boundaries every 10 minutes: 00:10 ... 00:50 are in [00:05, 01:00); 01:00 is not.
    assert plan.from_micros(p.aggregation.first_boundary or 0) == T0 + dt.timedelta(minutes=10)
    assert plan.from_micros(p.aggregation.last_boundary or 0) == T0 + dt.timedelta(minutes=50)
    # Events after (00:10 - 10m - 1h) and up to 00:50, inclusive.
    assert p.read_start == T0 - dt.timedelta(hours=1) + dt.timedelta(microseconds=1)
    assert p.read_end == T0 + dt.timedelta(minutes=50, microseconds=1)


def test_a_window_between_two_boundaries_reads_nothing() -> None:
    p = plan.plan_materialization(
        _agg_view(), T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(minutes=9)
    )

    assert p.reads_nothing


def test_consecutive_windows_own_each_boundary_once() -> None:
    cuts = [T0 + dt.timedelta(minutes=m) for m in (0, 7, 10, 33, 60, 61, 120)]
    owned: list[int] = []
    for start, end in itertools.pairwise(cuts):
        agg = plan.plan_materialization(_agg_view(), start, end).aggregation
        assert agg is not None
        if agg.first_boundary is not None and agg.last_boundary is not None:
            owned += range(agg.first_boundary, agg.last_boundary + 1, agg.interval)

    whole = plan.plan_materialization(_agg_view(), cuts[0], cuts[-1]).aggregation
    assert whole is not None and whole.first_boundary is not None
    assert whole.last_boundary is not None
    assert owned == list(range(whole.first_boundary, whole.last_boundary + 1, whole.interval))


def test_a_push_source_has_nothing_to_materialize() -> None:
    view = _view(source={"push": {}}, features=[{"name": "speed", "type": "float64"}])

    with pytest.raises(PlanError, match="push source"):
        plan.plan_materialization(view, T0, T0 + dt.timedelta(hours=1))


def test_an_empty_window_is_refused() -> None:
    view = _view(features=[{"name": "speed", "type": "float64"}])

    with pytest.raises(PlanError, match="--start must be before --end"):
        plan.plan_materialization(view, T0, T0)


def test_column_checks_name_every_missing_and_mistyped_column() -> None:
    p = plan.plan_materialization(_agg_view(), T0, T0 + dt.timedelta(hours=1))

    problems = plan.check_columns(
        p,
        {
            "driver_id": "string",
            "event_timestamp": "timestamp_ntz",
            "trip_id": "string",  # counted: any type will do
            "rider_id": "bigint",
            "fare": "decimal(10,2)",
            "zone": "double",
        },
    )

    assert problems == [
        "column driver_id (join key): expected int64 (Spark bigint), found string",
        "column zone (aggregation max_zone_30m): expected int64 (Spark bigint), found double",
        "column zone (aggregation last_zone_1h): expected int64 (Spark bigint), found double",
        "column trip_id (aggregation trip_sum_1h): expected int64 (Spark bigint), found string",
    ]


def test_a_snapshot_document_gives_the_view_and_where_it_goes() -> None:
    body = {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": {"name": "trips", "namespace": "rides"},
        "spec": _view(features=[{"name": "speed", "type": "float64"}]).spec.to_yaml_dict(),
        "resolved": {"version": 3, "onlineTable": "t", "offlineUri": "s3://b/o/"},
    }

    view, resolved = plan.read_view_document(body)

    assert view.metadata.name == "trips"
    assert resolved == {"version": 3, "onlineTable": "t", "offlineUri": "s3://b/o/"}
    with pytest.raises(PlanError, match="expected a FeatureView"):
        plan.read_view_document({"kind": "FeatureService"})


# -- the kernel against a reference -------------------------------------------------------


def _events(rng: random.Random, start: int, end: int, n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        # Whole minutes make events land exactly on boundaries now and then.
        moment = rng.randrange(start, end) // MINUTE * MINUTE
        rows.append(
            {
                plan.EVENT_MICROS: moment,
                plan.CREATED_MICROS: moment + rng.choice([0, 0, MINUTE]),
                "trip_id": 100 + i,
                "rider_id": rng.choice([1, 2, 3, None]),
                "fare": rng.choice([round(rng.uniform(5, 40), 2), None, 0.1, 0.2]),
                "zone": rng.choice([1, 2, 3, 4]),
            }
        )
    return rows


def _reference_value(step: plan.AggregationStep, rows: list[dict[str, Any]], t: int) -> Any:
    frame = sorted(
        (
            r
            for r in rows
            if t - step.window < r[plan.EVENT_MICROS] <= t and r[step.column] is not None
        ),
        key=lambda r: (r[plan.EVENT_MICROS], r[plan.CREATED_MICROS], r[step.column]),
    )
    values = [r[step.column] for r in frame]
    if step.function == "count":
        return len(values)
    if step.function == "count_distinct":
        return len(set(values))
    if not values:
        return None
    exact = all(isinstance(v, int) for v in values)
    if step.function == "sum":
        return sum(values) if exact else math.fsum(values)
    if step.function == "mean":
        return sum(values) / len(values) if exact else math.fsum(values) / len(values)
    if step.function == "stddev":
        return statistics.stdev(values) if len(values) > 1 else None
    if step.function == "min":
        return min(values)
    if step.function == "max":
        return max(values)
    assert step.function == "last"
    return values[-1]


def _latest(rows: list[dict[str, Any]], t: int) -> int | None:
    return max((r[plan.EVENT_MICROS] for r in rows if r[plan.EVENT_MICROS] <= t), default=None)


def _reference(agg: plan.AggregationPlan, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert agg.first_boundary is not None and agg.last_boundary is not None
    out = []
    for t in range(agg.first_boundary, agg.last_boundary + 1, agg.interval):
        now = [_latest(rows, t), *(_reference_value(s, rows, t) for s in agg.steps)]
        before = [
            _latest(rows, t - agg.interval),
            *(_reference_value(s, rows, t - agg.interval) for s in agg.steps),
        ]
        if now != before:
            out.append(
                {"event_timestamp": t, "latest_event_timestamp": now[0]}
                | {s.name: v for s, v in zip(agg.steps, now[1:], strict=True)}
            )
    return out


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    schema = pa.schema(
        [
            (plan.EVENT_MICROS, pa.int64()),
            (plan.CREATED_MICROS, pa.int64()),
            ("trip_id", pa.int64()),
            ("rider_id", pa.int64()),
            ("fare", pa.float64()),
            ("zone", pa.int64()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _close(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [r["event_timestamp"] for r in actual] == [r["event_timestamp"] for r in expected]
    for got, want in zip(actual, expected, strict=True):
        for name, value in want.items():
            if isinstance(value, float):
                assert got[name] == pytest.approx(value, rel=1e-12), name
            else:
                assert got[name] == value, name


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_kernel_equals_the_reference_and_any_split_of_the_period(seed: int) -> None:
    rng = random.Random(seed)
    begin, end = T0, T0 + dt.timedelta(hours=4)
    rows = _events(rng, plan.to_micros(begin) - 90 * MINUTE, plan.to_micros(end), 60)
    rng.shuffle(rows)
    whole = plan.plan_materialization(_agg_view(), begin, end).aggregation
    assert whole is not None

    result = aggregate.aggregate_entity(_table(rows), whole).to_pylist()

    _close(result, _reference(whole, rows))
    pieces: list[dict[str, Any]] = []
    cuts = [begin, begin + dt.timedelta(minutes=25), begin + dt.timedelta(hours=2), end]
    for start, stop in itertools.pairwise(cuts):
        part = plan.plan_materialization(_agg_view(), start, stop)
        assert part.aggregation is not None
        lo, hi = plan.to_micros(part.read_start), plan.to_micros(part.read_end)
        window_rows = [r for r in rows if lo <= r[plan.EVENT_MICROS] < hi]
        pieces += aggregate.aggregate_entity(_table(window_rows), part.aggregation).to_pylist()
    assert pieces == result  # exactly, floats included


def test_an_emptied_window_gives_a_row_of_zero_counts_and_nulls() -> None:
    one = [
        {
            plan.EVENT_MICROS: plan.to_micros(T0) + 5 * MINUTE,
            plan.CREATED_MICROS: 0,
            "trip_id": 1,
            "rider_id": 1,
            "fare": 10.0,
            "zone": 2,
        }
    ]
    agg = plan.plan_materialization(_agg_view(), T0, T0 + dt.timedelta(hours=3)).aggregation
    assert agg is not None

    rows = aggregate.aggregate_entity(_table(one), agg).to_pylist()

    times = [plan.from_micros(r["event_timestamp"]) - T0 for r in rows]
    # Enters at 00:10; leaves the 30m windows at 00:40 and the 1h ones at 01:10.
    assert times == [dt.timedelta(minutes=m) for m in (10, 40, 70)]
    assert rows[0]["n_30m"] == 1 and rows[0]["last_zone_1h"] == 2
    assert rows[1]["n_30m"] == 0 and rows[1]["mean_fare_30m"] is None
    assert rows[1]["fare_1h"] == 10.0
    assert {r["latest_event_timestamp"] for r in rows} == {one[0][plan.EVENT_MICROS]}
    assert rows[2] == {
        "event_timestamp": rows[2]["event_timestamp"],
        "latest_event_timestamp": one[0][plan.EVENT_MICROS],
    } | {
        "n_30m": 0,
        "riders_1h": 0,
        "fare_1h": None,
        "mean_fare_30m": None,
        "sd_fare_1h": None,
        "min_fare_1h": None,
        "max_zone_30m": None,
        "last_zone_1h": None,
        "trip_sum_1h": None,
    }


def test_an_event_on_a_boundary_counts_at_that_boundary() -> None:
    at = plan.to_micros(T0 + dt.timedelta(minutes=20))
    one = [
        {
            plan.EVENT_MICROS: at,
            plan.CREATED_MICROS: at,
            "trip_id": 1,
            "rider_id": 1,
            "fare": 1.0,
            "zone": 1,
        }
    ]
    agg = plan.plan_materialization(_agg_view(), T0, T0 + dt.timedelta(hours=1)).aggregation
    assert agg is not None

    rows = aggregate.aggregate_entity(_table(one), agg).to_pylist()

    assert rows[0]["event_timestamp"] == at and rows[0]["n_30m"] == 1
    # (t - 30m, t]: still in at 00:40, gone at 00:50.
    assert rows[1]["event_timestamp"] == at + 30 * MINUTE and rows[1]["n_30m"] == 0


# -- the entry point and the report, without Spark ------------------------------------------


def test_the_entry_point_fails_before_spark_on_a_push_view(tmp_path, capsys) -> None:
    import json

    import yaml

    from featurekube.materialize import __main__ as entry

    view = _view(source={"push": {}}, features=[{"name": "speed", "type": "float64"}])
    spec = tmp_path / "featureview.yaml"
    spec.write_text(yaml.safe_dump(view.model_dump(mode="json", by_alias=True, exclude_none=True)))
    arguments = [
        "--spec",
        str(spec),
        "--start",
        "2026-01-01T00:00:00Z",
        "--end",
        "2026-01-01T01:00:00Z",
        "--offline-uri",
        "s3://bucket/o",
        "--online-table",
        "t",
    ]

    status = entry.main(arguments)

    out, err = capsys.readouterr()
    assert status == 1
    assert "push source" in err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["published"] is False and "push source" in report["error"]
    # The operator reads the error's class to tell a failure no retry heals.
    assert report["errorType"] == "MaterializePlanError"
    with pytest.raises(SystemExit):
        entry.main([*arguments[:4], "--end", "yesterday", *arguments[6:]])


def test_the_entry_point_takes_only_run_ids_for_a_pending_record(capsys) -> None:
    from featurekube.materialize import __main__ as entry

    window = ["--spec", "v.yaml", "--start", "2026-01-01", "--end", "2026-01-02"]
    stores = ["--offline-uri", "s3://bucket/o", "--online-table", "t"]
    parsed = entry.build_parser().parse_args(
        [*window, *stores, "--pending-run", "a" * 32, "--pending-superseded", "b" * 32]
    )
    assert (parsed.pending_run, parsed.pending_superseded) == ("a" * 32, "b" * 32)

    for refused in ("A" * 32, "a" * 31, "a" * 33, "../" + "a" * 29, ""):
        with pytest.raises(SystemExit):
            entry.main([*window, *stores, "--pending-run", refused])
        assert "not a run id" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        entry.main([*window, *stores, "--pending-superseded", "b" * 32])
    assert "--pending-superseded needs --pending-run" in capsys.readouterr().err


def test_the_process_start_is_read_from_the_kernel_and_is_not_in_the_future() -> None:
    import time

    from featurekube.materialize import __main__ as entry

    started = entry.process_started()
    # This interpreter began after the machine booted, and well before this test: it
    # has imported pytest and this module since (the fallback, "now", fails this).
    assert time.monotonic() - time.clock_gettime(time.CLOCK_BOOTTIME) <= started
    assert started < time.monotonic() - 0.1


def test_the_report_says_what_was_checked_and_found() -> None:
    from featurekube.materialize import report

    view = _view(
        features=[{"name": "rating", "type": "float64"}, {"name": "tier", "type": "string"}],
        expectations=[
            {"feature": "rating", "notNull": True, "min": 1, "max": 5, "onViolation": "Fail"},
            {"feature": "tier", "allowedValues": ["gold", "silver"]},
        ],
    )
    checks = report.plan_checks(view.spec)
    result = report.MaterializationReport(
        view="FeatureView rides/trips",
        start=T0,
        end=T0 + dt.timedelta(hours=1),
        rows_read=3,
        rows_offline=2,
        rows_online=1,
        features={"rating": report.FeatureStats(1, 0.5, math.nan)},
        violations=report.evaluate_checks(checks, [1, 1, 0, 0]),
    )

    assert [(c.feature, c.kind) for c in checks] == [
        ("rating", "notNull"),
        ("rating", "min"),
        ("rating", "max"),
        ("tier", "allowedValues"),
    ]
    with pytest.raises(ValueError):
        report.evaluate_checks(checks, [0])
    assert [v.check.kind for v in result.failed_checks] == ["notNull", "min"]
    doc = result.to_json()
    assert doc["rows"] == {"read": 3, "offline": 2, "online": 1}
    assert doc["window"] == {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"}
    assert doc["features"]["rating"] == {"nulls": 1, "min": 0.5, "max": "NaN"}
    assert doc["violations"][0]["message"] == "1 row of rating are null"


def test_the_termination_message_fits_kubernetes_and_keeps_the_rows() -> None:
    from featurekube.materialize import report

    result = report.MaterializationReport(
        view="FeatureView rides/trips",
        start=T0,
        end=T0 + dt.timedelta(hours=1),
        rows_read=10_000_000,
        rows_offline=9_999_000,
        rows_online=1_000_000,
        features={f"feature_{i:03d}": report.FeatureStats(i, 0.0, 1e9) for i in range(300)},
        published=True,
        error="x" * 20_000,
    )
    small = report.MaterializationReport(view="v", start=T0, end=T0, rows_read=1)

    message = result.to_termination_message()

    assert len(message.encode()) <= report.TERMINATION_MESSAGE_LIMIT
    assert report.read_termination_message(message) == {
        "read": 10_000_000,
        "offline": 9_999_000,
        "online": 1_000_000,
    }
    assert json.loads(message)["truncated"] is True
    assert json.loads(small.to_termination_message()) == small.to_json()
    assert report.read_termination_message("Killed") is None
    assert report.read_termination_message('{"rows": {"read": 1}}') is None
    assert report.read_termination_message(None) is None


def test_the_entry_point_writes_its_report_where_the_environment_says(
    tmp_path, capsys, monkeypatch
) -> None:
    import yaml

    from featurekube.materialize import __main__ as entry
    from featurekube.materialize import report

    view = _view(source={"push": {}}, features=[{"name": "speed", "type": "float64"}])
    spec = tmp_path / "featureview.yaml"
    spec.write_text(yaml.safe_dump(view.model_dump(mode="json", by_alias=True, exclude_none=True)))
    target = tmp_path / "termination-log"
    monkeypatch.setenv(report.REPORT_FILE_ENV, str(target))

    entry.main(
        [
            *("--spec", str(spec), "--start", "2026-01-01T00:00:00Z"),
            *("--end", "2026-01-01T01:00:00Z", "--offline-uri", "s3://b/o", "--online-table", "t"),
        ]
    )

    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads(target.read_text()) == printed
    assert report.read_termination_message(target.read_text()) == {
        "read": 0,
        "offline": 0,
        "online": 0,
    }


# -- exact integers and the latest event ------------------------------------------------------

BIG = 2**53 + 1  # 9007199254740993: the first integer a float64 cannot hold


def _tip_view(order: str) -> v1alpha1.FeatureView:
    """mean and stddev of an int64 column declared before ("float-first") or after
    its exact aggregations."""
    exact = [
        {"name": f"{f}_tip", "column": "tip", "function": f, "window": "1h", "type": "int64"}
        for f in ("sum", "min", "max", "last")
    ]
    exact.append(
        {"name": "distinct_tips", "column": "tip", "function": "count_distinct", "window": "1h"}
    )
    floats = [
        {"name": f"{f}_tip", "column": "tip", "function": f, "window": "1h"}
        for f in ("mean", "stddev")
    ]
    aggregations = floats + exact if order == "float-first" else exact + floats
    return _view(aggregationInterval="10m", aggregations=aggregations)


@pytest.mark.parametrize("order", ["float-first", "exact-first"])
def test_an_integer_column_is_read_exactly_whatever_is_declared_first(order: str) -> None:
    materialization = plan.plan_materialization(_tip_view(order), T0, T0 + dt.timedelta(hours=1))

    assert plan.read_types(materialization, {"tip": "bigint"}) == {"tip": "int64"}
    assert plan.read_types(materialization, {"tip": "int"}) == {"tip": "int64"}
    assert plan.read_types(materialization, {"tip": "double"})["tip"] in ("float64", "int64")


@pytest.mark.parametrize("order", ["float-first", "exact-first"])
def test_sums_minima_maxima_and_last_of_int64_stay_exact_beyond_2_to_the_53(order: str) -> None:
    at = plan.to_micros(T0) + 5 * MINUTE
    events = pa.table(
        {
            plan.EVENT_MICROS: pa.array([at, at + MINUTE, at + 2 * MINUTE], pa.int64()),
            plan.CREATED_MICROS: pa.array([at, at + MINUTE, at + 2 * MINUTE], pa.int64()),
            "tip": pa.array([BIG, 1, BIG + 2], pa.int64()),
        }
    )
    materialization = plan.plan_materialization(_tip_view(order), T0, T0 + dt.timedelta(hours=1))
    assert materialization.aggregation is not None

    (row,) = aggregate.aggregate_entity(events, materialization.aggregation).to_pylist()[:1]

    assert row["sum_tip"] == 2 * BIG + 3 == 18014398509481989
    assert (row["min_tip"], row["max_tip"], row["last_tip"]) == (1, BIG + 2, BIG + 2)
    assert row["distinct_tips"] == 3
    # Computed exactly, rounded once: not from values already rounded to float64.
    assert row["mean_tip"] == (2 * BIG + 3) / 3
    assert row["stddev_tip"] == statistics.stdev([BIG, 1, BIG + 2])


def test_an_event_that_changes_no_value_still_moves_the_latest_event() -> None:
    view = _view(
        aggregationInterval="10m",
        aggregations=[
            {
                "name": "max_zone",
                "column": "zone",
                "function": "max",
                "window": "1h",
                "type": "int64",
            },
        ],
    )
    start = plan.to_micros(T0)
    events = pa.table(
        {
            plan.EVENT_MICROS: pa.array([start + MINUTE, start + 25 * MINUTE], pa.int64()),
            plan.CREATED_MICROS: pa.array([0, 0], pa.int64()),
            "zone": pa.array([9, 3], pa.int64()),  # the second leaves the max as it is
        }
    )
    agg = plan.plan_materialization(view, T0, T0 + dt.timedelta(minutes=40)).aggregation
    assert agg is not None

    rows = aggregate.aggregate_entity(events, agg).to_pylist()

    assert rows == [
        {
            "event_timestamp": start + 10 * MINUTE,
            "latest_event_timestamp": start + MINUTE,
            "max_zone": 9,
        },
        {
            "event_timestamp": start + 30 * MINUTE,
            "latest_event_timestamp": start + 25 * MINUTE,
            "max_zone": 9,
        },
    ]


def test_the_documented_choices_of_each_function() -> None:
    """docs/semantics.md, "Aggregations": one boundary shows each choice."""
    view = _view(
        aggregationInterval="10m",
        aggregations=[
            {"name": "events", "column": "trip_id", "function": "count", "window": "1h"},
            {"name": "fares", "column": "fare", "function": "count", "window": "1h"},
            {"name": "sd_fare", "column": "fare", "function": "stddev", "window": "1h"},
            {
                "name": "sum_fare",
                "column": "fare",
                "function": "sum",
                "window": "1h",
                "type": "float64",
            },
            {
                "name": "last_zone",
                "column": "zone",
                "function": "last",
                "window": "1h",
                "type": "int64",
            },
            {"name": "riders", "column": "rider_id", "function": "count_distinct", "window": "1h"},
        ],
    )
    at = plan.to_micros(T0) + MINUTE
    rows = [
        # Three events at one event time all count; two of them tie on created time
        # too, and last takes the greater zone of the two.
        {"trip_id": 1, "fare": 2.0, "zone": 3, "rider_id": 7, "created": 5},
        {"trip_id": 2, "fare": 4.0, "zone": 8, "rider_id": 7, "created": 5},
        {"trip_id": 3, "fare": None, "zone": 1, "rider_id": None, "created": 4},
        # The latest event has no fare and no zone: last ignores its null.
        {"trip_id": 4, "fare": None, "zone": None, "rider_id": 9, "created": 0, "later": True},
    ]
    events = pa.Table.from_pylist(
        [
            {
                plan.EVENT_MICROS: at + (MINUTE if r.get("later") else 0),
                plan.CREATED_MICROS: r["created"],
                "trip_id": r["trip_id"],
                "fare": r["fare"],
                "zone": r["zone"],
                "rider_id": r["rider_id"],
            }
            for r in rows
        ]
    )
    agg = plan.plan_materialization(view, T0, T0 + dt.timedelta(minutes=20)).aggregation
    assert agg is not None

    (row,) = aggregate.aggregate_entity(events, agg).to_pylist()

    assert row["events"] == 4  # count(trip_id): every event, equal event times too
    assert row["fares"] == 2  # count(fare): the non-null values only
    assert row["sd_fare"] == math.sqrt(2.0)  # sample deviation of 2 and 4 (n - 1)
    assert row["sum_fare"] == 6.0  # nulls skipped
    assert row["last_zone"] == 8  # nulls ignored; a full tie goes to the greater value
    assert row["riders"] == 2  # distinct non-null values
    assert row["latest_event_timestamp"] == at + MINUTE  # any event, nulls or not


def test_a_late_event_counts_at_its_event_time_when_its_window_runs_again() -> None:
    def event(minute: int, trip: int) -> dict[str, Any]:
        at = plan.to_micros(T0) + minute * MINUTE
        return {
            plan.EVENT_MICROS: at,
            plan.CREATED_MICROS: at,
            "trip_id": trip,
            "rider_id": 1,
            "fare": 1.0,
            "zone": 1,
        }

    on_time, late = [event(5, 1)], event(12, 2)  # late: arrives after [00:00, 00:30) ran
    window = plan.plan_materialization(_agg_view(), T0, T0 + dt.timedelta(minutes=30))
    assert window.aggregation is not None

    first = aggregate.aggregate_entity(_table(on_time), window.aggregation).to_pylist()
    again = aggregate.aggregate_entity(_table([*on_time, late]), window.aggregation).to_pylist()

    assert [(r["event_timestamp"], r["n_30m"]) for r in first] == [
        (plan.to_micros(T0) + 10 * MINUTE, 1)
    ]
    # Re-run, the window has the late event at its own boundary, 00:20.
    assert [(r["event_timestamp"], r["n_30m"]) for r in again] == [
        (plan.to_micros(T0) + 10 * MINUTE, 1),
        (plan.to_micros(T0) + 20 * MINUTE, 2),
    ]


def test_a_transformation_outside_the_allowlist_is_refused_before_any_engine_runs() -> None:
    view = _view(
        transformation={
            "sql": "SELECT *, reflect('java.lang.System', 'getenv', 'AWS_SECRET_ACCESS_KEY') "
            "AS secret FROM source"
        },
        features=[{"name": "secret", "type": "string"}],
    )

    with pytest.raises(TransformationError, match="uses function reflect"):
        plan.plan_materialization(view, T0, T0 + dt.timedelta(hours=1))
