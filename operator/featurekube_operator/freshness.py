"""A view's freshness objective, and whether its materialized data meets it; pure.

The objective is ``spec.monitoring.freshnessObjective`` or, unset, twice the interval
of the view's cron schedule: a view materialized hourly may be up to an hour behind
between two windows, plus the run of a job; twice the interval leaves room for one
slow or retried run before it counts as stale. A schedule whose ticks are not evenly
spaced (``0 9-17 * * 1-5``) has the longest gap between two ticks as its interval.

The status this module computes depends only on the view, its materialized data and
the previous status, never on when it is computed beyond crossing the objective: a
reconcile that finds nothing new writes exactly what was there.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from croniter import croniter

from featurekube.spec import v1alpha1
from featurekube.spec.v1alpha1 import durations
from featurekube_operator.conditions import Condition

__all__ = [
    "DAILY_SPAN",
    "FRESH",
    "SAMPLE_SPAN",
    "SAMPLE_START",
    "SAMPLE_TICKS",
    "WEEKLY_SPAN",
    "Freshness",
    "evaluate",
    "format_duration",
    "objective",
    "schedule_interval",
]

FRESH = "Fresh"
"""The condition type."""

SAMPLE_START = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
"""Where the sample of a schedule's ticks starts: a fixed Monday, 1 January, so the
interval of a schedule never depends on when it is computed."""
SAMPLE_SPAN = dt.timedelta(days=400)
"""How much of a schedule that names days of the month or months is sampled: over a
year, so monthly and yearly patterns show their longest gap."""
WEEKLY_SPAN = dt.timedelta(days=8)
"""How much of a schedule that names days of the week only is sampled: its ticks
repeat every week."""
DAILY_SPAN = dt.timedelta(days=2)
"""How much of a schedule that names no days at all is sampled: its ticks repeat
every day."""
SAMPLE_TICKS = 10_000
"""At most this many ticks are sampled: a schedule that ticks every minute shows its
weekly pattern within a week (10,000 minutes)."""


@functools.lru_cache(maxsize=1024)
def schedule_interval(schedule: str) -> dt.timedelta:
    """The longest gap between two consecutive ticks of ``schedule`` (UTC cron).

    Ticks are sampled from :data:`SAMPLE_START` over as long as their pattern takes
    to repeat (:data:`DAILY_SPAN`, :data:`WEEKLY_SPAN` for a schedule that names days of
    the week, :data:`SAMPLE_SPAN` for one that names days of the month or months), at most
    :data:`SAMPLE_TICKS` of them, and always at least three (a schedule that ticks
    once every leap year is sampled for as long as that takes).

    >>> schedule_interval("@hourly")
    datetime.timedelta(seconds=3600)
    >>> schedule_interval("0 9-17 * * 1-5")  # Friday 17:00 to Monday 09:00
    datetime.timedelta(days=2, seconds=57600)
    """
    ticks = croniter(schedule, SAMPLE_START - dt.timedelta(microseconds=1))
    _, _, days, months, weekdays = ticks.expanded
    if days != ["*"] or months != ["*"]:
        span = SAMPLE_SPAN
    else:
        span = DAILY_SPAN if weekdays == ["*"] else WEEKLY_SPAN
    previous: dt.datetime = ticks.get_next(dt.datetime)
    longest = dt.timedelta(0)
    for count in range(1, SAMPLE_TICKS):
        tick: dt.datetime = ticks.get_next(dt.datetime)
        longest = max(longest, tick - previous)
        previous = tick
        if count >= 2 and tick - SAMPLE_START >= span:
            break
    return longest


def format_duration(interval: dt.timedelta) -> str:
    """``interval`` as a featurekube duration: whole seconds in the largest unit that
    divides them (``2h``, ``90m``, ``14d``).

    >>> [format_duration(dt.timedelta(seconds=s)) for s in (7200, 5400, 1209600, 59.5)]
    ['2h', '90m', '2w', '1m']
    """
    seconds = max(1, round(interval.total_seconds()))
    for unit, size in sorted(durations.UNIT_SECONDS.items(), key=lambda u: -u[1]):
        if seconds % size == 0 and seconds // size < 10_000_000:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def objective(spec: v1alpha1.FeatureViewSpec) -> dt.timedelta:
    """The view's freshness objective: declared, else twice its schedule's interval."""
    declared = spec.monitoring.freshness_objective
    if declared is not None:
        return durations.parse_duration(declared)
    return 2 * schedule_interval(spec.materialization.schedule)


@dataclass(frozen=True)
class Freshness:
    """The view's freshness as its status says it."""

    objective: dt.timedelta
    status: dict[str, Any]
    """``status.freshness``: objective, met, since."""
    condition: Condition
    """The ``Fresh`` condition."""


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def evaluate(
    spec: v1alpha1.FeatureViewSpec,
    materialized_until: dt.datetime | None,
    first_start: dt.datetime,
    now: dt.datetime,
    before: Mapping[str, Any] | None,
) -> Freshness:
    """Whether the view's data, materialized up to ``materialized_until`` (None:
    nothing yet, so behind since ``first_start``), is within its objective at ``now``.

    ``since`` is when ``met`` last changed: the instant the data fell behind the
    objective when it did (its end plus the objective), else the first evaluation
    that found it met again; an unchanged ``met`` keeps the ``since`` of ``before``
    (the previous ``status.freshness``).
    """
    target = objective(spec)
    behind_from = materialized_until or first_start
    deadline = behind_from + target
    met = now <= deadline
    previous = before or {}
    if previous.get("met") is met and previous.get("since"):
        since = str(previous["since"])
    elif met:
        since = _iso(now)
    else:
        since = _iso(deadline)
    text = format_duration(target)
    status = {"objective": text, "met": met, "since": since}
    where = (
        f"materialized up to {_iso(materialized_until)}"
        if materialized_until
        else f"nothing materialized since {_iso(first_start)}"
    )
    schedule = spec.materialization.schedule
    declared = spec.monitoring.freshness_objective is not None
    source = "" if declared else f" (twice the interval of the schedule {schedule})"
    if met:
        condition = Condition(
            FRESH,
            True,
            "WithinObjective",
            f"{where}: within the freshness objective {text}{source}",
        )
    else:
        condition = Condition(
            FRESH,
            False,
            "ObjectiveMissed",
            f"{where}: more than {text} behind since {_iso(deadline)}{source}; see the "
            "Degraded condition and the view's windows (status.progress) for why",
        )
    return Freshness(target, status, condition)
