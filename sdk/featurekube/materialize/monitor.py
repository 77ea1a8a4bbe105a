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
published. The python engine measures while the window is being published
(:func:`measure`, in a thread of its own) and stores once it is (:func:`store`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from featurekube.materialize import plan as planning
from featurekube.materialize import report
from featurekube.monitoring import drift, references, stats, stats_store

__all__ = ["ComputeStatistics", "Measured", "measure", "record", "store"]

log = logging.getLogger(__name__)

ComputeStatistics = Callable[[drift.ReferenceProfile | None], Sequence[stats.FeatureStatistics]]
"""An engine's statistics of the window's rows, with PSI against the profile given."""


@dataclass(frozen=True)
class Measured:
    """A window's statistics as :func:`measure` found them, for :func:`store`."""

    features: Sequence[stats.FeatureStatistics] | None
    """None: they could not be computed (``notes`` says why)."""
    profile: drift.ReferenceProfile | None
    notes: tuple[str, ...]
    """For the report, as they are (the reference's)."""
    warnings: tuple[str, ...]
    """For the report and the log: what failed."""
    seconds: float


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
    ``drift``, ``notes`` and ``timings["statistics"]``): :func:`measure`, then
    :func:`store`. Never raises for a failure of its own: the window is published
    already."""
    found = measure(
        plan, compute, offline_uri=offline_uri, storage_options=storage_options, now=now
    )
    store(plan, result, found, offline_uri=offline_uri, storage_options=storage_options, now=now)


def measure(
    plan: planning.MaterializationPlan,
    compute: ComputeStatistics,
    *,
    offline_uri: str | None,
    storage_options: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
) -> Measured | None:
    """Find the view's drift reference and compute the window's statistics with PSI
    against it; None without an offline table (nothing is measured). Touches no
    report, so that an engine may measure while the window is being published: the
    reference covers rows before the window (references.py), whatever the window's
    commit. Never raises for a failure of its own."""
    if offline_uri is None:
        return None
    began = time.perf_counter()
    notes: list[str] = []
    warnings: list[str] = []
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
            notes.append(resolution.note)
    except Exception as exc:  # any failure of the reference only costs this window its drift
        warnings.append(f"drift not computed: the reference could not be read or stored: {exc}")
    features: Sequence[stats.FeatureStatistics] | None = None
    try:
        features = list(compute(profile))
    except Exception as exc:  # a failure here must not fail a published window
        warnings.append(f"statistics not computed: {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - began
    return Measured(features, profile, tuple(notes), tuple(warnings), seconds)


def store(
    plan: planning.MaterializationPlan,
    result: report.MaterializationReport,
    measured: Measured | None,
    *,
    offline_uri: str | None,
    storage_options: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Store what :func:`measure` found once the window is published, into ``result``
    too. Never raises for a failure of its own."""
    if offline_uri is None or measured is None:
        return
    began = time.perf_counter()
    result.notes.extend(measured.notes)
    for warning in measured.warnings:
        _note(result, warning)
    features = measured.features
    try:
        if features is None:
            return
        if plan.spec.monitoring.drift is not None and measured.profile is not None:
            result.drift = {s.feature: s.psi for s in features if s.psi is not None}
        try:
            rows = stats.statistics_table(
                plan.start,
                plan.end,
                features,
                engine=result.engine or "unknown",
                written_at=planning.utc(now or dt.datetime.now(dt.UTC)),
            )
            stats_store.StatsStore(offline_uri, storage_options, label=plan.label).replace_window(
                rows, plan.start
            )
        except Exception as exc:  # the window is published; its statistics are best effort
            _note(result, f"statistics not stored: {exc}")
    finally:
        result.timings["statistics"] = measured.seconds + time.perf_counter() - began


def _note(result: report.MaterializationReport, text: str) -> None:
    log.warning("%s: %s", result.view, text)
    result.notes.append(text[:1000])
