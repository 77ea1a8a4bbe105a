"""What a change to a FeatureView starts: a new data version and its backfill; pure.

A view created, or one whose data fields (:data:`featurekube.versions.DATA_FIELDS`)
change, gets a new version with tables of its own, which the operator fills from
``materialization.startTime`` (else from the view's first schedule tick) up to now
before it serves. :func:`new_versions` says so for each such view of a plan, with the
backfill's windows (ticks of the schedule), the jobs the operator runs them as (ticks
merged up to a day each, the operator's default ``backfillWindowSeconds``), the span
of time, and the engine when the spec decides it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from croniter import croniter

from featurekube import versions
from featurekube.spec import loader, v1alpha1

__all__ = ["DEFAULT_MAX_SPAN", "MAX_COUNTED", "NewVersion", "backfill_of", "new_versions"]

DEFAULT_MAX_SPAN = dt.timedelta(days=1)
"""The longest window the operator runs as one job by default (backfillWindowSeconds)."""
K = TypeVar("K", bound=Any)

MAX_COUNTED = 20_000
"""Ticks counted at most: beyond, the plan says "more than" (a cron of every minute
over years would take long to count, and the answer is the same: a lot)."""


@dataclass(frozen=True)
class NewVersion:
    """A view's change that makes a new data version, and the backfill it starts."""

    kind: str
    namespace: str
    name: str
    version: int | None
    """The number the new version gets, when the live status tells; None: unknown."""
    reason: str
    """Why: a new view, or which data fields change."""
    windows: int
    """Windows of the schedule to backfill (at most :data:`MAX_COUNTED`)."""
    jobs: int
    """SparkApplications or Jobs the operator runs them as."""
    start: dt.datetime | None
    """Where the backfill starts; None when it has no backfill to run."""
    end: dt.datetime
    """Now: the backfill's windows end by then."""
    engine: str
    """What computes the windows, as far as the spec tells."""
    more: bool = False
    """More than ``windows`` windows (counting stopped)."""

    def __str__(self) -> str:
        number = f"version {self.version}" if self.version else "a new version"
        head = f"{self.kind} {self.namespace}/{self.name}: creates {number} ({self.reason})"
        if self.start is None or not self.windows:
            return f"{head}; nothing to backfill, its first window is the next tick"
        span = _format_span(self.end - self.start)
        count = f"more than {self.windows:,}" if self.more else f"{self.windows:,}"
        return (
            f"{head}; backfills {count} window{'s' if self.windows != 1 else ''} as "
            f"{self.jobs:,} job{'s' if self.jobs != 1 else ''}, {span} from "
            f"{_format_time(self.start)} to {_format_time(self.end)}, on {self.engine}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "reason": self.reason,
            "windows": self.windows,
            "moreWindows": self.more,
            "jobs": self.jobs,
            "start": _format_time(self.start) if self.start else None,
            "end": _format_time(self.end),
            "engine": self.engine,
            "message": str(self),
        }


_MICROSECOND = dt.timedelta(microseconds=1)


def _format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _format_span(span: dt.timedelta) -> str:
    days, hours = span.days, span.seconds // 3600
    if days and hours:
        return f"{days}d{hours}h"
    if days:
        return f"{days}d"
    return f"{hours}h{(span.seconds % 3600) // 60:02d}m" if hours else f"{span.seconds // 60}m"


def _data(spec: v1alpha1.FeatureViewSpec) -> dict[str, object]:
    fields = spec.to_yaml_dict()
    return {key: fields.get(key) for key in versions.DATA_FIELDS}


def _created(view: v1alpha1.FeatureView) -> dt.datetime | None:
    text = (view.metadata.model_extra or {}).get("creationTimestamp")
    if isinstance(text, dt.datetime):
        return text.astimezone(dt.UTC)
    if not isinstance(text, str) or not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def _engine(spec: v1alpha1.FeatureViewSpec) -> str:
    engine = spec.materialization.engine
    if engine == "auto":
        return "auto (the first window on Spark, later ones by their estimated size)"
    return engine


def backfill_of(
    spec: v1alpha1.FeatureViewSpec,
    start: dt.datetime | None,
    now: dt.datetime,
    max_span: dt.timedelta = DEFAULT_MAX_SPAN,
) -> tuple[int, int, bool]:
    """Windows (schedule ticks) from ``start`` to ``now``, the jobs they make when
    consecutive ticks merge up to ``max_span``, and whether counting stopped early."""
    if start is None or start >= now:
        return 0, 0, False
    schedule = croniter(spec.materialization.schedule, start.astimezone(dt.UTC))
    windows = jobs = 0
    job_start = start
    previous = start
    while windows < MAX_COUNTED:
        tick: dt.datetime = schedule.get_next(dt.datetime).astimezone(dt.UTC)
        if tick > now:
            return windows, jobs, False
        windows += 1
        if jobs == 0 or tick - job_start > max_span:
            jobs += 1
            job_start = previous
        previous = tick
    return windows, jobs, True


def new_versions(
    before: Mapping[K, loader.Resource], after: Mapping[K, loader.Resource], now: dt.datetime
) -> list[NewVersion]:
    """The views of ``after`` that get a new data version compared with ``before``
    (the same key: the same object), with the backfill each starts at ``now``."""
    found = []
    for key, desired in sorted(after.items()):
        if not isinstance(desired, v1alpha1.FeatureView):
            continue
        live = before.get(key)
        spec = desired.spec
        if isinstance(live, v1alpha1.FeatureView):
            changed = [f for f in versions.DATA_FIELDS if _data(live.spec)[f] != _data(spec)[f]]
            if not changed:
                continue
            status = live.status
            latest = status.latest_version if status is not None else None
            version = latest + 1 if latest else None
            reason = "spec." + ", spec.".join(changed) + " changed"
            created = _created(live)
        else:
            version, reason, created = 1, "a new view", None
        materializes = spec.source.batch is not None and (
            spec.materialization.online or spec.materialization.offline
        )
        start = spec.materialization.start_time
        if start is None and created is not None:
            # Without a startTime the operator starts at the first tick after creation.
            after_created = croniter(spec.materialization.schedule, created - _MICROSECOND)
            start = after_created.get_next(dt.datetime)
        if start is not None:
            start = start.astimezone(dt.UTC)
        windows, jobs, more = backfill_of(spec, start, now) if materializes else (0, 0, False)
        found.append(
            NewVersion(
                kind=desired.kind,
                namespace=desired.metadata.namespace or "default",
                name=desired.metadata.name,
                version=version,
                reason=reason,
                windows=windows,
                jobs=jobs,
                start=start if windows else None,
                end=now,
                engine=_engine(spec),
                more=more,
            )
        )
    return found
