"""Values to start an in-memory store with, from a YAML file; :func:`read_rows` reads
the file, :func:`parse_rows` and :func:`fill` are pure.

For a feature server on a developer's machine (``featurekube serve --memory --data
FILE``) and for tests: one document per view, each row an entity's keys, its event
time (ISO 8601, or relative to the start: ``now``, ``now-30m``, ``now-2h``) and feature
values by the view's feature names (a missing feature is null)::

    featureView: driver-trip-stats
    namespace: rides                 # default: the service's
    rows:
      - {driver_id: 1001, event_timestamp: now-10m, trips_30m: 3}

Rows obey the online rule as any write does: of two rows of one entity, the later
event time is kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from featurekube.spec.v1alpha1 import durations
from featurekube_server import errors, plan
from featurekube_server.stores import memory

__all__ = ["EVENT_TIMESTAMP", "Row", "fill", "parse_rows", "read_rows"]

EVENT_TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class Row:
    """One entity's values of one view."""

    view: plan.FeatureViewPlan
    entity: Mapping[str, object]
    features: Mapping[str, object]
    event_time: dt.datetime


def _time(value: object, where: str, now: dt.datetime) -> dt.datetime:
    if isinstance(value, str) and value.startswith("now"):
        ago = value.removeprefix("now").lstrip()
        if not ago:
            return now
        try:
            return now - durations.parse_duration(ago.removeprefix("-").strip())
        except ValueError:
            raise errors.PlanError(
                f"{where}: {value!r}: write now, or now-30m, now-2h, ..."
            ) from None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise errors.PlanError(f"{where}: {value!r} is not an ISO 8601 time") from None
    else:
        raise errors.PlanError(f"{where}: give {EVENT_TIMESTAMP} as an ISO 8601 time")
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def parse_rows(
    documents: Iterable[Any], serving: plan.ServingPlan, source: str, now: dt.datetime
) -> list[Row]:
    """The rows of ``documents`` (parsed YAML), checked against the plan's views; an
    event time of ``now`` or ``now-<duration>`` counts from ``now``."""
    found = []
    for number, document in enumerate(documents):
        where = f"{source}: document {number + 1}"
        if not isinstance(document, Mapping) or "featureView" not in document:
            raise errors.PlanError(f"{where}: expected a mapping with featureView and rows")
        view = serving.view(str(document["featureView"]), document.get("namespace"))
        if view is None:
            served = ", ".join(f"{v.namespace}/{v.name}" for v in serving.feature_views)
            raise errors.PlanError(
                f"{where}: featureView {document['featureView']} is not served by "
                f"{serving.namespace}/{serving.feature_service}: it serves {served}"
            )
        known = {f.source for f in view.features}
        for index, raw in enumerate(document.get("rows") or ()):
            at = f"{where}: rows[{index}]"
            if not isinstance(raw, Mapping):
                raise errors.PlanError(f"{at}: expected a mapping of column to value")
            missing = [e.name for e in view.entities if e.name not in raw]
            if missing or EVENT_TIMESTAMP not in raw:
                needed = ", ".join(
                    [*missing, *([] if EVENT_TIMESTAMP in raw else [EVENT_TIMESTAMP])]
                )
                raise errors.PlanError(f"{at}: missing {needed}")
            keys = {e.name for e in view.entities}
            unknown = sorted(set(raw) - keys - known - {EVENT_TIMESTAMP})
            if unknown:
                raise errors.PlanError(
                    f"{at}: {view.name} serves no feature {', '.join(unknown)}: it serves "
                    f"{', '.join(sorted(known))}"
                )
            found.append(
                Row(
                    view=view,
                    entity={name: raw[name] for name in keys},
                    features={name: raw.get(name) for name in known},
                    event_time=_time(raw[EVENT_TIMESTAMP], f"{at}: {EVENT_TIMESTAMP}", now),
                )
            )
    return found


def read_rows(path: Path, serving: plan.ServingPlan) -> list[Row]:
    """The rows of the YAML file ``path``."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except OSError as exc:
        raise errors.PlanError(f"{path}: cannot read it: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise errors.PlanError(f"{path}: not valid YAML: {exc}") from exc
    return parse_rows(documents, serving, str(path), dt.datetime.now(dt.UTC))


def fill(store: memory.MemoryStore, serving: plan.ServingPlan, rows: Iterable[Row]) -> int:
    """Make every view's table (empty: its entities are NOT_FOUND) and store ``rows``;
    returns how many rows were kept."""
    for view in serving.feature_views:
        store.create_table(view.online_table)
    return sum(store.put(r.view, r.entity, r.features, event_time=r.event_time) for r in rows)
