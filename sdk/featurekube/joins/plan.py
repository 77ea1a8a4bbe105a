"""The plan of a point-in-time join: which views, columns, keys and time bounds; pure.

A request for historical features names features (``"driver-profile:rating"``) or a
FeatureService; :func:`resolve_references` and :func:`resolve_service` turn either
into :class:`Selection`\\ s of views. :func:`plan_join` checks them against what the
caller's entity rows hold (an :class:`EntityFrame`, described by the engine that reads
them) and returns a :class:`JoinPlan`: per view, its offline table, join keys, feature
columns, TTL and the range of event times that can matter, so that an engine reads
only the partitions and columns it needs. The DuckDB and Spark engines each execute a
plan; neither decides anything the plan says.

The rule every engine implements (docs/semantics.md): for an entity row with keys
K at time T, a view gives its row of K with the greatest event time E <= T, and, if
the view has a TTL, T - L <= ttl, L being the entity's latest event as of that row
(the row's own event time, or for aggregations its ``latest_event_timestamp``); ties
on E go to the greater created timestamp; no such row gives nulls. Every entity row
comes back, in the caller's order.

Errors::

    FeaturekubeError
    └── RetrievalError                  historical features could not be retrieved
        ├── FeatureReferenceError       a reference is malformed, repeated, or collides
        │   ├── FeatureViewNotFoundError     no FeatureView of that name
        │   ├── FeatureServiceNotFoundError  no FeatureService of that name
        │   └── FeatureNotFoundError         the view has no feature of that name
        ├── EntityFrameError            the entity rows lack a column, or type it wrongly
        └── OfflineStoreError           a view's offline table is missing or unreadable
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from featurekube import errors, versions
from featurekube.offline import layout
from featurekube.spec import v1alpha1

if TYPE_CHECKING:
    from featurekube import ondemand

__all__ = [
    "DEFAULT_TIMESTAMP_COLUMN",
    "ColumnKind",
    "EntityColumn",
    "EntityFrame",
    "EntityFrameError",
    "FeatureColumn",
    "FeatureNotFoundError",
    "FeatureReference",
    "FeatureReferenceError",
    "FeatureServiceNotFoundError",
    "FeatureViewNotFoundError",
    "JoinPlan",
    "KeyColumn",
    "OfflineStoreError",
    "RetrievalError",
    "Selection",
    "VersionKey",
    "ViewJoin",
    "ViewKey",
    "compile_transformations",
    "plan_join",
    "resolve_references",
    "resolve_service",
    "utc_from_micros",
]

DEFAULT_TIMESTAMP_COLUMN = "event_timestamp"
"""The entity frame's column holding each row's time T, unless the caller names another."""

ViewKey = tuple[str, str]
"""(namespace, name) of a FeatureView."""

VersionKey = tuple[str, str, int]
"""(namespace, name, version) of one data version of a FeatureView."""

ColumnKind = Literal["integer", "string", "timestamp", "other"]
"""What the join needs to know of an entity column's type, whatever engine holds it."""


# The errors of retrieval, defined with the whole tree in featurekube.errors.
RetrievalError = errors.RetrievalError
FeatureReferenceError = errors.FeatureReferenceError
FeatureViewNotFoundError = errors.FeatureViewNotFoundError
FeatureServiceNotFoundError = errors.FeatureServiceNotFoundError
FeatureNotFoundError = errors.FeatureNotFoundError
EntityFrameError = errors.EntityFrameError
OfflineStoreError = errors.OfflineStoreError


@dataclass(frozen=True)
class FeatureReference:
    """``[namespace/]feature-view:feature``, e.g. ``rides/driver-profile:rating``."""

    namespace: str | None
    feature_view: str
    feature: str

    @classmethod
    def parse(cls, text: str) -> FeatureReference:
        """Parse a reference; raises :class:`FeatureReferenceError` if malformed.

        >>> FeatureReference.parse("rides/driver-profile:rating")
        FeatureReference(namespace='rides', feature_view='driver-profile', feature='rating')
        >>> FeatureReference.parse("driver-profile:rating").namespace is None
        True
        """
        view, colon, feature = text.partition(":")
        namespace, slash, name = view.rpartition("/")
        if not colon or not feature or not name or ":" in feature or (slash and not namespace):
            raise FeatureReferenceError(
                f"{text!r} is not a feature reference: write FEATURE_VIEW:FEATURE or "
                "NAMESPACE/FEATURE_VIEW:FEATURE, e.g. 'driver-profile:rating'"
            )
        return cls(namespace or None, name, feature)

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{where}{self.feature_view}:{self.feature}"


@dataclass(frozen=True)
class Selection:
    """Features taken from one view, and the prefix their output columns get."""

    view: v1alpha1.FeatureView
    """The view as the version read has it: that version's features and types."""
    features: tuple[str, ...]
    prefix: str = ""
    version: int | None = None
    """The data version read; None: the view as defined (no status to say)."""
    table_uri: str | None = None
    """That version's offline table, when its snapshot says where."""

    @property
    def key(self) -> ViewKey:
        return _key_of(self.view)


@dataclass(frozen=True)
class EntityColumn:
    """One column of the caller's entity rows, as the engine reading them sees it."""

    name: str
    kind: ColumnKind
    type_name: str
    """The type as the caller's library spells it (``int32``, ``timestamp[ns]``), for
    messages."""


@dataclass(frozen=True)
class EntityFrame:
    """What the join needs to know of the caller's entity rows before reading them."""

    columns: tuple[EntityColumn, ...]
    earliest: dt.datetime | None = None
    """The earliest entity time T (UTC), rounded down to the microsecond; None when no
    row has a time."""
    latest: dt.datetime | None = None
    """The latest T (UTC), rounded up to the microsecond."""

    def column(self, name: str) -> EntityColumn | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class KeyColumn:
    """A join key: its column name, the same in the entity rows and the view's table."""

    name: str
    type: Literal["int64", "string"]


@dataclass(frozen=True)
class FeatureColumn:
    """A feature read from a view's table (``name``), returned as ``output``."""

    name: str
    output: str
    type: str
    """Its value type (int64, float64, string, bool, timestamp, float64_array)."""


@dataclass(frozen=True)
class ViewJoin:
    """How one view joins the entity rows."""

    namespace: str
    name: str
    table_uri: str
    """The view's offline Delta table."""
    keys: tuple[KeyColumn, ...]
    features: tuple[FeatureColumn, ...]
    ttl: dt.timedelta | None
    """Values whose latest event is older than this at T are not joined; None: no
    limit."""
    ttl_from: str
    """The column of each row's latest event, which the TTL counts from:
    ``event_timestamp``, or for aggregation views ``latest_event_timestamp`` (null in
    a row: its event time)."""
    earliest: dt.datetime | None
    """No row with an earlier event time can be joined (T - ttl of the earliest T);
    None: no lower bound (the view has no TTL)."""
    latest: dt.datetime | None
    """No row with a later event time can be joined (the latest T); None: no entity
    row has a time, so no row at all can be joined."""

    @property
    def where(self) -> str:
        """``FeatureView namespace/name``, for messages."""
        return f"FeatureView {self.namespace}/{self.name}"

    @property
    def columns(self) -> tuple[str, ...]:
        """The table's columns the join reads, keys first."""
        latest = (
            () if self.ttl is None or self.ttl_from == layout.EVENT_TIMESTAMP else (self.ttl_from,)
        )
        return (
            *(k.name for k in self.keys),
            layout.EVENT_TIMESTAMP,
            layout.CREATED_TIMESTAMP,
            *latest,
            *dict.fromkeys(f.name for f in self.features),
        )

    @property
    def partitions(self) -> tuple[dt.date | None, dt.date | None]:
        """The first and last ``event_date`` partitions that can hold a joined row."""
        first = self.earliest.date() if self.earliest is not None else None
        last = self.latest.date() if self.latest is not None else None
        return first, last


@dataclass(frozen=True)
class JoinPlan:
    """Everything an engine needs to join historical features onto entity rows."""

    timestamp_column: str
    """The entity rows' time column (T)."""
    entity_columns: tuple[str, ...]
    """Every column of the caller's entity rows, in order; all are returned unchanged."""
    views: tuple[ViewJoin, ...]
    request_fields: tuple[v1alpha1.RequestField, ...] = ()
    """Columns of the entity rows that request-time transformations read."""
    transformations: tuple[v1alpha1.RequestTransformation, ...] = ()
    """Request-time transformations, computed after the join, in this order."""

    @property
    def feature_columns(self) -> tuple[FeatureColumn, ...]:
        return tuple(f for v in self.views for f in v.features)

    @property
    def output_columns(self) -> tuple[str, ...]:
        """The result's columns: the entity columns, the features, the transformations."""
        return (
            *self.entity_columns,
            *(f.output for f in self.feature_columns),
            *(t.name for t in self.transformations),
        )

    @property
    def key_columns(self) -> tuple[KeyColumn, ...]:
        """Every join key of every view, once."""
        return tuple({k.name: k for v in self.views for k in v.keys}.values())

    def transformation_inputs(self) -> dict[str, str]:
        """Request field and feature output name -> value type, what transformations read."""
        types: dict[str, str] = {f.name: f.type for f in self.request_fields}
        types.update({f.output: f.type for f in self.feature_columns})
        return types


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def utc_from_micros(micros: int) -> dt.datetime:
    """Microseconds since the epoch as a UTC datetime.

    >>> utc_from_micros(86_400_000_001)
    datetime.datetime(1970, 1, 2, 0, 0, 0, 1, tzinfo=datetime.timezone.utc)
    """
    return _EPOCH + dt.timedelta(microseconds=micros)


def _key_of(view: v1alpha1.FeatureView) -> ViewKey:
    return (view.metadata.namespace or "default", view.metadata.name)


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _find_view(
    views: Mapping[ViewKey, v1alpha1.FeatureView], namespace: str, name: str, context: str
) -> v1alpha1.FeatureView:
    view = views.get((namespace, name))
    if view is None:
        known = sorted(n for ns, n in views if ns == namespace)
        raise FeatureViewNotFoundError(
            f"{context}: no FeatureView {namespace}/{name}{_suggest(name, known)}; known in "
            f"namespace {namespace}: {', '.join(known) or 'none'}"
        )
    return view


def _check_features(
    view: v1alpha1.FeatureView,
    names: Iterable[str],
    context: str,
    live: v1alpha1.FeatureView | None = None,
    version: int | None = None,
) -> None:
    """Refuse a feature ``view`` (as ``version`` has it) lacks; one that only the
    ``live`` spec has arrives with a version still backfilling, and is named so."""
    have = view.spec.feature_names
    namespace, view_name = _key_of(view)
    for name in names:
        if name in have:
            continue
        if live is not None and name in live.spec.feature_names:
            latest = live.status.latest_version if live.status else None
            coming = f"version {latest}" if latest else "a later version"
            raise FeatureNotFoundError(
                f"{context}: feature {name!r} of FeatureView {namespace}/{view_name} arrives "
                f"with {coming}, still backfilling; version {version} serves now and has "
                f"{', '.join(have)}. Training reads what the serving version holds: leave "
                f"{name!r} out, or wait until the view is Ready on {coming}"
            )
        at = f" version {version}" if version is not None else ""
        raise FeatureNotFoundError(
            f"{context}: FeatureView {namespace}/{view_name}{at} has no feature {name!r}"
            f"{_suggest(name, have)}; it has {', '.join(have)}"
        )


def _at_version(
    view: v1alpha1.FeatureView,
    snapshots: Mapping[VersionKey, Mapping[str, Any]] | None,
    pinned: int | None,
    context: str,
) -> tuple[v1alpha1.FeatureView, int | None, str | None]:
    """``view`` as the version a pull reads has it — ``pinned``, else the one it
    serves — with that version and its offline table when the snapshot says where.

    Without ``snapshots`` (definitions read from files), the view as defined. Raises
    :class:`FeatureReferenceError` for a pinned version that does not exist, and
    :class:`OfflineStoreError` when the serving version's schema cannot be known.
    """
    namespace, name = _key_of(view)
    status = view.status
    version = pinned or (status.version if status is not None else None)
    if snapshots is None or version is None:
        return view, version, None
    document = snapshots.get((namespace, name, version))
    frozen = (document or {}).get("spec")
    if not isinstance(frozen, Mapping):
        if pinned is not None:
            have = sorted(v for ns, n, v in snapshots if (ns, n) == (namespace, name))
            raise FeatureReferenceError(
                f"{context}: FeatureView {namespace}/{name} has no version {pinned} (its "
                f"versions: {', '.join(map(str, have)) or 'none found'})"
            )
        if status is None or status.latest_version in (None, version):
            # The version serving is the live spec's own: same schema.
            return view, version, None
        raise OfflineStoreError(
            f"{context}: cannot tell the schema of version {version} of FeatureView "
            f"{namespace}/{name}, which serves while a newer one backfills: its snapshot "
            f"(ConfigMap {namespace}/{versions.snapshot_name(name, version)}) is missing or "
            "may not be read. Grant get and list on configmaps in that namespace"
        )
    resolved = versions.resolve_version_spec(frozen, view.spec)
    table = (document or {}).get("resolved", {}).get("offlineUri")
    served = view.model_copy(update={"spec": resolved})
    return served, version, str(table) if table else None


def resolve_references(
    references: Sequence[str],
    views: Mapping[ViewKey, v1alpha1.FeatureView],
    namespace: str,
    *,
    snapshots: Mapping[VersionKey, Mapping[str, Any]] | None = None,
) -> tuple[Selection, ...]:
    """The views and features ``references`` name, one selection per view, in order of
    first mention; a reference without a namespace is looked up in ``namespace``.

    With ``snapshots`` (each version's snapshot document, from a cluster), each view is
    read as the version it serves has it: that version's features and types, never
    the live spec's, while a newer version backfills.

    Raises :class:`FeatureReferenceError` (or a subclass) for a malformed, unknown or
    repeated reference.
    """
    if not references:
        raise FeatureReferenceError(
            "no features asked for: pass features=['FEATURE_VIEW:FEATURE', ...] or "
            "feature_service='NAME'"
        )
    chosen: dict[ViewKey, list[str]] = {}
    read: dict[ViewKey, tuple[v1alpha1.FeatureView, int | None, str | None]] = {}
    seen: set[FeatureReference] = set()
    for text in references:
        reference = FeatureReference.parse(text)
        where = reference.namespace or namespace
        context = f"feature {text!r}"
        live = _find_view(views, where, reference.feature_view, context)
        key = _key_of(live)
        if key not in read:
            read[key] = _at_version(live, snapshots, None, context)
        view, version, _ = read[key]
        _check_features(view, [reference.feature], context, live, version)
        resolved = FeatureReference(where, reference.feature_view, reference.feature)
        if resolved in seen:
            raise FeatureReferenceError(f"feature {resolved} is asked for twice: list it once")
        seen.add(resolved)
        chosen.setdefault(key, []).append(reference.feature)
    return tuple(
        Selection(read[key][0], tuple(names), version=read[key][1], table_uri=read[key][2])
        for key, names in chosen.items()
    )


def resolve_service(
    service: v1alpha1.FeatureService,
    views: Mapping[ViewKey, v1alpha1.FeatureView],
    *,
    snapshots: Mapping[VersionKey, Mapping[str, Any]] | None = None,
) -> tuple[Selection, ...]:
    """The views, features and prefixes of a FeatureService's ``spec.features``; with
    ``snapshots``, each view as the version the reference pins, else the one it
    serves, has it (see :func:`resolve_references`)."""
    namespace = service.metadata.namespace or "default"
    selections = []
    for index, reference in enumerate(service.spec.features):
        context = f"FeatureService {namespace}/{service.metadata.name} spec.features[{index}]"
        live = _find_view(views, reference.namespace or namespace, reference.feature_view, context)
        view, version, table = _at_version(live, snapshots, reference.version, context)
        names = tuple(reference.features or view.spec.feature_names)
        _check_features(view, names, context, None if reference.version else live, version)
        selections.append(Selection(view, names, reference.prefix or "", version, table))
    return tuple(selections)


def _check_key(entity: EntityFrame, key: v1alpha1.Entity, where: str) -> None:
    column = entity.column(key.name)
    if column is None:
        raise EntityFrameError(
            f"the entity rows have no column {key.name!r}, the join key of {where}; "
            f"they have {', '.join(c.name for c in entity.columns) or 'no columns'}. "
            f"Add it ({key.type})"
        )
    expected = "integer" if key.type == "int64" else "string"
    if column.kind != expected:
        hint = ".astype('int64')" if key.type == "int64" else ".astype(str)"
        raise EntityFrameError(
            f"entity column {key.name!r} is {column.type_name}, but {where} types its join "
            f"key {key.name} as {key.type}: convert the column (in pandas: "
            f"df[{key.name!r}] = df[{key.name!r}]{hint})"
        )


def _check_timestamp(entity: EntityFrame, name: str) -> None:
    column = entity.column(name)
    if column is None:
        raise EntityFrameError(
            f"the entity rows have no timestamp column {name!r}, the time at which each "
            f"row's features are wanted; they have "
            f"{', '.join(c.name for c in entity.columns) or 'no columns'}. Add it, or name "
            "the column with timestamp_column=..."
        )
    if column.kind != "timestamp":
        raise EntityFrameError(
            f"entity column {name!r} holds the rows' times but is {column.type_name}, not a "
            f"timestamp: convert it (in pandas: df[{name!r}] = pd.to_datetime(df[{name!r}], "
            "utc=True)); a timestamp without a time zone is taken as UTC"
        )


def _time_bounds(
    entity: EntityFrame, ttl: dt.timedelta | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    if entity.earliest is None or entity.latest is None:
        return None, None
    if ttl is None:
        return None, entity.latest
    return entity.earliest - ttl, entity.latest


def plan_join(
    selections: Sequence[Selection],
    entity: EntityFrame,
    tables: Mapping[ViewKey, str],
    *,
    timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN,
    request_fields: Sequence[v1alpha1.RequestField] = (),
    transformations: Sequence[v1alpha1.RequestTransformation] = (),
) -> JoinPlan:
    """The join of ``selections`` onto ``entity``, reading each view from ``tables``.

    Checks that the entity rows hold every join key (with the view's type), the
    timestamp column and the request fields transformations read, and that no output
    column is produced twice or hides an entity column. Raises
    :class:`EntityFrameError`, :class:`FeatureReferenceError` or
    :class:`OfflineStoreError` saying what to change.
    """
    _check_timestamp(entity, timestamp_column)
    outputs: dict[str, str] = {c.name: f"entity column {c.name!r}" for c in entity.columns}

    def claim(name: str, what: str) -> None:
        if name in outputs:
            raise FeatureReferenceError(
                f"{what} would be returned as column {name!r}, which is already taken by "
                f"{outputs[name]}: rename the entity column, or ask through a "
                "FeatureService whose spec.features gives one of them a prefix"
            )
        outputs[name] = what

    views = []
    for selection in selections:
        view = selection.view
        namespace, name = selection.key
        where = f"FeatureView {namespace}/{name}"
        for key in view.spec.entities:
            _check_key(entity, key, where)
        if not view.spec.materialization.offline:
            raise OfflineStoreError(
                f"{where} keeps no offline history (spec.materialization.offline is false), "
                "so it cannot give historical values: set it to true and let the view "
                "backfill, or leave its features out"
            )
        # The version's own table when its snapshot says where, else the view's.
        table = selection.table_uri or tables.get(selection.key)
        if table is None:
            raise OfflineStoreError(
                f"{where} has no offline table to read: it has not been materialized yet, "
                "or the store was not told where its tables are (offline_uri)"
            )
        types = view.spec.feature_types()
        features = []
        for feature in selection.features:
            output = f"{selection.prefix}{feature}"
            claim(output, f"feature {namespace}/{name}:{feature}")
            features.append(FeatureColumn(feature, output, types[feature]))
        ttl = v1alpha1.parse_duration(view.spec.ttl) if view.spec.ttl else None
        earliest, latest = _time_bounds(entity, ttl)
        views.append(
            ViewJoin(
                namespace=namespace,
                name=name,
                table_uri=table,
                keys=tuple(KeyColumn(k.name, k.type) for k in view.spec.entities),
                features=tuple(features),
                ttl=ttl,
                ttl_from=(
                    layout.LATEST_EVENT_TIMESTAMP
                    if view.spec.aggregations
                    else layout.EVENT_TIMESTAMP
                ),
                earliest=earliest,
                latest=latest,
            )
        )
    for field in request_fields if transformations else ():
        if entity.column(field.name) is None:
            raise EntityFrameError(
                f"the entity rows have no column {field.name!r}, request data "
                f"({field.type}) that the FeatureService's transformations read: add it, "
                "with the value each row's request carried"
            )
    for transformation in transformations:
        claim(transformation.name, f"transformation {transformation.name}")
    return JoinPlan(
        timestamp_column=timestamp_column,
        entity_columns=tuple(c.name for c in entity.columns),
        views=tuple(views),
        request_fields=tuple(request_fields) if transformations else (),
        transformations=tuple(transformations),
    )


def compile_transformations(join_plan: JoinPlan) -> ondemand.Transformations | None:
    """The plan's request-time transformations, compiled by the one evaluator the
    feature server uses too (:mod:`featurekube.ondemand`); None if there are none.

    Raises :class:`featurekube.ondemand.ExpressionError` if one does not compile.
    """
    if not join_plan.transformations:
        return None
    # Imported here: the evaluator needs pyarrow and sqlglot, which planning does not.
    from featurekube import ondemand

    return ondemand.compile_transformations(
        join_plan.transformations, join_plan.transformation_inputs()
    )
