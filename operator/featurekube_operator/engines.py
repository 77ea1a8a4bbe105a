"""What runs one attempt at a window: a SparkApplication, or a plain Job running the
python engine (DuckDB and Arrow, no JVM); pure.

``spec.materialization.engine`` decides: ``spark`` is always a SparkApplication,
``python`` always a Job. ``auto`` is a Job when the window's input is estimated at most
:attr:`~featurekube_operator.settings.OperatorSettings.python_max_rows` rows and its
transformation is one the python engine computes (the rule of
:func:`featurekube.materialize.engines.choose`), else a SparkApplication. A retry of a
window under ``auto`` runs on Spark: an attempt that failed on the python engine may
have been estimated too small for one pod.

The estimate scales the rows that the version's latest completed window read by the
span of source time each window reads, so a version with no completed window yet (the
first window of a backfill) runs on Spark. What a window reads (:func:`read_span`):

- a plain view: the window;
- an aggregation without tiles (no offline table, or a window computed from the
  events): the window and the lookback of its longest aggregation window;
- an aggregation with tiles (docs/semantics.md, "Tiles"): only its own intervals, and
  the intervals between the version's latest completed window and its own, which no
  window has stored yet. Once a version has completed a window, the tiles of its
  lookback are stored, so a 10-minute window of a 30-day aggregation reads ten
  minutes, not thirty days.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from featurekube import errors
from featurekube.materialize import engines, plan
from featurekube.spec import v1alpha1
from featurekube_operator.progress import WindowRecord
from featurekube_operator.windows import Window

__all__ = [
    "JOB",
    "SPARK_APPLICATION",
    "TILE_READERS",
    "Kind",
    "choose_kind",
    "estimate_input_rows",
    "read_span",
]

Kind = Literal["SparkApplication", "Job"]
SPARK_APPLICATION: Kind = "SparkApplication"
JOB: Kind = "Job"


TILE_READERS = frozenset({"python", "spark"})
"""The engines that compute a tiled aggregation's window from the stored tiles, reading
only the events of the intervals no tile holds yet."""


def _planned(view: v1alpha1.FeatureView, window: Window) -> plan.MaterializationPlan | None:
    try:
        return plan.plan_materialization(view, window.start, window.end)
    except errors.FeaturekubeError:
        return None


def _tiled(view: v1alpha1.FeatureView) -> bool:
    """Whether the view's windows keep tiles: an aggregation with an offline table."""
    return bool(view.spec.aggregations) and view.spec.materialization.offline


def read_span(
    view: v1alpha1.FeatureView, window: Window, tiles_until: dt.datetime | None = None
) -> dt.timedelta:
    """The span of event time the job reads for ``window``: the window itself; for
    aggregations the lookback of its longest window too, unless ``tiles_until`` says
    that the tiles of every interval before it (and after the lookback's start) are
    stored, when only the intervals from there (or from its own first, if earlier) are
    read.

    >>> view = v1alpha1.FeatureView.model_validate({
    ...     "apiVersion": "featurekube.dev/v1alpha1", "kind": "FeatureView",
    ...     "metadata": {"name": "v"}, "spec": {"owner": "o",
    ...     "entities": [{"name": "id", "type": "int64"}],
    ...     "source": {"batch": {"path": "s3://bucket/raw/"}}, "aggregationInterval": "1h",
    ...     "aggregations": [{"name": "n", "column": "x", "function": "count",
    ...                       "window": "30d"}]}})
    >>> t = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    >>> hour = Window(t, t + dt.timedelta(hours=1))
    >>> read_span(view, hour)
    datetime.timedelta(days=30, seconds=3600)
    >>> read_span(view, hour, tiles_until=t)
    datetime.timedelta(seconds=3600)
    >>> read_span(view, hour, tiles_until=t - dt.timedelta(hours=2))
    datetime.timedelta(seconds=10800)
    >>> read_span(view, hour, tiles_until=t + dt.timedelta(days=1))
    datetime.timedelta(seconds=3600)
    """
    planned = _planned(view, window)
    if planned is None:
        return window.end - window.start
    begin = planned.read_start
    agg = planned.aggregation
    if (
        tiles_until is not None
        and agg is not None
        and agg.first_boundary is not None
        and _tiled(view)
    ):
        # Intervals end at boundaries; a window owns those in [start, end), so a window
        # ending at ``tiles_until`` stored the intervals up to the last boundary before it.
        stored = -(-plan.to_micros(tiles_until) // agg.interval) * agg.interval - agg.interval
        first_read = min(agg.first_boundary - agg.interval, stored) + 1
        begin = max(begin, plan.from_micros(first_read))
    return max(planned.read_end - begin, dt.timedelta(0))


def estimate_input_rows(
    view: v1alpha1.FeatureView, window: Window, last: WindowRecord | None
) -> int | None:
    """Rows ``window`` will read, estimated from ``last`` (the latest completed window of
    the same version) at the same rows per second of source time; None without one.

    With tiles, ``last`` read only its own intervals (:data:`TILE_READERS`) and
    ``window`` reads only those after ``last``'s end: both spans count just those. (If
    ``last`` was the version's first window, it read its lookback too, and the rate is
    overestimated once: the next window corrects it.)

    >>> import datetime as dt
    >>> view = v1alpha1.FeatureView.model_validate({
    ...     "apiVersion": "featurekube.dev/v1alpha1", "kind": "FeatureView",
    ...     "metadata": {"name": "v"}, "spec": {"owner": "o",
    ...     "entities": [{"name": "id", "type": "int64"}],
    ...     "source": {"batch": {"path": "s3://bucket/raw/"}},
    ...     "features": [{"name": "x", "type": "float64"}]}})
    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> hour = Window(t, t + dt.timedelta(hours=1))
    >>> done = WindowRecord(hour, "Succeeded", rows={"read": 1000, "offline": 9, "online": 9})
    >>> estimate_input_rows(view, Window(t, t + dt.timedelta(days=1)), done)
    24000
    """
    if last is None or last.rows is None or "read" not in last.rows:
        return None
    last_read_tiles = _tiled(view) and last.engine in TILE_READERS
    seen = read_span(view, last.window, last.window.start if last_read_tiles else None)
    ahead = read_span(view, window, last.window.end if _tiled(view) else None)
    if seen <= dt.timedelta(0):
        return None if last.rows["read"] else 0
    return int(last.rows["read"] * (ahead / seen) + 0.5)


def choose_kind(
    view: v1alpha1.FeatureView,
    window: Window,
    last: WindowRecord | None,
    *,
    python_max_rows: int,
    attempt: int = 1,
) -> Kind:
    """What runs attempt ``attempt`` at ``window`` of ``view``, given the latest window
    its version completed (``last``): see the module's docstring for the rule."""
    requested = view.spec.materialization.engine
    if requested != "auto":
        return JOB if requested == "python" else SPARK_APPLICATION
    if attempt > 1:
        return SPARK_APPLICATION
    chosen = engines.choose(
        "auto",
        input_rows=estimate_input_rows(view, window, last),
        transformation=view.spec.transformation.sql if view.spec.transformation else None,
        python_max_rows=python_max_rows,
    )
    return JOB if chosen == "python" else SPARK_APPLICATION
