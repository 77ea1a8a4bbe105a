"""What runs a window: the operator's pure choice between a SparkApplication and a Job."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from featurekube.materialize import engines as sdk_engines
from featurekube.spec import v1alpha1
from featurekube_operator import engines
from featurekube_operator.progress import SUCCEEDED, WindowRecord
from featurekube_operator.settings import OperatorSettings
from featurekube_operator.windows import Window

UTC = dt.UTC
H = dt.timedelta(hours=1)
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
PLAIN: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-profile", "namespace": "rides"},
    "spec": {
        "owner": "eta",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://raw-data/drivers/"}},
        "features": [{"name": "rating", "type": "float64"}],
    },
}


def _view(engine: str = "auto", **spec: Any) -> v1alpha1.FeatureView:
    doc = copy.deepcopy(PLAIN)
    doc["spec"]["materialization"] = {"engine": engine}
    doc["spec"].update(spec)
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    return v1alpha1.FeatureView.model_validate(doc)


def _done(hours: int, read: int, start: dt.datetime = T0) -> WindowRecord:
    window = Window(start, start + hours * H)
    return WindowRecord(window, SUCCEEDED, rows={"read": read, "offline": read, "online": 1})


def _kind(view: v1alpha1.FeatureView, window: Window, last: WindowRecord | None, **kw: Any) -> str:
    return engines.choose_kind(view, window, last, python_max_rows=1000, **kw)


NEXT_HOUR = Window(T0 + 5 * H, T0 + 6 * H)


def test_the_default_threshold_is_the_jobs() -> None:
    assert OperatorSettings().python_max_rows == sdk_engines.DEFAULT_PYTHON_MAX_ROWS


@pytest.mark.parametrize("engine", ["spark", "python"])
def test_an_engine_named_in_the_spec_is_always_its_kind(engine: str) -> None:
    expected = engines.JOB if engine == "python" else engines.SPARK_APPLICATION
    view = _view(engine)
    for last in (None, _done(1, 10), _done(1, 10**9)):
        assert _kind(view, NEXT_HOUR, last) == expected
    assert _kind(view, NEXT_HOUR, _done(1, 10), attempt=3) == expected


def test_auto_runs_a_versions_first_window_on_spark() -> None:
    assert _kind(_view(), Window(T0, T0 + 24 * H), None) == engines.SPARK_APPLICATION


def test_auto_runs_a_job_when_the_estimate_is_within_the_threshold() -> None:
    assert _kind(_view(), NEXT_HOUR, _done(1, 1000)) == engines.JOB
    assert _kind(_view(), NEXT_HOUR, _done(1, 1001)) == engines.SPARK_APPLICATION


def test_the_estimate_scales_the_last_window_by_span() -> None:
    view = _view()
    day = Window(T0 + 5 * H, T0 + 29 * H)

    assert engines.estimate_input_rows(view, day, _done(1, 40)) == 960
    assert engines.estimate_input_rows(view, NEXT_HOUR, _done(24, 960)) == 40
    assert engines.estimate_input_rows(view, NEXT_HOUR, None) is None
    # A day at the last hour's rate is over the threshold; the next hour is not.
    assert _kind(view, day, _done(1, 50)) == engines.SPARK_APPLICATION
    assert _kind(view, NEXT_HOUR, _done(1, 50)) == engines.JOB


M10 = dt.timedelta(minutes=10)


def _aggregation(days: int = 1, offline: bool = True) -> v1alpha1.FeatureView:
    view = _view(
        features=None,
        aggregations=[
            {"name": "trips", "column": "trip_id", "function": "count", "window": f"{days}d"}
        ],
        aggregationInterval="10m",
    )
    update = {"offline": offline, "engine": "auto"}
    materialization = view.spec.materialization.model_copy(update=update)
    return view.model_copy(
        update={"spec": view.spec.model_copy(update={"materialization": materialization})}
    )


def _finished(window: Window, read: int, engine: str | None) -> WindowRecord:
    rows = {"read": read, "offline": read, "online": 1}
    return WindowRecord(window, SUCCEEDED, rows=rows, engine=engine)


def test_the_estimate_of_an_untiled_aggregation_counts_the_lookback_it_reads() -> None:
    """Without an offline table there are no tiles: a 10-minute window of a 1-day
    aggregation reads a day, after a backfill window of a day that read 2 days about
    as much, not a 144th."""
    view = _aggregation(offline=False)
    backfill = _finished(Window(T0, T0 + 24 * H), 2000, "spark")
    ten_minutes = Window(T0 + 24 * H, T0 + 24 * H + M10)

    estimate = engines.estimate_input_rows(view, ten_minutes, backfill)

    assert estimate is not None and 1000 <= estimate <= 1020
    assert _kind(view, ten_minutes, backfill) == engines.SPARK_APPLICATION


def test_a_tiled_window_after_a_backfill_is_estimated_by_its_own_intervals() -> None:
    """A 30-day aggregation's first window read 31 days of events, far over the
    threshold; the next 10-minute window reads ten minutes of them (the tiles of the
    rest are stored) and runs as a Job. (Recorded before engines were, the first
    window is known to have read its lookback.)"""
    view = _aggregation(days=30)
    day = Window(T0, T0 + 24 * H)
    backfill = _finished(day, 31 * 1440, None)  # 1,440 rows a day
    ten_minutes = Window(day.end, day.end + M10)

    assert engines.estimate_input_rows(view, ten_minutes, backfill) == 10
    assert _kind(view, ten_minutes, backfill) == engines.JOB
    steady = _finished(ten_minutes, 10, "python")
    following = Window(ten_minutes.end, ten_minutes.end + M10)
    assert engines.estimate_input_rows(view, following, steady) == 10
    # Without tiles the same window reads its 30-day lookback: 43,000 rows, a SparkApplication.
    untiled = _aggregation(days=30, offline=False)
    assert engines.estimate_input_rows(untiled, ten_minutes, backfill) == 43_210
    assert _kind(untiled, ten_minutes, backfill) == engines.SPARK_APPLICATION


@pytest.mark.parametrize("engine", sorted(engines.TILE_READERS))
def test_a_tiled_windows_rate_is_taken_over_its_own_intervals(engine: str) -> None:
    """A window that read tiles read only its own intervals: its rows over its own
    span give the rate, so steady 10-minute windows stay Jobs as long as each reads
    at most the threshold, and go to Spark once they read more."""
    view = _aggregation(days=30)
    before = Window(T0 + 24 * H, T0 + 24 * H + M10)
    after = Window(before.end, before.end + M10)

    assert engines.estimate_input_rows(view, after, _finished(before, 1000, engine)) == 1000
    assert _kind(view, after, _finished(before, 1000, engine)) == engines.JOB
    assert _kind(view, after, _finished(before, 1001, engine)) == engines.SPARK_APPLICATION


def test_a_window_after_a_gap_also_reads_the_intervals_of_the_gap() -> None:
    view = _aggregation(days=30)
    before = Window(T0 + 24 * H, T0 + 24 * H + M10)
    later = Window(before.end + H, before.end + H + M10)  # an hour no window stored

    assert engines.estimate_input_rows(view, later, _finished(before, 100, "python")) == 700


def test_a_rerun_of_an_earlier_window_reads_its_own_intervals() -> None:
    view = _aggregation(days=30)
    last = _finished(Window(T0 + 48 * H, T0 + 48 * H + M10), 100, "python")
    earlier = Window(T0 + 24 * H, T0 + 24 * H + M10)

    assert engines.estimate_input_rows(view, earlier, last) == 100


def test_a_first_window_that_read_tiles_is_overestimated_once() -> None:
    """A version's first window read its lookback too, but its record does not say it
    was the first: its rate, taken over its own day, is 31 times too high, and the
    next window's own rate corrects it."""
    view = _aggregation(days=30)
    day = Window(T0, T0 + 24 * H)
    ten_minutes = Window(day.end, day.end + M10)

    for engine in sorted(engines.TILE_READERS):
        first = _finished(day, 31 * 1440, engine)
        assert engines.estimate_input_rows(view, ten_minutes, first) == 310
        assert _kind(view, ten_minutes, first) == engines.JOB
    steady = _finished(ten_minutes, 10, "python")
    following = Window(ten_minutes.end, ten_minutes.end + M10)
    assert engines.estimate_input_rows(view, following, steady) == 10


def test_a_window_recorded_without_its_engine_counts_its_lookback() -> None:
    """A record from before engines were recorded may have computed from the events."""
    view = _aggregation(days=1)
    before = Window(T0 + 24 * H, T0 + 24 * H + M10)
    after = Window(before.end, before.end + M10)

    estimate = engines.estimate_input_rows(view, after, _finished(before, 1450, None))

    assert estimate == 10


def test_auto_retries_a_failed_window_on_spark() -> None:
    assert _kind(_view(), NEXT_HOUR, _done(1, 10), attempt=2) == engines.SPARK_APPLICATION


def test_auto_runs_a_transformation_the_python_engine_cannot_on_spark() -> None:
    view = _view(transformation={"sql": "SELECT *, percentile(rating, 0.5) AS p FROM source"})
    assert _kind(view, NEXT_HOUR, _done(1, 10)) == engines.SPARK_APPLICATION
    portable = _view(transformation={"sql": "SELECT *, ABS(rating) AS r FROM source"})
    assert _kind(portable, NEXT_HOUR, _done(1, 10)) == engines.JOB
