"""What people see of a view's health: its expectations' verdicts, its drift and its
freshness, as status fields, conditions and events; pure.

Each window's job report says which expectation checks its rows broke and, when the
view measures drift, each feature's PSI against the reference (see
:mod:`featurekube.materialize.report`). Of the serving version's windows, the latest
one to complete sets ``status.expectations`` (every check, a passed one with rows 0,
so people see what was checked) and ``status.drift``; every completed window that
broke a check gets a Warning event per feature. The conditions are computed from the
status on every reconcile, so they follow the spec (an expectation removed, drift no
longer measured) without waiting for a window:

- ``ExpectationsMet``: False, reason ``WarnViolations``, naming the features whose
  checks the last window broke; True when it broke none.
- ``Drifted``: True, reason ``DriftOverThreshold``, naming the features whose PSI is
  above ``spec.monitoring.drift.threshold``; False when none is.
- ``Fresh``: see :mod:`.freshness`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from featurekube.materialize import report
from featurekube.spec import v1alpha1
from featurekube_operator import freshness, runs
from featurekube_operator.conditions import Condition

__all__ = [
    "DRIFTED",
    "EVENT_MESSAGE_LIMIT",
    "EXPECTATIONS_MET",
    "Notice",
    "Watched",
    "drift_condition",
    "drift_results",
    "expectation_results",
    "expectations_condition",
    "latest_report",
    "violation_notices",
    "watch_view",
]

EXPECTATIONS_MET = "ExpectationsMet"
DRIFTED = "Drifted"
EVENT_MESSAGE_LIMIT = 1024
"""Characters of an event's or a status message's text: Kubernetes keeps 1 KiB of an
event's message, and a long list of features says no more than its first few."""
_NAMED = 5
"""Features a condition's message names before it says how many more there are."""


@dataclass(frozen=True)
class Notice:
    """A Kubernetes event to post about the object."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _bounded(text: str, limit: int = EVENT_MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMED])
    more = len(names) - _NAMED
    return shown + (f" and {more} more" if more > 0 else "")


def latest_report(
    completed: Sequence[tuple[runs.Run, runs.Outcome]],
) -> tuple[runs.Run, runs.Outcome] | None:
    """Of runs that completed with a report, the one of the latest window (by its end,
    then its start); None when none left a report."""
    reported = [(r, o) for r, o in completed if o.rows is not None]
    return max(reported, key=lambda ro: (ro[0].window.end, ro[0].window.start), default=None)


def expectation_results(
    spec: v1alpha1.FeatureViewSpec,
    window_start: dt.datetime,
    violations: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """``status.expectations``: every check of the spec's expectations, in spec order,
    with the rows that broke it (0: passed), then any violation the report names that
    the spec no longer has (the expectation changed while the window ran)."""
    broken: dict[tuple[str, str], Mapping[str, Any]] = {}
    for violation in violations:
        key = (str(violation.get("feature")), str(violation.get("check")))
        broken.setdefault(key, violation)
    results = []
    start = _iso(window_start)
    for check in report.plan_checks(spec):
        found = broken.pop((check.feature, check.kind), None)
        rows = _rows(found)
        entry: dict[str, Any] = {
            "feature": check.feature,
            "check": check.kind,
            "onViolation": check.on_violation,
            "rows": rows,
            "windowStart": start,
        }
        if rows:
            entry["message"] = _bounded(str((found or {}).get("message") or check.describe(rows)))
        results.append(entry)
    for (feature, kind), violation in broken.items():
        if kind not in ("notNull", "min", "max", "allowedValues"):
            continue
        on = "Fail" if violation.get("onViolation") == "Fail" else "Warn"
        results.append(
            {
                "feature": feature,
                "check": kind,
                "onViolation": on,
                "rows": _rows(violation),
                "windowStart": start,
                "message": _bounded(str(violation.get("message") or "")),
            }
        )
    return results


def _rows(violation: Mapping[str, Any] | None) -> int:
    try:
        return max(0, int((violation or {}).get("rows") or 0))
    except (TypeError, ValueError):
        return 0


def expectations_condition(results: Sequence[Mapping[str, Any]] | None) -> Condition | None:
    """``ExpectationsMet`` from ``status.expectations``; None before a window was checked."""
    if not results:
        return None
    start = str(results[0].get("windowStart") or "")
    broken = [r for r in results if int(r.get("rows") or 0) > 0]
    if not broken:
        return Condition(
            EXPECTATIONS_MET,
            True,
            "AllPassed",
            f"the window starting {start} passed all {len(results)} expectation checks",
        )
    features = list(dict.fromkeys(str(r["feature"]) for r in broken))
    detail = "; ".join(str(r.get("message") or "") for r in broken)
    return Condition(
        EXPECTATIONS_MET,
        False,
        "WarnViolations",
        _bounded(
            f"the window starting {start} broke expectations of {_names(features)}: {detail}",
            4096,
        ),
    )


def violation_notices(
    window: tuple[dt.datetime, dt.datetime], violations: Sequence[Mapping[str, Any]]
) -> list[Notice]:
    """One Warning event per feature whose checks a window broke."""
    by_feature: dict[str, list[Mapping[str, Any]]] = {}
    for violation in violations:
        if _rows(violation):
            by_feature.setdefault(str(violation.get("feature")), []).append(violation)
    span = f"[{_iso(window[0])}, {_iso(window[1])})"
    return [
        Notice(
            "Warning",
            "ExpectationViolated",
            _bounded(
                f"window {span}: "
                + "; ".join(
                    f"{v.get('message') or v.get('check')} (onViolation: {v.get('onViolation')})"
                    for v in found
                )
            ),
        )
        for feature, found in sorted(by_feature.items())
    ]


def drift_results(
    spec: v1alpha1.FeatureViewSpec, window_start: dt.datetime, drift: Mapping[str, float]
) -> list[dict[str, Any]] | None:
    """``status.drift`` from a report's PSI per feature, in the view's feature order;
    None when the view measures no drift."""
    if spec.monitoring.drift is None:
        return None
    threshold = spec.monitoring.drift.threshold
    order = {name: index for index, name in enumerate(spec.feature_names)}
    measured = sorted(
        (f for f in drift if f in order), key=lambda f: order[f]
    )  # a feature the spec dropped is no longer the view's
    return [
        {
            "feature": feature,
            "psi": round(max(0.0, drift[feature]), 6),
            "drifted": drift[feature] > threshold,
            "windowStart": _iso(window_start),
        }
        for feature in measured
    ]


def drift_condition(
    spec: v1alpha1.FeatureViewSpec, results: Sequence[Mapping[str, Any]] | None
) -> Condition | None:
    """``Drifted`` from ``status.drift``; None when drift is not measured (yet)."""
    if spec.monitoring.drift is None or not results:
        return None
    threshold = spec.monitoring.drift.threshold
    start = str(results[0].get("windowStart") or "")
    over = [r for r in results if float(r.get("psi") or 0) > threshold]
    if not over:
        return Condition(
            DRIFTED,
            False,
            "WithinThreshold",
            f"in the window starting {start}, no feature's PSI is above {threshold:g}",
        )
    named = [f"{r['feature']} ({float(r['psi']):.3f})" for r in over]
    return Condition(
        DRIFTED,
        True,
        "DriftOverThreshold",
        f"in the window starting {start}, the PSI of {_names(named)} is above the threshold "
        f"{threshold:g}: compare the features' statistics with the reference",
    )


@dataclass(frozen=True)
class Watched:
    """What a reconcile adds to a view's status about its health."""

    status: dict[str, Any] = field(default_factory=dict)
    """Fields to merge into the status (None clears one)."""
    conditions: list[Condition] = field(default_factory=list)
    expectations: list[Mapping[str, Any]] = field(default_factory=list)
    """``status.expectations`` as it stands after the merge."""
    drift: list[Mapping[str, Any]] = field(default_factory=list)
    """``status.drift`` as it stands after the merge."""
    objective: dt.timedelta | None = None
    """The freshness objective in force; None when the view is not materialized."""


def watch_view(
    spec: v1alpha1.FeatureViewSpec,
    before: Mapping[str, Any],
    completed: Sequence[tuple[runs.Run, runs.Outcome]],
    *,
    materializes: bool,
    materialized_until: dt.datetime | None,
    first_start: dt.datetime,
    now: dt.datetime,
) -> Watched:
    """The health fields and conditions of a view whose status was ``before``.

    ``completed`` are the serving version's runs seen to complete this reconcile, with
    what their drivers reported; the latest of them, when it is no older than the
    window ``before`` holds, replaces the expectations' verdicts and the drift.
    """
    status: dict[str, Any] = {}
    expectations = before.get("expectations") or None
    drift = before.get("drift") or None
    latest = latest_report(completed)
    if latest is not None:
        run, outcome = latest
        held = runs.parse_time(str((expectations or drift or [{}])[0].get("windowStart") or ""))
        if held is None or run.window.start >= held:
            if outcome.violations is not None and spec.expectations:
                expectations = status["expectations"] = expectation_results(
                    spec, run.window.start, outcome.violations
                )
            if outcome.drift is not None:
                found = drift_results(spec, run.window.start, outcome.drift)
                if found is not None:
                    drift = status["drift"] = found
    if not spec.expectations and expectations:
        expectations = status["expectations"] = None
    if spec.monitoring.drift is None and drift:
        drift = status["drift"] = None
    found_conditions = [
        c
        for c in (expectations_condition(expectations), drift_condition(spec, drift))
        if c is not None
    ]
    objective = None
    if materializes:
        fresh = freshness.evaluate(
            spec, materialized_until, first_start, now, before.get("freshness")
        )
        if fresh.status != before.get("freshness"):
            status["freshness"] = fresh.status
        found_conditions.append(fresh.condition)
        objective = fresh.objective
    elif before.get("freshness"):
        status["freshness"] = None
    return Watched(
        status=status,
        conditions=found_conditions,
        expectations=list(expectations or ()),
        drift=list(drift or ()),
        objective=objective,
    )
