"""What runs one attempt at a window: a SparkApplication, or a plain Job running the
python engine (DuckDB and Arrow, no JVM); pure.

``spec.materialization.engine`` decides: ``spark`` is always a SparkApplication,
``python`` always a Job. ``auto`` is a Job when the window's input is estimated at most
:attr:`~featurekube_operator.settings.OperatorSettings.python_max_rows` rows and its
transformation is one the python engine computes (the rule of
:func:`featurekube.materialize.engines.choose`), else a SparkApplication. The estimate
scales the rows that the version's latest completed window read by the span of source
time each window reads (for aggregations, the window plus its lookback), so a version
with no completed window yet (the first window of a backfill) runs on Spark. A retry
of a window under ``auto`` runs on Spark: an attempt that failed on the python engine
may have been estimated too small for one pod.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from featurekube import errors
from featurekube.materialize import engines, plan
from featurekube.spec import v1alpha1
from featurekube_operator.progress import WindowRecord
from featurekube_operator.windows import Window

__all__ = ["JOB", "SPARK_APPLICATION", "Kind", "choose_kind", "estimate_input_rows"]

Kind = Literal["SparkApplication", "Job"]
SPARK_APPLICATION: Kind = "SparkApplication"
JOB: Kind = "Job"


def _read_span(view: v1alpha1.FeatureView, window: Window) -> dt.timedelta:
    """The span of event time the job reads for ``window``: the window itself, and
    for aggregations the lookback of its longest window too."""
    try:
        planned = plan.plan_materialization(view, window.start, window.end)
    except errors.FeaturekubeError:
        return window.end - window.start
    return max(planned.read_end - planned.read_start, dt.timedelta(0))


def estimate_input_rows(
    view: v1alpha1.FeatureView, window: Window, last: WindowRecord | None
) -> int | None:
    """Rows ``window`` will read, estimated from ``last`` (the latest completed window of
    the same version) at the same rows per second of source time; None without one.

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
    seen = _read_span(view, last.window)
    ahead = _read_span(view, window)
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
