"""Desired feature definitions against live ones: a :class:`Plan` of changes; pure.

:func:`plan_apply` says, for each object, whether applying the desired objects would
create it, change it (with a field-level diff), leave it alone, or delete it (prune,
as Argo CD does: live objects in a namespace the desired objects are in, but not among
them), and which of those changes break a consumer (:func:`detect_breaking_changes`).
:func:`render_text` prints a plan the way ``kubectl diff`` and ``terraform plan`` do;
:meth:`Plan.to_json` gives the same data to machines.

Like is compared with like. The API server fills in defaults that the YAML leaves out
(``spec.source.batch.format: parquet``, ``spec.deletionPolicy: Retain``,
``spec.materialization``, ...), so both sides are dumped through the spec models,
defaults included, before they are compared. Only what the author owns is compared:
``spec``, and those labels and annotations that the YAML sets or that
``kubectl apply`` last set (and would now remove); not ``status``, nor the metadata
the server and controllers keep. Lists whose items have a name (features,
aggregations, entities, expectations, transformations, requestData, and a service's
feature view references) are compared item by item by name, not by position.
"""

from __future__ import annotations

import datetime as dt
import difflib
import enum
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from featurekube.planning import cost
from featurekube.spec import loader, v1alpha1

__all__ = [
    "KEYED_LISTS",
    "LAST_APPLIED_ANNOTATION",
    "Action",
    "BreakingChange",
    "Change",
    "FieldChange",
    "Json",
    "ObjectRef",
    "Plan",
    "detect_breaking_changes",
    "diff_fields",
    "diff_objects",
    "plan_apply",
    "render_text",
    "resolve_namespace",
]

Json: TypeAlias = str | int | float | bool | list["Json"] | dict[str, "Json"] | None
"""A value as it is written in YAML or JSON."""

Resource = loader.Resource

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
"""Where ``kubectl apply`` (and Argo CD's client-side apply) records what it applied."""

KEYED_LISTS = frozenset(
    {"features", "aggregations", "entities", "expectations", "transformations", "requestData"}
)
"""Fields whose list items are matched by name (an expectation: by its feature; a
service's feature view reference: by its view) rather than by position."""

_KIND_ORDER = {"FeatureView": 0, "FeatureService": 1}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Strings shown without quotes: no spaces, and nothing YAML would read as another type.
_PLAIN = re.compile(r"[A-Za-z0-9_./:@*+-]+")
_NOT_PLAIN = re.compile(r"true|false|null|~|[-+]?[0-9][0-9_]*(\.[0-9]*)?([eE][-+]?[0-9]+)?")


class Action(enum.StrEnum):
    """What applying would do to one object."""

    CREATE = "create"
    CHANGE = "change"
    UNCHANGED = "unchanged"
    DELETE = "delete"


@dataclass(frozen=True, order=True)
class ObjectRef:
    """One object: kind, namespace and name (the namespace already resolved)."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, resource: Resource) -> ObjectRef:
        """The reference of ``resource``; its namespace must be set (see
        :func:`resolve_namespace`)."""
        if not resource.metadata.namespace:
            raise ValueError(
                f"{resource.kind}/{resource.metadata.name} has no namespace: resolve it "
                "first with resolve_namespace()"
            )
        return cls(resource.kind, resource.metadata.namespace, resource.metadata.name)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def to_json(self) -> dict[str, Json]:
        """``{"kind": ..., "namespace": ..., "name": ...}``."""
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}


FieldChangeKind = Literal["added", "removed", "changed", "reordered"]


@dataclass(frozen=True)
class FieldChange:
    """One difference between the live and the desired object."""

    path: str
    """The field, spelled as in YAML: ``spec.ttl``, ``spec.features[2]``,
    ``metadata.labels.team``. An item of a list matched by name has its index in the
    desired list, or in the live list if it is removed."""
    item: str | None
    """The name of the list item on the path (``conv_rate``); names of nested items are
    joined by '/'. None when the path goes through no named item."""
    kind: FieldChangeKind
    """added (not set live), removed (not set in the desired object), changed, or
    reordered (a list of named items in another order; old and new are the names)."""
    old: Json = None
    """The live value; None when not set."""
    new: Json = None
    """The desired value; None when not set."""

    def to_json(self) -> dict[str, Json]:
        """The change as a JSON object."""
        return {
            "path": self.path,
            "item": self.item,
            "kind": self.kind,
            "old": self.old,
            "new": self.new,
        }


@dataclass(frozen=True)
class Change:
    """What applying would do to one object."""

    action: Action
    ref: ObjectRef
    fields: tuple[FieldChange, ...] = ()
    """For a change: every field that differs, in the order of the desired object."""

    def to_json(self) -> dict[str, Json]:
        """The change as a JSON object."""
        return {
            "action": str(self.action),
            **self.ref.to_json(),
            "fields": [f.to_json() for f in self.fields],
        }


@dataclass(frozen=True)
class BreakingChange:
    """A change that breaks a consumer of features."""

    ref: ObjectRef
    """The object whose change breaks something (a FeatureView)."""
    consumer: ObjectRef | None
    """The FeatureService that breaks; None when what breaks is the view's own data."""
    reason: str
    """What changes and what breaks, as a sentence about :attr:`ref`."""

    def __str__(self) -> str:
        return f"{self.ref}: {self.reason}"

    def to_json(self) -> dict[str, Json]:
        """The breaking change as a JSON object."""
        return {
            "object": self.ref.to_json(),
            "consumer": self.consumer.to_json() if self.consumer else None,
            "reason": self.reason,
            "message": str(self),
        }


@dataclass(frozen=True)
class Plan:
    """What applying a set of desired objects would do."""

    changes: tuple[Change, ...]
    """One per object, unchanged ones included; sorted by namespace, kind
    (FeatureViews first), name."""
    breaking: tuple[BreakingChange, ...]
    """The changes that break a consumer."""
    namespaces: tuple[str, ...]
    """The namespaces the desired objects are in: those whose other objects are pruned."""
    prune: bool
    """Whether live objects missing from the desired ones are deleted."""
    new_versions: tuple[cost.NewVersion, ...] = ()
    """The views that get a new data version, and the backfill each starts."""

    def count(self, action: Action) -> int:
        """How many objects get ``action``."""
        return sum(1 for change in self.changes if change.action is action)

    @property
    def has_changes(self) -> bool:
        """Whether applying would create, change or delete anything."""
        return any(change.action is not Action.UNCHANGED for change in self.changes)

    def summary(self) -> str:
        """``Plan: 1 to create, 2 to change, 0 to delete, 5 unchanged; 1 breaking change.``"""
        breaking = len(self.breaking)
        return (
            f"Plan: {self.count(Action.CREATE)} to create, {self.count(Action.CHANGE)} to "
            f"change, {self.count(Action.DELETE)} to delete, {self.count(Action.UNCHANGED)} "
            f"unchanged; {breaking} breaking change{'' if breaking == 1 else 's'}."
        )

    def to_json(self) -> dict[str, Json]:
        """The whole plan as one JSON object: the data :func:`render_text` prints."""
        return {
            "namespaces": list(self.namespaces),
            "prune": self.prune,
            "changes": [change.to_json() for change in self.changes],
            "breaking": [b.to_json() for b in self.breaking],
            "newVersions": [v.to_json() for v in self.new_versions],  # type: ignore[misc]
            "summary": {
                **{str(action): self.count(action) for action in Action},
                "breaking": len(self.breaking),
            },
        }


def resolve_namespace(resource: Resource, namespace: str) -> Resource:
    """``resource`` with ``metadata.namespace`` set to ``namespace`` if it sets none."""
    if resource.metadata.namespace:
        return resource
    metadata = resource.metadata.model_copy(update={"namespace": namespace})
    return resource.model_copy(update={"metadata": metadata})


def plan_apply(
    desired: Iterable[Resource],
    live: Iterable[Resource],
    *,
    prune: bool = True,
    now: dt.datetime | None = None,
) -> Plan:
    """What applying ``desired`` to a cluster holding ``live`` would do; with ``now``,
    also which views get a new data version and what backfill that starts.

    Every object must have its namespace set (:func:`resolve_namespace`). ``live`` may
    hold objects of any namespace: FeatureServices elsewhere are consumers too. With
    ``prune``, a live object is deleted when its namespace holds at least one desired
    object and it is not desired itself. Raises ``ValueError`` if an object is desired
    twice.
    """
    wanted = _by_ref(desired, "desired")
    before = _by_ref(live, "live")
    namespaces = sorted({ref.namespace for ref in wanted})
    changes: list[Change] = []
    for ref, resource in wanted.items():
        current = before.get(ref)
        if current is None:
            changes.append(Change(Action.CREATE, ref))
            continue
        fields = tuple(diff_objects(current, resource))
        changes.append(Change(Action.CHANGE if fields else Action.UNCHANGED, ref, fields))
    deleted = {ref for ref in before if prune and ref.namespace in namespaces and ref not in wanted}
    changes.extend(Change(Action.DELETE, ref) for ref in deleted)
    after = {ref: r for ref, r in before.items() if ref not in deleted} | wanted
    return Plan(
        changes=tuple(sorted(changes, key=lambda c: _sort_key(c.ref))),
        breaking=tuple(detect_breaking_changes(before, after)),
        namespaces=tuple(namespaces),
        prune=prune,
        new_versions=tuple(cost.new_versions(before, wanted, now)) if now else (),
    )


def diff_objects(live: Resource, desired: Resource) -> list[FieldChange]:
    """The fields the author owns that differ between ``live`` and ``desired``.

    ``spec`` is compared with defaults filled in on both sides; of the labels and
    annotations, those that ``desired`` sets or that the live object's
    last-applied-configuration records (which ``kubectl apply`` would remove).
    """
    owned = _owned_metadata_keys(live, desired)
    return diff_fields(_comparable(live, owned), _comparable(desired, owned))


def diff_fields(old: Json, new: Json) -> list[FieldChange]:
    """Every difference from ``old`` to ``new``, as field paths.

    Mappings are compared key by key, lists named in :data:`KEYED_LISTS` item by item
    by name, other lists of mappings by position, and anything else as a whole value.

    >>> [(c.path, c.old, c.new) for c in diff_fields({"spec": {"ttl": "1d"}},
    ...                                              {"spec": {"ttl": "2d"}})]
    [('spec.ttl', '1d', '2d')]
    """
    changes: list[FieldChange] = []
    _diff(old, new, (), (), changes)
    return changes


def detect_breaking_changes(
    before: Mapping[ObjectRef, Resource], after: Mapping[ObjectRef, Resource]
) -> list[BreakingChange]:
    """The changes from ``before`` to ``after`` (the cluster's objects before and after
    the apply) that break a consumer.

    - a feature removed or retyped in a view while a FeatureService uses it after the
      apply (a reference without a feature list uses all of the view's features; one
      that pins a version reads that version, which no edit changes);
    - a view's entity keys (their names, types, or the set of them) changed after the
      view has been materialized (its status has a last materialized window, or a
      condition Materialized=True): its stored rows are keyed by the old keys;
    - a view deleted, or no longer shared with a namespace, while a FeatureService
      that remains after the apply references it.

    A service changed in the same apply so that it no longer uses what goes away is
    not broken: the two changes go together.
    """
    services = [
        (ref, resource)
        for ref, resource in sorted(after.items(), key=lambda item: _sort_key(item[0]))
        if isinstance(resource, v1alpha1.FeatureService)
    ]
    found: list[BreakingChange] = []
    for ref, old in sorted(before.items(), key=lambda item: _sort_key(item[0])):
        if not isinstance(old, v1alpha1.FeatureView):
            continue
        new = after.get(ref)
        if new is None:
            found.extend(
                BreakingChange(
                    ref,
                    service,
                    f"it is deleted, but {service}, which stays, references it: the service "
                    "can no longer serve its features",
                )
                for service in dict.fromkeys(s for s, _ in _references(services, ref))
            )
            continue
        if not isinstance(new, v1alpha1.FeatureView):  # the same ref is the same kind
            continue
        found.extend(_feature_breaks(ref, old, new, services))
        found.extend(_entity_key_breaks(ref, old, new, services))
        found.extend(_sharing_breaks(ref, old, new, services))
    return found


def render_text(plan: Plan) -> str:
    """The plan for people, like ``kubectl diff`` and ``terraform plan``: one line per
    object created (+), changed (~, with a line per field) or deleted (-), then each
    breaking change (!), then the summary. Unchanged objects are only counted."""
    lines: list[str] = []
    signs = {Action.CREATE: "+", Action.CHANGE: "~", Action.DELETE: "-"}
    for change in plan.changes:
        if change.action is Action.UNCHANGED:
            continue
        lines.append(f"{signs[change.action]} {change.ref} ({change.action})")
        for field in change.fields:
            lines.extend(_render_field(field))
    if plan.new_versions:
        if lines:
            lines.append("")
        lines.extend(f"* new version: {version}" for version in plan.new_versions)
    if plan.breaking:
        if lines:
            lines.append("")
        lines.extend(f"! breaking: {breaking}" for breaking in plan.breaking)
    if lines:
        lines.append("")
    lines.append(plan.summary())
    return "\n".join(lines) + "\n"


# --- comparing ---------------------------------------------------------------------


def _sort_key(ref: ObjectRef) -> tuple[str, int, str, str]:
    return (ref.namespace, _KIND_ORDER.get(ref.kind, len(_KIND_ORDER)), ref.kind, ref.name)


def _by_ref(resources: Iterable[Resource], what: str) -> dict[ObjectRef, Resource]:
    found: dict[ObjectRef, Resource] = {}
    for resource in resources:
        ref = ObjectRef.of(resource)
        if ref in found:
            raise ValueError(f"{ref} appears twice among the {what} objects")
        found[ref] = resource
    return found


def _owned_metadata_keys(live: Resource, desired: Resource) -> dict[str, set[str]]:
    applied = _last_applied_metadata(live)
    owned: dict[str, set[str]] = {}
    for field in ("labels", "annotations"):
        keys = set(getattr(desired.metadata, field))
        recorded = applied.get(field)
        if isinstance(recorded, dict):
            keys |= set(recorded)
        keys.discard(LAST_APPLIED_ANNOTATION)
        owned[field] = keys
    return owned


def _last_applied_metadata(resource: Resource) -> dict[str, Json]:
    text = resource.metadata.annotations.get(LAST_APPLIED_ANNOTATION)
    if not text:
        return {}
    try:
        applied = json.loads(text)
    except ValueError:
        return {}
    metadata = applied.get("metadata") if isinstance(applied, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def _comparable(resource: Resource, owned: Mapping[str, set[str]]) -> dict[str, Json]:
    metadata: dict[str, Json] = {}
    for field, keys in owned.items():
        values: dict[str, str] = getattr(resource.metadata, field)
        metadata[field] = {key: value for key, value in values.items() if key in keys}
    return {"metadata": metadata, "spec": resource.spec.to_yaml_dict()}


Segment = str | int


def _diff(
    old: Json,
    new: Json,
    path: tuple[Segment, ...],
    items: tuple[str, ...],
    out: list[FieldChange],
) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key, value in new.items():
            if key in old:
                _diff(old[key], value, (*path, key), items, out)
            else:
                out.append(_field((*path, key), items, "added", None, value))
        for key, value in old.items():
            if key not in new:
                out.append(_field((*path, key), items, "removed", value, None))
        return
    if isinstance(old, list) and isinstance(new, list) and _is_records(old) and _is_records(new):
        old_keys = _item_keys(old) if path and path[-1] in KEYED_LISTS else None
        new_keys = _item_keys(new) if old_keys is not None else None
        if old_keys is not None and new_keys is not None:
            _diff_keyed(old, new, old_keys, new_keys, path, items, out)
        else:
            _diff_positional(old, new, path, items, out)
        return
    if not _same(old, new):
        out.append(_field(path, items, "changed", old, new))


def _diff_keyed(
    old: list[Json],
    new: list[Json],
    old_keys: list[str],
    new_keys: list[str],
    path: tuple[Segment, ...],
    items: tuple[str, ...],
    out: list[FieldChange],
) -> None:
    old_index = {key: i for i, key in enumerate(old_keys)}
    new_index = {key: j for j, key in enumerate(new_keys)}
    for j, (key, item) in enumerate(zip(new_keys, new, strict=True)):
        i = old_index.get(key)
        if i is None:
            out.append(_field((*path, j), (*items, key), "added", None, item))
        else:
            _diff(old[i], item, (*path, j), (*items, key), out)
    for i, (key, item) in enumerate(zip(old_keys, old, strict=True)):
        if key not in new_index:
            out.append(_field((*path, i), (*items, key), "removed", item, None))
    kept_old: list[Json] = [key for key in old_keys if key in new_index]
    kept_new: list[Json] = [key for key in new_keys if key in old_index]
    if kept_old != kept_new:
        out.append(_field(path, items, "reordered", kept_old, kept_new))


def _diff_positional(
    old: list[Json],
    new: list[Json],
    path: tuple[Segment, ...],
    items: tuple[str, ...],
    out: list[FieldChange],
) -> None:
    for i in range(max(len(old), len(new))):
        if i >= len(old):
            out.append(_field((*path, i), items, "added", None, new[i]))
        elif i >= len(new):
            out.append(_field((*path, i), items, "removed", old[i], None))
        else:
            _diff(old[i], new[i], (*path, i), items, out)


def _is_records(values: list[Json]) -> bool:
    return all(isinstance(value, dict) for value in values)


def _item_keys(values: list[Json]) -> list[str] | None:
    """The name of each item, or None if some item has none or two share one."""
    keys = [_item_key(value) for value in values]
    names = [key for key in keys if key is not None]
    if len(names) != len(keys) or len(set(names)) != len(names):
        return None
    return names


def _item_key(value: Json) -> str | None:
    if not isinstance(value, dict):
        return None
    view = value.get("featureView")
    if isinstance(view, str):
        namespace = value.get("namespace")
        return f"{namespace}/{view}" if isinstance(namespace, str) else view
    for field in ("name", "feature"):
        key = value.get(field)
        if isinstance(key, str):
            return key
    return None


def _same(old: Json, new: Json) -> bool:
    # Through JSON, so that 1 and 1.0, or 1 and true, are told apart.
    return json.dumps(old, sort_keys=True) == json.dumps(new, sort_keys=True)


def _field(
    path: tuple[Segment, ...], items: tuple[str, ...], kind: FieldChangeKind, old: Json, new: Json
) -> FieldChange:
    return FieldChange(_format_path(path), "/".join(items) or None, kind, old, new)


def _format_path(path: tuple[Segment, ...]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


# --- breaking changes --------------------------------------------------------------


Services = Sequence[tuple[ObjectRef, Resource]]


def _references(
    services: Services, view: ObjectRef
) -> Iterator[tuple[ObjectRef, v1alpha1.FeatureViewReference]]:
    """Each reference to ``view`` among ``services``, with the service that makes it."""
    for ref, service in services:
        if not isinstance(service, v1alpha1.FeatureService):
            continue
        for reference in service.spec.features:
            namespace = reference.namespace or ref.namespace
            if reference.feature_view == view.name and namespace == view.namespace:
                yield ref, reference


def _feature_breaks(
    ref: ObjectRef, old: v1alpha1.FeatureView, new: v1alpha1.FeatureView, services: Services
) -> Iterator[BreakingChange]:
    old_types = old.spec.feature_types()
    new_types = new.spec.feature_types()
    seen: set[tuple[ObjectRef, str]] = set()
    for service, reference in _references(services, ref):
        if reference.version is not None:
            # A pinned version keeps its own features and types, whatever the spec says.
            continue
        every = reference.features is None
        for feature in reference.features or list(old_types):
            if feature not in old_types or (service, feature) in seen:
                # A feature the view never had is an unknown reference: validate's business.
                continue
            seen.add((service, feature))
            how = " (it takes all of the view's features)" if every else ""
            if feature not in new_types:
                yield BreakingChange(
                    ref,
                    service,
                    f"feature {feature} is removed, but {service} uses it{how}",
                )
            elif new_types[feature] != old_types[feature]:
                yield BreakingChange(
                    ref,
                    service,
                    f"feature {feature} changes type from {old_types[feature]} to "
                    f"{new_types[feature]}, but {service} uses it{how}: its model gets "
                    f"{new_types[feature]} values where it was trained on "
                    f"{old_types[feature]}",
                )


def _entity_key_breaks(
    ref: ObjectRef, old: v1alpha1.FeatureView, new: v1alpha1.FeatureView, services: Services
) -> Iterator[BreakingChange]:
    old_keys = {entity.name: entity.type for entity in old.spec.entities}
    new_keys = {entity.name: entity.type for entity in new.spec.entities}
    materialized = _materialized(old)
    if old_keys == new_keys or materialized is None:
        return
    users = list(dict.fromkeys(service for service, _ in _references(services, ref)))
    used_by = f" and {', '.join(map(str, users))} uses it" if users else ""
    yield BreakingChange(
        ref,
        None,
        f"its entity keys change from {_format_keys(old_keys)} to {_format_keys(new_keys)}, "
        f"but it has been materialized ({materialized}){used_by}: its online table and "
        f"offline history are keyed by {_format_keys(old_keys)}, so lookups and training "
        "joins by the new keys find none of its rows; define a new FeatureView with the "
        "new keys instead, and move its consumers over",
    )


def _sharing_breaks(
    ref: ObjectRef, old: v1alpha1.FeatureView, new: v1alpha1.FeatureView, services: Services
) -> Iterator[BreakingChange]:
    for service in dict.fromkeys(s for s, _ in _references(services, ref)):
        if service.namespace == ref.namespace:
            continue
        if _shared_with(old, service.namespace) and not _shared_with(new, service.namespace):
            yield BreakingChange(
                ref,
                service,
                f"it is no longer shared with namespace {service.namespace} "
                f"(spec.sharedWith), but {service} uses it",
            )


def _shared_with(view: v1alpha1.FeatureView, namespace: str) -> bool:
    shared = view.spec.shared_with or []
    return "*" in shared or namespace in shared


def _materialized(view: v1alpha1.FeatureView) -> str | None:
    """How we know ``view`` has been materialized, or None if it has not been."""
    status = view.status
    if status is None:
        return None
    if status.last_materialized_window is not None:
        return f"its last window ends {_format_time(status.last_materialized_window.end)}"
    for condition in status.conditions or ():
        if condition.type == "Materialized" and condition.status == "True":
            return "its condition Materialized is True"
    return None


def _format_keys(keys: Mapping[str, str]) -> str:
    return ", ".join(f"{name} ({kind})" for name, kind in sorted(keys.items()))


def _format_time(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="seconds") + "Z"


# --- text --------------------------------------------------------------------------


def _render_field(field: FieldChange) -> list[str]:
    where = f"{field.path} ({field.item})" if field.item else field.path
    if field.kind == "reordered":
        return [f"    {where}: reordered {_show(field.old)} -> {_show(field.new)}"]
    if field.kind == "added":
        if isinstance(field.new, dict | list):
            return [f"    {where}: added"]
        return [f"    {where}: unset -> {_show(field.new)}"]
    if field.kind == "removed":
        if isinstance(field.old, dict | list):
            return [f"    {where}: removed"]
        return [f"    {where}: {_show(field.old)} -> unset"]
    if isinstance(field.old, str) and isinstance(field.new, str) and "\n" in field.old + field.new:
        lines = difflib.unified_diff(
            field.old.splitlines(), field.new.splitlines(), lineterm="", n=1
        )
        body = [f"      {line}" for line in lines if not line.startswith(("---", "+++", "@@"))]
        return [f"    {where}: changed", *body]
    return [f"    {where}: {_show(field.old)} -> {_show(field.new)}"]


def _show(value: Json) -> str:
    """A value in YAML's flow style: strings bare where that is unambiguous."""
    if isinstance(value, str):
        plain = _PLAIN.fullmatch(value) and not _NOT_PLAIN.fullmatch(value)
        return value if plain else json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_show(item)}" for key, item in value.items()) + "}"
    return json.dumps(value)
