"""The serving plan: what one feature server serves, loaded and checked once at start.

The operator renders the plan from a FeatureService and the views it references
(:func:`featurekube.serving_plan.render_serving_plan`, which ``featurekube serve`` runs
too) into a ConfigMap, mounted as a YAML file. :func:`parse_plan` is pure;
:func:`load_plan` reads the file.

    featureService: eta-model
    namespace: rides
    access:                           # who may call, as TokenReview user names
      read: ["system:serviceaccount:rides:*"]      # absent: the service's namespace
      push: ["system:serviceaccount:rides:ingest"]
    featureViews:
      - name: driver-trip-stats
        namespace: rides
        onlineTable: featurekube-rides-driver-trip-stats-v1
        entities: [{name: driver_id, type: int64}]
        ttl: 7d                       # absent or null: values never expire
        features:                     # as served (with any prefix) and as stored
          - {name: trips_30m, source: trips_30m, type: int64}
        storedFeatures: [trips_30m, trips_7d]   # all the table holds (optional)
        push:                         # only for push-source views
          spec: {...}                 # the view's spec: what the write path needs
          offlineUri: s3://bucket/prefix/rides/driver-location-live/
          # or, without a spec (rows then cannot be written, only checked):
          # timestampField: event_timestamp
          # features: [{name: current_zone_id, type: int64}, ...]   # all the view's
    requestData: [{name: trip_distance_km, type: float64}]
    transformations:
      - {name: naive_eta_min, type: float64, expression: "trip_distance_km / ..."}

Checks: value types are known, served names are unique (features, request fields and
transformations together), a join key has one type across views, TTLs parse, and every
transformation compiles over the request fields and features.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from featurekube import ondemand, serving_access
from featurekube.spec import v1alpha1
from featurekube.spec.v1alpha1 import durations
from featurekube_server import errors

__all__ = [
    "Access",
    "Entity",
    "Feature",
    "FeatureViewPlan",
    "PushTarget",
    "RequestField",
    "ServingPlan",
    "TransformationPlan",
    "load_plan",
    "parse_plan",
]

VALUE_TYPES = frozenset(ondemand.ARROW_TYPES)
KEY_TYPES = frozenset({"int64", "string"})


@dataclass(frozen=True)
class Entity:
    """A join key of a view."""

    name: str
    type: str


@dataclass(frozen=True)
class Feature:
    """A feature as served (``name``, with any prefix) and as stored (``source``, the
    view's feature name and the DynamoDB attribute)."""

    name: str
    source: str
    type: str


@dataclass(frozen=True)
class PushTarget:
    """Where and how rows pushed to a push-source view are written."""

    timestamp_field: str
    features: tuple[Feature, ...]
    """Every feature of the view (a push writes whole rows), by their view names."""
    offline_uri: str | None
    online: bool
    offline: bool
    spec: v1alpha1.FeatureViewSpec | None = field(default=None, compare=False, repr=False)
    """The view's spec, which the write path needs; None: rows cannot be written."""


@dataclass(frozen=True)
class FeatureViewPlan:
    """One view the service reads: its table, keys, TTL and served features."""

    name: str
    namespace: str
    online_table: str
    entities: tuple[Entity, ...]
    ttl: dt.timedelta | None
    features: tuple[Feature, ...]
    push: PushTarget | None = None
    stored_features: frozenset[str] | None = None
    """Every feature the view's table holds (None: not known). A read of all of them
    fetches whole items rather than naming each in a projection."""

    @property
    def ttl_micros(self) -> int | None:
        """The TTL in microseconds, the unit of stored event times; None: no limit."""
        if self.ttl is None:
            return None
        return (self.ttl.days * 86400 + self.ttl.seconds) * 1_000_000 + self.ttl.microseconds

    @property
    def key_types(self) -> dict[str, str]:
        """Join key name -> type, as :func:`featurekube.online.keys.encode_entity_key`
        takes them."""
        return {e.name: e.type for e in self.entities}


@dataclass(frozen=True)
class RequestField:
    """A value callers send with each request."""

    name: str
    type: str


@dataclass(frozen=True)
class TransformationPlan:
    """A request-time transformation as the plan states it."""

    name: str
    type: str
    expression: str


@dataclass(frozen=True)
class Access:
    """Who may read and who may push, as ServiceAccount user names
    (``system:serviceaccount:NS:NAME``, ``NAME`` possibly ``*``)."""

    read: tuple[str, ...]
    push: tuple[str, ...]


@dataclass(frozen=True)
class ServingPlan:
    """Everything one server serves, checked; built by :func:`parse_plan`."""

    feature_service: str
    namespace: str
    feature_views: tuple[FeatureViewPlan, ...]
    request_data: tuple[RequestField, ...]
    transformations: ondemand.Transformations
    transformation_types: Mapping[str, str]
    features: Mapping[str, tuple[FeatureViewPlan, Feature]] = field(repr=False)
    """Served feature name -> its view and feature."""
    join_keys: Mapping[str, str] = field(repr=False)
    """Every join key of every view -> its type."""
    access: Access | None = None
    """Who may call; None (a plan built without it): the ServiceAccounts of its
    namespace. :func:`parse_plan` always sets it."""

    @property
    def readers(self) -> tuple[str, ...]:
        """Who may ask for features."""
        if self.access is None:
            return tuple(serving_access.default_subjects(self.namespace))
        return self.access.read

    @property
    def pushers(self) -> tuple[str, ...]:
        """Who may push."""
        if self.access is None:
            return tuple(serving_access.default_subjects(self.namespace))
        return self.access.push

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Every name the service serves, in order: the views' features, then the
        transformations."""
        return (*self.features, *self.transformations.names)

    def type_of(self, name: str) -> str:
        """The value type of a served feature or transformation."""
        if name in self.features:
            return self.features[name][1].type
        return self.transformation_types[name]

    def view(self, name: str, namespace: str | None = None) -> FeatureViewPlan | None:
        """The view called ``name`` (in ``namespace``, default the service's)."""
        namespace = namespace or self.namespace
        for view in self.feature_views:
            if view.name == name and view.namespace == namespace:
                return view
        return None


def load_plan(path: Path) -> ServingPlan:
    """Read and check the plan at ``path``."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise errors.PlanError(
            f"cannot read the serving plan {path}: {exc.strerror or exc}. The operator mounts "
            "it from the FeatureService's '<name>-plan' ConfigMap; pass its path with --plan"
        ) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise errors.PlanError(f"the serving plan {path} is not YAML: {exc}") from exc
    return parse_plan(document, source=str(path))


def parse_plan(document: Any, source: str = "plan") -> ServingPlan:
    """Check a plan document (as YAML loads it) and build the :class:`ServingPlan`."""
    reader = _Reader(source)
    if not isinstance(document, Mapping):
        raise errors.PlanError(f"{source}: expected a mapping, found {type(document).__name__}")
    service = reader.text(document, "featureService")
    namespace = reader.text(document, "namespace")
    access = _access(reader, document.get("access"), namespace)
    views = tuple(
        _view(reader, raw, f"featureViews[{i}]", namespace)
        for i, raw in enumerate(reader.items(document, "featureViews", required=True))
    )
    request_data = tuple(
        RequestField(
            reader.text(raw, "name", f"requestData[{i}]"),
            reader.value_type(raw, f"requestData[{i}]"),
        )
        for i, raw in enumerate(reader.items(document, "requestData"))
    )
    definitions = [
        TransformationPlan(
            reader.text(raw, "name", f"transformations[{i}]"),
            reader.value_type(raw, f"transformations[{i}]"),
            reader.text(raw, "expression", f"transformations[{i}]"),
        )
        for i, raw in enumerate(reader.items(document, "transformations"))
    ]

    features: dict[str, tuple[FeatureViewPlan, Feature]] = {}
    join_keys: dict[str, str] = {}
    owner: dict[str, str] = {}
    for i, view in enumerate(views):
        for j, feature in enumerate(view.features):
            if feature.name in features:
                raise errors.PlanError(
                    f"{source}: featureViews[{i}].features[{j}]: {feature.name!r} is served by "
                    f"{features[feature.name][0].name} too; give one of the views a prefix in "
                    "the FeatureService"
                )
            features[feature.name] = (view, feature)
        for entity in view.entities:
            known = join_keys.setdefault(entity.name, entity.type)
            if known != entity.type:
                raise errors.PlanError(
                    f"{source}: featureViews[{i}] ({view.name}) has join key {entity.name} of "
                    f"type {entity.type}, but {owner[entity.name]} has it as {known}; every "
                    "view of one entity must agree on its key's type"
                )
            owner.setdefault(entity.name, view.name)
    names = set(features)
    for i, requested in enumerate(request_data):
        if requested.name in names:
            raise errors.PlanError(
                f"{source}: requestData[{i}]: {requested.name!r} is also a feature's name"
            )
        names.add(requested.name)
    for i, definition in enumerate(definitions):
        if definition.name in names:
            raise errors.PlanError(
                f"{source}: transformations[{i}]: {definition.name!r} is also the name of a "
                "feature or request field"
            )
        names.add(definition.name)
    inputs = {r.name: r.type for r in request_data} | {n: f.type for n, (_, f) in features.items()}
    try:
        transformations = ondemand.compile_transformations(
            definitions, inputs, where=f"{source}: transformations"
        )
    except ondemand.ExpressionError as exc:
        raise errors.PlanError(str(exc)) from exc
    return ServingPlan(
        feature_service=service,
        namespace=namespace,
        feature_views=views,
        request_data=request_data,
        transformations=transformations,
        transformation_types={d.name: d.type for d in definitions},
        features=features,
        join_keys=join_keys,
        access=access,
    )


def _access(reader: _Reader, raw: Any, namespace: str) -> Access:
    """``access``: it or each list absent grants the plan's namespace, empty grants
    nobody."""
    raw = reader.mapping({} if raw is None else raw, "access")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("read", "push"):
        subjects = raw.get(key)
        if subjects is not None and (not isinstance(subjects, list) or len(subjects) > 256):
            raise reader.fail(
                f"access.{key}", f"expected a list of at most 256 subjects, found {subjects!r}"
            )
        try:
            named = None if subjects is None else [str(s) for s in subjects]
            lists[key] = tuple(serving_access.normalized(named, namespace))
        except ValueError as exc:
            raise reader.fail(f"access.{key}", str(exc)) from exc
    return Access(read=lists["read"], push=lists["push"])


def _view(reader: _Reader, raw: Any, path: str, namespace: str) -> FeatureViewPlan:
    reader.mapping(raw, path)
    ttl_text = raw.get("ttl")
    ttl = None
    if ttl_text is not None:
        try:
            ttl = durations.parse_duration(str(ttl_text))
        except ValueError as exc:
            raise errors.PlanError(f"{reader.source}: {path}.ttl: {exc}") from exc
    entities = tuple(
        Entity(reader.text(e, "name", f"{path}.entities[{k}]"), reader.key_type(e, path, k))
        for k, e in enumerate(reader.items(raw, "entities", path, required=True))
    )
    features = tuple(
        _feature(reader, f, f"{path}.features[{k}]")
        for k, f in enumerate(reader.items(raw, "features", path))
    )
    push = _push(reader, raw.get("push"), f"{path}.push")
    stored = raw.get("storedFeatures")
    if stored is not None and not (
        isinstance(stored, list) and all(isinstance(s, str) and s for s in stored)
    ):
        raise errors.PlanError(
            f"{reader.source}: {path}.storedFeatures: expected a list of feature names, "
            f"found {stored!r}"
        )
    return FeatureViewPlan(
        name=reader.text(raw, "name", path),
        namespace=str(raw.get("namespace") or namespace),
        online_table=reader.text(raw, "onlineTable", path),
        entities=entities,
        ttl=ttl,
        features=features,
        push=push,
        stored_features=None if stored is None else frozenset(stored),
    )


def _push(reader: _Reader, raw: Any, path: str) -> PushTarget | None:
    """A push-source view's write settings: ``spec`` (the view's spec, from which the
    rest follows) and ``offlineUri``, or the fields one by one."""
    if raw is None:
        return None
    reader.mapping(raw, path)
    spec = None
    if raw.get("spec") is not None:
        try:
            spec = v1alpha1.FeatureViewSpec.model_validate(raw["spec"])
        except ValueError as exc:
            raise errors.PlanError(f"{reader.source}: {path}.spec: {exc}") from exc
    if raw.get("features") is not None or spec is None:
        features = tuple(
            _feature(reader, f, f"{path}.features[{k}]")
            for k, f in enumerate(reader.items(raw, "features", path, required=True))
        )
    else:
        features = tuple(Feature(n, n, t) for n, t in spec.feature_types().items())
    timestamp_field = raw.get("timestampField")
    if timestamp_field is None:
        source = spec.source.push if spec is not None else None
        timestamp_field = source.timestamp_field if source is not None else "event_timestamp"
    materialization = spec.materialization if spec is not None else None
    return PushTarget(
        timestamp_field=str(timestamp_field),
        features=features,
        offline_uri=raw.get("offlineUri"),
        online=bool(raw.get("online", materialization.online if materialization else True)),
        offline=bool(raw.get("offline", materialization.offline if materialization else True)),
        spec=spec,
    )


def _feature(reader: _Reader, raw: Any, path: str) -> Feature:
    reader.mapping(raw, path)
    name = reader.text(raw, "name", path)
    return Feature(name, str(raw.get("source") or name), reader.value_type(raw, path))


class _Reader:
    """Reads fields of the plan document with errors naming their path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> errors.PlanError:
        where = f"{path}: " if path else ""
        return errors.PlanError(f"{self.source}: {where}{message}")

    def mapping(self, raw: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(raw, Mapping):
            raise self.fail(path, f"expected a mapping, found {type(raw).__name__}")
        return raw

    def text(self, raw: Mapping[str, Any], key: str, path: str = "") -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            where = f"{path}.{key}" if path else key
            raise self.fail(where, f"expected a non-empty string, found {value!r}")
        return value

    def items(
        self, raw: Mapping[str, Any], key: str, path: str = "", *, required: bool = False
    ) -> Sequence[Any]:
        value = raw.get(key)
        where = f"{path}.{key}" if path else key
        if value is None:
            if required:
                raise self.fail(where, "is missing")
            return ()
        if not isinstance(value, list) or (required and not value):
            raise self.fail(where, f"expected a non-empty list, found {value!r}")
        return value

    def value_type(self, raw: Any, path: str) -> str:
        value = self.mapping(raw, path).get("type")
        if value not in VALUE_TYPES:
            raise self.fail(
                f"{path}.type", f"{value!r} is not a value type ({', '.join(sorted(VALUE_TYPES))})"
            )
        return str(value)

    def key_type(self, raw: Any, path: str, index: int) -> str:
        value = self.mapping(raw, path).get("type")
        if value not in KEY_TYPES:
            raise self.fail(
                f"{path}.entities[{index}].type",
                f"{value!r} is not a join key type (int64, string)",
            )
        return str(value)
