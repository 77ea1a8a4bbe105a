"""What ``featurekube list`` and ``featurekube describe`` show; pure.

From FeatureViews and FeatureServices as the API server holds them (spec and status),
:func:`list_rows` picks those matching the filters (owner, tags, entity) and turns
each into a row; :func:`describe_view` and :func:`describe_service` gather what one
object says about itself: its spec in brief, its versions, conditions, freshness,
expectations, drift and parity. :func:`render_table`, :func:`render_description` and
:func:`render_json` print them. No I/O: the command (``featurekube.cli.discover``)
reads the objects.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featurekube import errors
from featurekube.spec import v1alpha1

__all__ = [
    "MAX_TAG_FILTERS",
    "SERVICE_PREFIXES",
    "VIEW_PREFIXES",
    "Filters",
    "describe_service",
    "describe_view",
    "list_rows",
    "parse_reference",
    "parse_tag",
    "render_description",
    "render_json",
    "render_table",
    "resolve",
]

View = v1alpha1.FeatureView
Service = v1alpha1.FeatureService

VIEW_PREFIXES = ("fv", "featureview", "featureviews")
"""How a reference names a FeatureView: ``fv/NAME``."""
SERVICE_PREFIXES = ("fs", "fsvc", "featureservice", "featureservices")
"""How a reference names a FeatureService: ``fs/NAME``."""
MAX_TAG_FILTERS = 16
"""``--tag`` filters one command takes."""
_CELL = 60
"""Characters of a table cell of ``list`` before it is cut short."""
_DESCRIBED_CELL = 400
"""Characters of a table cell of ``describe`` (a condition's message) before it is cut."""


@dataclass(frozen=True)
class Filters:
    """What ``featurekube list`` keeps: objects matching every filter given."""

    owner: str | None = None
    """spec.owner, compared without regard to case."""
    tags: tuple[tuple[str, str | None], ...] = ()
    """spec.tags that must be there: key and value, or key alone (any value)."""
    entity: str | None = None
    """A join key: views of that entity, and services serving one of them."""


def parse_tag(text: str) -> tuple[str, str | None]:
    """``team=rides`` -> ``("team", "rides")``; ``team`` -> ``("team", None)``.

    >>> parse_tag("team=rides"), parse_tag("pii")
    (('team', 'rides'), ('pii', None))
    """
    key, sep, value = text.partition("=")
    if not key.strip() or len(text) > 512:
        raise errors.CatalogQueryError(
            f"--tag {text[:80]!r}: expected KEY=VALUE (or KEY alone, for any value) of at "
            "most 512 characters, e.g. --tag team=rides"
        )
    return key.strip(), value.strip() if sep else None


def _key(obj: View | Service) -> tuple[str, str]:
    return obj.metadata.namespace or "default", obj.metadata.name


def _condition(obj: View | Service, kind: str) -> Any:
    status = obj.status
    return next((c for c in (status.conditions if status else None) or () if c.type == kind), None)


def _serves(service: Service, views: Mapping[tuple[str, str], View], entity: str) -> bool:
    namespace = service.metadata.namespace or "default"
    for ref in service.spec.features:
        view = views.get((ref.namespace or namespace, ref.feature_view))
        if view is not None and any(e.name == entity for e in view.spec.entities):
            return True
    return False


def _matches(obj: View | Service, filters: Filters, views: Mapping[tuple[str, str], View]) -> bool:
    spec = obj.spec
    if filters.owner is not None and spec.owner.casefold() != filters.owner.casefold():
        return False
    tags = spec.tags or {}
    for key, value in filters.tags:
        if key not in tags or (value is not None and tags[key] != value):
            return False
    if filters.entity is not None:
        if isinstance(obj, View):
            return any(e.name == filters.entity for e in obj.spec.entities)
        return _serves(obj, views, filters.entity)
    return True


def _service_entities(service: Service, views: Mapping[tuple[str, str], View]) -> list[str]:
    namespace = service.metadata.namespace or "default"
    found: dict[str, None] = {}
    for ref in service.spec.features:
        view = views.get((ref.namespace or namespace, ref.feature_view))
        for entity in view.spec.entities if view else ():
            found[entity.name] = None
    return list(found)


def list_rows(
    views: Iterable[View], services: Iterable[Service], filters: Filters = Filters()
) -> list[dict[str, Any]]:
    """One row per view and service matching ``filters``, by namespace, kind and name.

    A row: kind, namespace, name, reference (``fv/NAME`` or ``fs/NAME``), owner,
    entities, ready (True, False or Unknown), serving (a view's data version), fresh
    (a view's freshness objective met, None when not evaluated), tags, description.
    """
    by_key = {_key(v): v for v in views}
    rows: list[dict[str, Any]] = []
    for view in by_key.values():
        if not _matches(view, filters, by_key):
            continue
        status = view.status
        freshness = status.freshness if status else None
        rows.append(
            _row(
                view,
                "fv",
                [e.name for e in view.spec.entities],
                serving=status.version if status else None,
                fresh=freshness.met if freshness else None,
            )
        )
    for service in services:
        if _matches(service, filters, by_key):
            rows.append(_row(service, "fs", _service_entities(service, by_key)))
    order = {"FeatureView": 0, "FeatureService": 1}
    return sorted(rows, key=lambda r: (r["namespace"], order[r["kind"]], r["name"]))


def _row(
    obj: View | Service,
    prefix: str,
    entities: list[str],
    serving: int | None = None,
    fresh: bool | None = None,
) -> dict[str, Any]:
    namespace, name = _key(obj)
    ready = _condition(obj, "Ready")
    return {
        "kind": obj.kind,
        "namespace": namespace,
        "name": name,
        "reference": f"{prefix}/{name}",
        "owner": obj.spec.owner,
        "entities": entities,
        "ready": ready.status if ready else "Unknown",
        "serving": serving,
        "fresh": fresh,
        "tags": dict(sorted((obj.spec.tags or {}).items())),
        "description": obj.spec.description,
    }


LIST_COLUMNS = (
    ("NAMESPACE", "namespace"),
    ("NAME", "reference"),
    ("OWNER", "owner"),
    ("ENTITIES", "entities"),
    ("READY", "ready"),
    ("SERVING", "serving"),
    ("FRESH", "fresh"),
    ("TAGS", "tags"),
)
"""The table of ``featurekube list``: header and row key."""


def _cell(value: Any, limit: int = _CELL) -> str:
    if value is None or value == [] or value == {}:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, dict):
        text = ",".join(f"{k}={v}" for k, v in value.items())
    elif isinstance(value, list | tuple):
        text = ",".join(map(str, value))
    else:
        text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]] = LIST_COLUMNS,
    indent: str = "",
    limit: int = _CELL,
) -> str:
    """Rows as aligned columns under their headers, as kubectl prints them.

    >>> print(render_table([{"a": "x", "b": None}], [("A", "a"), ("B", "b")]))
    A  B
    x  -
    """
    cells = [[header for header, _ in columns]]
    cells += [[_cell(row.get(key), limit) for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        indent + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def render_json(value: Any) -> str:
    """``value`` as indented JSON, times in ISO 8601 UTC."""
    return json.dumps(value, indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _iso(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    utc = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return utc.isoformat().replace("+00:00", "Z")


# -- describe ---------------------------------------------------------------------------


def parse_reference(reference: str) -> tuple[str | None, str]:
    """``fv/NAME`` -> ``("FeatureView", NAME)``, ``fs/NAME`` -> ``("FeatureService",
    NAME)``, a bare name -> ``(None, NAME)``: whichever exists.

    >>> parse_reference("fv/driver-profile"), parse_reference("eta-model")
    (('FeatureView', 'driver-profile'), (None, 'eta-model'))
    """
    prefix, slash, name = reference.rpartition("/")
    kind: str | None = None
    if slash:
        if prefix.lower() in VIEW_PREFIXES:
            kind = "FeatureView"
        elif prefix.lower() in SERVICE_PREFIXES:
            kind = "FeatureService"
        else:
            raise errors.CatalogQueryError(
                f"{reference[:300]!r}: {prefix[:60]!r} is neither fv (a FeatureView) nor fs "
                "(a FeatureService): write fv/NAME, fs/NAME, or the name alone"
            )
    if not name or len(name) > 253:
        raise errors.CatalogQueryError(
            f"{reference[:300]!r}: expected fv/NAME, fs/NAME or NAME, the name at most 253 "
            "characters"
        )
    return kind, name


def resolve(
    reference: str, namespace: str, views: Iterable[View], services: Iterable[Service]
) -> View | Service:
    """The object ``reference`` names in ``namespace``, of the objects read there.

    A bare name must name exactly one of a view and a service; both is ambiguous.
    """
    kind, name = parse_reference(reference)
    candidates: list[View | Service] = [*views, *services]
    found = [o for o in candidates if _key(o) == (namespace, name) and kind in (None, o.kind)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise errors.CatalogQueryError(
            f"{name!r} is ambiguous in namespace {namespace}: both FeatureView "
            f"{namespace}/{name} and FeatureService {namespace}/{name} exist; say which with "
            f"fv/{name} or fs/{name}"
        )
    what = kind or "FeatureView or FeatureService"
    raise errors.ClusterError(
        f"no {what} {name!r} in namespace {namespace}: check the name and --namespace "
        "(featurekube list -A lists every one you may see)"
    )


def _conditions(obj: View | Service) -> list[dict[str, Any]]:
    status = obj.status
    return [
        {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
            "lastTransitionTime": _iso(c.last_transition_time),
        }
        for c in (status.conditions if status else None) or ()
    ]


def _source(spec: v1alpha1.FeatureViewSpec) -> dict[str, Any]:
    batch, push = spec.source.batch, spec.source.push
    if batch is not None:
        return {
            "batch": batch.path,
            "format": batch.format,
            "timestampField": batch.timestamp_field,
        }
    return {"push": True, "timestampField": push.timestamp_field if push else None}


def _features(spec: v1alpha1.FeatureViewSpec) -> list[dict[str, Any]]:
    if spec.features:
        return [
            {"name": f.name, "type": f.type, "description": f.description} for f in spec.features
        ]
    return [
        {
            "name": a.name,
            "type": a.value_type,
            "aggregation": a.formula,
            "description": a.description,
        }
        for a in spec.aggregations or ()
    ]


def describe_view(view: View) -> dict[str, Any]:
    """What ``featurekube describe fv/NAME`` shows, as data."""
    spec, status = view.spec, view.status
    materialization = spec.materialization
    progress = [
        {
            "version": p.version,
            "materializedUntil": _iso(p.materialized_until),
            "windowsPending": len(p.windows or ()),
        }
        for p in (status.progress if status else None) or ()
    ]
    freshness = status.freshness if status else None
    return {
        "kind": "FeatureView",
        "namespace": view.metadata.namespace or "default",
        "name": view.metadata.name,
        "owner": spec.owner,
        "description": spec.description,
        "tags": dict(sorted((spec.tags or {}).items())),
        "entities": [{"name": e.name, "type": e.type} for e in spec.entities],
        "source": _source(spec),
        "transformation": spec.transformation.sql if spec.transformation else None,
        "features": _features(spec),
        "aggregationInterval": spec.aggregation_interval,
        "ttl": spec.ttl,
        "materialization": {
            "schedule": materialization.schedule,
            "online": materialization.online,
            "offline": materialization.offline,
            "engine": materialization.engine,
        },
        "sharedWith": list(spec.shared_with or ()),
        "versions": {
            "serving": status.version if status else None,
            "latest": status.latest_version if status else None,
            "servingVersions": list((status.serving_versions if status else None) or ()),
            "progress": progress,
        },
        "lastMaterializedWindow": (
            {
                "start": _iso(status.last_materialized_window.start),
                "end": _iso(status.last_materialized_window.end),
            }
            if status and status.last_materialized_window
            else None
        ),
        "onlineTable": status.online_table if status else None,
        "offlineUri": status.offline_uri if status else None,
        "conditions": _conditions(view),
        "freshness": (
            {
                "objective": freshness.objective,
                "met": freshness.met,
                "since": _iso(freshness.since),
            }
            if freshness
            else None
        ),
        "expectations": [
            {
                "feature": r.feature,
                "check": r.check,
                "onViolation": r.on_violation,
                "rows": r.rows,
                "message": r.message,
                "windowStart": _iso(r.window_start),
            }
            for r in (status.expectations if status else None) or ()
        ],
        "drift": [
            {
                "feature": d.feature,
                "psi": d.psi,
                "drifted": d.drifted,
                "windowStart": _iso(d.window_start),
            }
            for d in (status.drift if status else None) or ()
        ],
    }


def describe_service(service: Service) -> dict[str, Any]:
    """What ``featurekube describe fs/NAME`` shows, as data."""
    spec, status = service.spec, service.status
    namespace = service.metadata.namespace or "default"
    parity = status.parity if status else None
    return {
        "kind": "FeatureService",
        "namespace": namespace,
        "name": service.metadata.name,
        "owner": spec.owner,
        "description": spec.description,
        "tags": dict(sorted((spec.tags or {}).items())),
        "views": [
            {
                "featureView": ref.feature_view,
                "namespace": ref.namespace or namespace,
                "features": list(ref.features or ()) or "all",
                "version": ref.version,
                "prefix": ref.prefix,
            }
            for ref in spec.features
        ],
        "transformations": [
            {"name": t.name, "type": t.type, "expression": t.expression}
            for t in spec.transformations or ()
        ],
        "server": {
            "replicas": spec.server.replicas,
            "port": spec.server.port,
            "autoscaling": bool(spec.server.autoscaling),
        },
        "endpoint": status.endpoint if status else None,
        "features": [
            {
                "name": f.name,
                "type": f.type,
                "featureView": f.feature_view,
                "namespace": f.namespace,
            }
            for f in (status.resolved_features if status else None) or ()
        ],
        "versions": [
            {"featureView": v.feature_view, "namespace": v.namespace, "version": v.version}
            for v in (status.served_versions if status else None) or ()
        ],
        "conditions": _conditions(service),
        "parity": (
            {
                "checkedAt": _iso(parity.checked_at),
                "entities": parity.entities,
                "values": parity.values,
                "mismatches": parity.mismatches,
                "mismatchRate": parity.mismatch_rate,
                "examples": [e.model_dump(by_alias=True) for e in parity.examples or ()],
            }
            if parity
            else None
        ),
    }


def _field(label: str, value: Any) -> str:
    return f"{label + ':':<17}{_text(value)}"


def _text(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _section(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    if not rows:
        return [_field(title, None)]
    header = [(re.sub(r"([a-z])([A-Z])", r"\1 \2", c).upper(), c) for c in columns]
    return [f"{title}:", render_table(rows, header, indent="  ", limit=_DESCRIBED_CELL)]


def render_description(described: Mapping[str, Any]) -> str:
    """A description from :func:`describe_view` or :func:`describe_service`, for people."""
    lines = [
        f"{described['kind']} {described['namespace']}/{described['name']}",
        _field("Owner", described["owner"]),
        _field("Description", described["description"]),
        _field("Tags", described["tags"]),
    ]
    if described["kind"] == "FeatureView":
        lines += _view_lines(described)
    else:
        lines += _service_lines(described)
    lines += _section(
        "Conditions", described["conditions"], ("type", "status", "reason", "message")
    )
    if described["kind"] == "FeatureView":
        lines += _health_lines(described)
    else:
        parity = described["parity"]
        lines.append(
            _field(
                "Parity",
                f"{parity['mismatches']} of {parity['values']} values differ "
                f"({parity['mismatchRate']:.2%}) over {parity['entities']} entities, "
                f"checked {parity['checkedAt']}"
                if parity
                else None,
            )
        )
        if parity and parity["examples"]:
            lines += _section(
                "Mismatches", parity["examples"], ("feature", "entity", "online", "offline")
            )
    return "\n".join(lines)


def _view_lines(described: Mapping[str, Any]) -> list[str]:
    source = described["source"]
    materialization = described["materialization"]
    versions = described["versions"]
    stores = [s for s in ("online", "offline") if materialization[s]]
    window = described["lastMaterializedWindow"]
    lines = [
        _field("Entities", [f"{e['name']} ({e['type']})" for e in described["entities"]]),
        _field(
            "Source",
            f"{source['batch']} ({source['format']}, event time {source['timestampField']})"
            if "batch" in source
            else f"push (event time {source['timestampField']})",
        ),
        _field("Transformation", " ".join((described["transformation"] or "").split()) or None),
        _field(
            "Schedule",
            f"{materialization['schedule']}, to {' and '.join(stores) or 'no store'}, engine "
            f"{materialization['engine']}",
        ),
        _field("TTL", described["ttl"]),
        _field("Shared with", described["sharedWith"]),
        _field(
            "Versions",
            f"serving {_text(versions['serving'])}, latest {_text(versions['latest'])}"
            + (
                f", also serving {_text(versions['servingVersions'])}"
                if len(versions["servingVersions"]) > 1
                else ""
            ),
        ),
        _field("Materialized", f"[{window['start']}, {window['end']})" if window else None),
        _field("Online table", described["onlineTable"]),
        _field("Offline table", described["offlineUri"]),
    ]
    lines += _section("Features", described["features"], _feature_columns(described["features"]))
    lines += _section(
        "Progress", versions["progress"], ("version", "materializedUntil", "windowsPending")
    )
    return lines


def _feature_columns(features: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    if any("aggregation" in f for f in features):
        return ("name", "type", "aggregation", "description")
    return ("name", "type", "description")


def _health_lines(described: Mapping[str, Any]) -> list[str]:
    freshness = described["freshness"]
    lines = [
        _field(
            "Freshness",
            (
                f"{'met' if freshness['met'] else 'NOT met'} (objective {freshness['objective']}) "
                f"since {freshness['since']}"
            )
            if freshness
            else None,
        )
    ]
    lines += _section(
        "Expectations",
        described["expectations"],
        ("feature", "check", "onViolation", "rows", "windowStart", "message"),
    )
    lines += _section("Drift", described["drift"], ("feature", "psi", "drifted", "windowStart"))
    return lines


def _service_lines(described: Mapping[str, Any]) -> list[str]:
    server = described["server"]
    lines = [
        _field("Endpoint", described["endpoint"]),
        _field(
            "Server",
            f"{server['replicas']} replicas{' (autoscaling)' if server['autoscaling'] else ''}, "
            f"port {server['port']}",
        ),
    ]
    lines += _section(
        "Views", described["views"], ("featureView", "namespace", "features", "version", "prefix")
    )
    lines += _section(
        "Features", described["features"], ("name", "type", "featureView", "namespace")
    )
    lines += _section(
        "Transformations", described["transformations"], ("name", "type", "expression")
    )
    lines += _section("Versions", described["versions"], ("featureView", "namespace", "version"))
    return lines
