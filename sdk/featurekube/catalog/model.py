"""What the catalog's pages show, built from FeatureViews and FeatureServices; pure.

:func:`build_catalog` turns the listed objects into a :class:`Catalog`: one
:class:`Entry` per object for search, and who uses which view (for lineage and for
"what a change would affect"). :func:`build_view_page` and :func:`build_service_page`
gather one object's page from its spec and status, with whatever the caller read
besides (statistics, the servers' pods, metrics), so that rendering only formats.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from featurekube.spec.v1alpha1 import FeatureService, FeatureView
from featurekube.spec.v1alpha1.monitoring import ExpectationResult

__all__ = [
    "Catalog",
    "Entry",
    "ExpectationRow",
    "FeatureRow",
    "Key",
    "PodHealth",
    "ServerHealth",
    "ServicePage",
    "ServingFigures",
    "Statistics",
    "StatisticsRow",
    "VersionRow",
    "ViewPage",
    "WindowRow",
    "build_catalog",
    "build_service_page",
    "build_view_page",
    "readers_of",
]

Kind = Literal["FeatureView", "FeatureService"]
Key = tuple[str, str]
"""(namespace, name) of an object."""


@dataclass(frozen=True)
class Entry:
    """One object as search lists it."""

    kind: Kind
    namespace: str
    name: str
    owner: str
    description: str
    entities: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]
    features: tuple[str, ...]
    ready: str
    """The Ready condition's status (True, False, Unknown), or "" before the operator saw it."""


@dataclass(frozen=True)
class Catalog:
    """Every object the viewer may list, and who uses what."""

    views: Mapping[Key, FeatureView]
    services: Mapping[Key, FeatureService]
    entries: tuple[Entry, ...]
    """Views then services, each by namespace and name."""
    consumers: Mapping[Key, tuple[Key, ...]]
    """The services that use each view (views nothing uses are absent)."""
    namespaces: tuple[str, ...]
    """The namespaces listed."""
    skipped: tuple[str, ...] = ()
    """Namespaces the viewer may not list, or objects that did not parse: said, not shown."""


def _ready(conditions: Sequence[object] | None) -> str:
    for condition in conditions or ():
        if getattr(condition, "type", None) == "Ready":
            return str(getattr(condition, "status", ""))
    return ""


def _namespace(meta_namespace: str | None) -> str:
    return meta_namespace or "default"


def _view_entry(view: FeatureView) -> Entry:
    spec = view.spec
    return Entry(
        kind="FeatureView",
        namespace=_namespace(view.metadata.namespace),
        name=view.metadata.name,
        owner=spec.owner,
        description=spec.description or "",
        entities=tuple(e.name for e in spec.entities),
        tags=tuple(sorted((spec.tags or {}).items())),
        features=tuple(spec.feature_names),
        ready=_ready(view.status.conditions if view.status else None),
    )


def _service_entry(service: FeatureService, views: Mapping[Key, FeatureView]) -> Entry:
    spec = service.spec
    namespace = _namespace(service.metadata.namespace)
    entities: dict[str, None] = {}
    for reference in spec.features:
        view = views.get((reference.namespace or namespace, reference.feature_view))
        for entity in view.spec.entities if view else ():
            entities[entity.name] = None
    resolved = service.status.resolved_features if service.status else None
    return Entry(
        kind="FeatureService",
        namespace=namespace,
        name=service.metadata.name,
        owner=spec.owner,
        description=spec.description or "",
        entities=tuple(entities),
        tags=tuple(sorted((spec.tags or {}).items())),
        features=tuple(f.name for f in resolved or ()),
        ready=_ready(service.status.conditions if service.status else None),
    )


def build_catalog(
    views: Iterable[FeatureView],
    services: Iterable[FeatureService],
    namespaces: Iterable[str],
    skipped: Iterable[str] = (),
) -> Catalog:
    """The catalog of ``views`` and ``services``, listed from ``namespaces``."""
    by_view = {(_namespace(v.metadata.namespace), v.metadata.name): v for v in views}
    by_service = {(_namespace(s.metadata.namespace), s.metadata.name): s for s in services}
    consumers: dict[Key, list[Key]] = {}
    for key, service in sorted(by_service.items()):
        for reference in service.spec.features:
            used = (reference.namespace or key[0], reference.feature_view)
            if key not in consumers.setdefault(used, []):
                consumers[used].append(key)
    entries = [_view_entry(by_view[k]) for k in sorted(by_view)]
    entries += [_service_entry(by_service[k], by_view) for k in sorted(by_service)]
    return Catalog(
        views=by_view,
        services=by_service,
        entries=tuple(entries),
        consumers={k: tuple(v) for k, v in consumers.items()},
        namespaces=tuple(sorted(set(namespaces))),
        skipped=tuple(skipped),
    )


def readers_of(service: FeatureService) -> tuple[str, ...]:
    """Who may read ``service``'s features: its spec.access.read, or by default every
    ServiceAccount of its namespace."""
    access = service.spec.access
    if access is None or access.read is None:
        return (f"{_namespace(service.metadata.namespace)}/*",)
    return tuple(access.read)


@dataclass(frozen=True)
class FeatureRow:
    """One feature of a view."""

    name: str
    type: str
    description: str
    origin: str
    """How it is computed: "column" or e.g. "sum(fare) over 1d"."""


@dataclass(frozen=True)
class WindowRow:
    """One materialization window of one version."""

    version: int
    start: dt.datetime
    end: dt.datetime
    state: str
    attempt: int
    rows: int | None
    engine: str
    finished_at: dt.datetime | None
    reason: str


@dataclass(frozen=True)
class VersionRow:
    """One version of a view and what happens to it."""

    version: int
    state: str
    """serving, materializing, retired or deleted."""
    materialized_until: dt.datetime | None
    since: dt.datetime | None
    """When it was retired, for a retired version."""


@dataclass(frozen=True)
class ExpectationRow:
    """One expectation and its last verdict."""

    feature: str
    check: str
    expected: str
    on_violation: str
    verdict: str
    """pass, warn, fail, or "not checked yet"."""
    rows: int | None
    message: str
    window_start: dt.datetime | None


@dataclass(frozen=True)
class StatisticsRow:
    """One feature's statistics in one window (a row of the view version's _stats table)."""

    window_start: dt.datetime
    window_end: dt.datetime
    feature: str
    type: str
    count: int
    nulls: int
    min: float | None
    max: float | None
    mean: float | None
    stddev: float | None
    median: float | None
    top_values: tuple[tuple[str, int], ...]
    psi: float | None


@dataclass(frozen=True)
class Statistics:
    """What the view version's statistics table gave, or why it gave nothing."""

    rows: tuple[StatisticsRow, ...] = ()
    """Every window read, oldest first."""
    missing: str = ""
    """Why there are none ("no statistics yet", or the error), when there are none."""


@dataclass(frozen=True)
class ViewPage:
    """Everything a FeatureView's page shows."""

    view: FeatureView
    key: Key
    features: tuple[FeatureRow, ...]
    source: tuple[tuple[str, str], ...]
    versions: tuple[VersionRow, ...]
    windows: tuple[WindowRow, ...]
    expectations: tuple[ExpectationRow, ...]
    drift: tuple[tuple[str, float, bool, dt.datetime], ...]
    drift_threshold: float | None
    freshness: tuple[tuple[str, str], ...]
    statistics: Statistics
    consumers: tuple[tuple[Key, tuple[str, ...]], ...]
    """The services that use the view and, for each, who may read it."""


@dataclass(frozen=True)
class PodHealth:
    """One feature server pod."""

    name: str
    phase: str
    ready: bool
    restarts: int


@dataclass(frozen=True)
class ServerHealth:
    """A FeatureService's feature servers, from its Deployment and pods."""

    desired: int | None = None
    ready: int | None = None
    available: int | None = None
    pods: tuple[PodHealth, ...] = ()
    missing: str = ""
    """Why nothing is known, when the Deployment could not be read."""


@dataclass(frozen=True)
class ServingFigures:
    """Request rate and latency of a service's servers, or why they are unavailable."""

    source: str = ""
    """Where they came from: a Prometheus URL or "the pods' /metrics"."""
    requests_per_second: float | None = None
    error_ratio: float | None = None
    p50_seconds: float | None = None
    p99_seconds: float | None = None
    requests_total: float | None = None
    unavailable: str = ""


@dataclass(frozen=True)
class ServicePage:
    """Everything a FeatureService's page shows."""

    service: FeatureService
    key: Key
    features: tuple[tuple[str, str, str, str], ...]
    """(feature, type, view as namespace/name, version)."""
    views: tuple[Key, ...]
    health: ServerHealth
    figures: ServingFigures
    readers: tuple[str, ...]
    sources: tuple[tuple[Key, str], ...] = field(default=())
    """The source of each view it uses, for lineage."""


def _origin(view: FeatureView) -> dict[str, str]:
    origins = {f.name: "column" for f in view.spec.features or ()}
    for aggregation in view.spec.aggregations or ():
        origins[aggregation.name] = aggregation.formula
    return origins


def describe_source(view: FeatureView) -> tuple[tuple[str, str], ...]:
    """The view's source as (field, value) pairs."""
    source = view.spec.source
    if source.batch is not None:
        batch = source.batch
        pairs = [
            ("kind", "batch"),
            ("path", batch.path),
            ("format", batch.format),
            ("event time", batch.timestamp_field),
        ]
        if batch.created_timestamp_field:
            pairs.append(("created time", batch.created_timestamp_field))
        return tuple(pairs)
    if source.push is not None:
        return (("kind", "push"), ("event time", source.push.timestamp_field))
    return (("kind", "unknown"),)


def source_label(view: FeatureView) -> str:
    """One line naming the view's source, for lineage."""
    pairs = dict(describe_source(view))
    return pairs.get("path") or f"{pairs.get('kind', 'source')} source"


def _versions(view: FeatureView) -> tuple[VersionRow, ...]:
    status = view.status
    if status is None:
        return ()
    serving = set(status.serving_versions or ())
    rows: dict[int, VersionRow] = {}
    for progress in status.progress or ():
        state = "serving" if progress.version in serving else "materializing"
        rows[progress.version] = VersionRow(
            progress.version, state, progress.materialized_until, None
        )
    for retired in status.retired_versions or ():
        state = "deleted" if retired.deleted else "retired"
        until = rows[retired.version].materialized_until if retired.version in rows else None
        rows[retired.version] = VersionRow(retired.version, state, until, retired.since)
    for version in serving - set(rows):
        rows[version] = VersionRow(version, "serving", None, None)
    return tuple(rows[v] for v in sorted(rows, reverse=True))


def _windows(view: FeatureView) -> tuple[WindowRow, ...]:
    found: list[WindowRow] = []
    for progress in (view.status.progress if view.status else None) or ():
        for window in progress.windows or ():
            found.append(
                WindowRow(
                    version=progress.version,
                    start=window.start,
                    end=window.end,
                    state=window.state,
                    attempt=window.attempt,
                    rows=window.rows.offline if window.rows else None,
                    engine=window.engine or "",
                    finished_at=window.finished_at,
                    reason=window.reason or "",
                )
            )
    found.sort(key=lambda w: (w.start, w.version), reverse=True)
    return tuple(found)


_CHECKS = ("notNull", "min", "max", "allowedValues")


def _expectations(view: FeatureView) -> tuple[ExpectationRow, ...]:
    results: dict[tuple[str, str], ExpectationResult] = {
        (r.feature, r.check): r for r in (view.status.expectations if view.status else None) or ()
    }
    rows: list[ExpectationRow] = []
    for expectation in view.spec.expectations or ():
        declared = {
            "notNull": "not null" if expectation.not_null else None,
            "min": f">= {expectation.min:g}" if expectation.min is not None else None,
            "max": f"<= {expectation.max:g}" if expectation.max is not None else None,
            "allowedValues": (
                "one of " + ", ".join(expectation.allowed_values)
                if expectation.allowed_values
                else None
            ),
        }
        for check in _CHECKS:
            expected = declared[check]
            result = results.pop((expectation.feature, check), None)
            if expected is None and result is None:
                continue
            rows.append(_expectation_row(expectation.feature, check, expected, result))
    # Results for checks no longer declared still say what the last window found.
    for (feature, check), result in sorted(results.items()):
        rows.append(_expectation_row(feature, check, None, result))
    return tuple(rows)


def _expectation_row(
    feature: str, check: str, expected: str | None, result: object | None
) -> ExpectationRow:
    if result is None:
        return ExpectationRow(feature, check, expected or "", "", "not checked yet", None, "", None)
    rows = int(getattr(result, "rows", 0))
    on_violation = str(getattr(result, "on_violation", ""))
    verdict = "pass" if rows == 0 else on_violation.lower()
    return ExpectationRow(
        feature=feature,
        check=check,
        expected=expected or "",
        on_violation=on_violation,
        verdict=verdict,
        rows=rows,
        message=str(getattr(result, "message", None) or ""),
        window_start=getattr(result, "window_start", None),
    )


def _freshness(view: FeatureView, now: dt.datetime) -> tuple[tuple[str, str], ...]:
    status = view.status
    declared = view.spec.monitoring.freshness_objective
    pairs: list[tuple[str, str]] = [("schedule", view.spec.materialization.schedule)]
    freshness = status.freshness if status else None
    if freshness is not None:
        pairs.append(("objective", freshness.objective))
        pairs.append(("state", "met" if freshness.met else "stale"))
        if freshness.since is not None:
            pairs.append(("since", _iso(freshness.since)))
    else:
        objective = declared or "twice the schedule's interval"
        pairs.append(("objective", objective))
        pairs.append(("state", "not measured yet"))
    window = status.last_materialized_window if status else None
    if window is not None:
        pairs.append(("materialized until", _iso(window.end)))
        pairs.append(("behind now", _age(now - window.end)))
    return tuple(pairs)


def _iso(moment: dt.datetime) -> str:
    utc = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%SZ")


def _age(delta: dt.timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


def build_view_page(
    catalog: Catalog, key: Key, statistics: Statistics, now: dt.datetime
) -> ViewPage | None:
    """The page of the view ``key``, or None when the catalog does not hold it."""
    view = catalog.views.get(key)
    if view is None:
        return None
    origins = _origin(view)
    types = view.spec.feature_types()
    descriptions = {f.name: f.description or "" for f in view.spec.features or ()}
    descriptions.update({a.name: a.description or "" for a in view.spec.aggregations or ()})
    features = tuple(
        FeatureRow(name, types.get(name, ""), descriptions.get(name, ""), origins.get(name, ""))
        for name in view.spec.feature_names
    )
    drift_spec = view.spec.monitoring.drift
    drift = tuple(
        (d.feature, d.psi, d.drifted, d.window_start)
        for d in (view.status.drift if view.status else None) or ()
    )
    consumers = tuple(
        (service, readers_of(catalog.services[service]))
        for service in catalog.consumers.get(key, ())
        if service in catalog.services
    )
    return ViewPage(
        view=view,
        key=key,
        features=features,
        source=describe_source(view),
        versions=_versions(view),
        windows=_windows(view),
        expectations=_expectations(view),
        drift=drift,
        drift_threshold=drift_spec.threshold if drift_spec else None,
        freshness=_freshness(view, now),
        statistics=statistics,
        consumers=consumers,
    )


def build_service_page(
    catalog: Catalog, key: Key, health: ServerHealth, figures: ServingFigures
) -> ServicePage | None:
    """The page of the service ``key``, or None when the catalog does not hold it."""
    service = catalog.services.get(key)
    if service is None:
        return None
    namespace = key[0]
    views = tuple(
        dict.fromkeys((r.namespace or namespace, r.feature_view) for r in service.spec.features)
    )
    status = service.status
    served = {
        (v.namespace, v.feature_view): v.version
        for v in (status.served_versions if status else None) or ()
    }
    features: list[tuple[str, str, str, str]] = []
    if status is not None and status.resolved_features:
        for feature in status.resolved_features:
            view_key = (feature.namespace or namespace, feature.feature_view or "")
            version = served.get(view_key)
            features.append(
                (
                    feature.name,
                    feature.type,
                    f"{view_key[0]}/{view_key[1]}" if feature.feature_view else "request time",
                    str(version) if version else "",
                )
            )
    else:
        # Before the operator resolved them: what the spec asks for, as far as known.
        for reference in service.spec.features:
            view_key = (reference.namespace or namespace, reference.feature_view)
            view = catalog.views.get(view_key)
            types = view.spec.feature_types() if view else {}
            names = reference.features or list(types)
            for name in names:
                features.append(
                    (
                        f"{reference.prefix or ''}{name}",
                        types.get(name, ""),
                        f"{view_key[0]}/{view_key[1]}",
                        str(reference.version or ""),
                    )
                )
    sources = tuple(
        (view_key, source_label(catalog.views[view_key]))
        for view_key in views
        if view_key in catalog.views
    )
    return ServicePage(
        service=service,
        key=key,
        features=tuple(features),
        views=views,
        health=health,
        figures=figures,
        readers=readers_of(service),
        sources=sources,
    )
