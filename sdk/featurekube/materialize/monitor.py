"""A published window's statistics and drift, stored beside its offline table; does I/O.

Both engines call :func:`record` once the window is published (after its offline
commit, docs/semantics.md, "Readers see only complete windows"), each with a function
that computes the statistics of the rows it wrote by the definitions of
:mod:`featurekube.monitoring.stats` — DuckDB's
(:func:`featurekube.monitoring.profiling.window_statistics`) or Spark's. It finds the
view's drift reference (:mod:`featurekube.monitoring.references`), computes the
statistics with each feature's PSI, replaces the window's rows of the statistics table,
and puts the PSI in the report's ``drift``. Nothing here fails the window: whatever
goes wrong is logged and noted in the report's ``notes``, and the window stays
published.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from featurekube.materialize import plan as planning
from featurekube.materialize import report
from featurekube.monitoring import drift, references, stats, stats_store

__all__ = ["ComputeStatistics", "record"]

log = logging.getLogger(__name__)

ComputeStatistics = Callable[[drift.ReferenceProfile | None], Sequence[stats.FeatureStatistics]]
"""An engine's statistics of the window's rows, with PSI against the profile given."""


def record(
    plan: planning.MaterializationPlan,
    result: report.MaterializationReport,
    compute: ComputeStatistics,
    *,
    offline_uri: str | None,
    storage_options: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Compute and store the window's statistics and drift, into ``result`` too (its
    ``drift``, ``notes`` and ``timings["statistics"]``). Never raises for a failure of
    its own: the window is published already."""
    if offline_uri is None:
        return
    began = time.perf_counter()
    profile = None
    try:
        resolution = references.resolve(
            plan.spec,
            offline_uri,
            plan.start,
            storage_options=storage_options,
            label=plan.label,
            now=now,
        )
        profile = resolution.profile
        if resolution.note:
            result.notes.append(resolution.note)
    except Exception as exc:  # any failure of the reference only costs this window its drift
        _note(result, f"drift not computed: the reference could not be read or stored: {exc}")
    try:
        features = list(compute(profile))
    except Exception as exc:  # a failure here must not fail a published window
        _note(result, f"statistics not computed: {type(exc).__name__}: {exc}")
        result.timings["statistics"] = time.perf_counter() - began
        return
    if plan.spec.monitoring.drift is not None and profile is not None:
        result.drift = {s.feature: s.psi for s in features if s.psi is not None}
    try:
        rows = stats.statistics_table(
            plan.start,
            plan.end,
            features,
            engine=result.engine or "unknown",
            written_at=planning.utc(now or dt.datetime.now(dt.UTC)),
        )
        store = stats_store.StatsStore(offline_uri, storage_options, label=plan.label)
        store.replace_window(rows, plan.start)
    except Exception as exc:  # the window is published; its statistics are best effort
        _note(result, f"statistics not stored: {exc}")
    result.timings["statistics"] = time.perf_counter() - began


def _note(result: report.MaterializationReport, text: str) -> None:
    log.warning("%s: %s", result.view, text)
    result.notes.append(text[:1000])
