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


def test_the_estimate_of_an_aggregation_counts_the_lookback_it_reads() -> None:
    """A 10-minute window of a 1-day aggregation reads a day: after a backfill window of
    a day that read 2 days, it reads about as much, not a 144th."""
    view = _view(
        features=None,
        aggregations=[
            {"name": "trips_1d", "column": "trip_id", "function": "count", "window": "1d"}
        ],
        aggregationInterval="10m",
    )
    backfill = _done(24, 2000)
    ten_minutes = Window(T0 + 24 * H, T0 + 24 * H + dt.timedelta(minutes=10))

    estimate = engines.estimate_input_rows(view, ten_minutes, backfill)

    assert estimate is not None and 1000 <= estimate <= 1020
    assert _kind(view, ten_minutes, backfill) == engines.SPARK_APPLICATION


def test_auto_retries_a_failed_window_on_spark() -> None:
    assert _kind(_view(), NEXT_HOUR, _done(1, 10), attempt=2) == engines.SPARK_APPLICATION


def test_auto_runs_a_transformation_the_python_engine_cannot_on_spark() -> None:
    view = _view(transformation={"sql": "SELECT *, percentile(rating, 0.5) AS p FROM source"})
    assert _kind(view, NEXT_HOUR, _done(1, 10)) == engines.SPARK_APPLICATION
    portable = _view(transformation={"sql": "SELECT *, ABS(rating) AS r FROM source"})
    assert _kind(portable, NEXT_HOUR, _done(1, 10)) == engines.JOB
