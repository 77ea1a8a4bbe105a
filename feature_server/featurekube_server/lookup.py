"""From a request to online-store keys, and from stored items to the response; pure.

:func:`plan_lookup` checks a decoded request against the serving plan (features, join
keys and their types, request fields, row limit) and says which keys to read from
which view's table, with which attributes, each key once. :func:`assemble` turns the
items read into one column per feature, with a status and event time per value,
judging TTLs against the request time, and evaluates the requested request-time
transformations.

Statuses, as docs/semantics.md defines them; the TTL counts from the entity's latest
event: an aggregation view's items carry it (``latest_event_time``: the latest event
at or before the value's step boundary), other items' latest event is their event time.

- ``PRESENT``: the stored value, request time - latest event <= ttl (a value exactly
  ttl old still counts). An attribute absent from a stored item is a null value the
  writer stored (nulls are written as absent attributes), so it is ``PRESENT`` with a
  null value, as the offline point-in-time join returns the row with a null feature.
- ``NOT_FOUND``: no item for the entity; the value is null.
- ``OUTSIDE_MAX_AGE``: request time - latest event > ttl; the value is null (not
  returned as if valid), its event time is kept.

Values of a materialization window that is not complete in both stores are not served:
the table's windows item (:mod:`featurekube.online.windows`), read with the entities'
items (:func:`table_read`), names the pending windows, and an item whose event time
lies in one is judged as no item (``NOT_FOUND``) until the window completes.

A transformation's status is the worst among the features it reads (``NOT_FOUND``,
then ``OUTSIDE_MAX_AGE``, then ``PRESENT``; request fields do not count) and its
event time the latest of theirs; it is computed whatever their statuses, over nulls
where they are not ``PRESENT``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import enum
import itertools
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa

from featurekube import ondemand
from featurekube.online import keys, layout, values, windows
from featurekube_server import errors, plan
from featurekube_server.stores import base

__all__ = [
    "Column",
    "FeatureResult",
    "Item",
    "Lookup",
    "LookupResult",
    "Planner",
    "Status",
    "ViewRead",
    "assemble",
    "check_push",
    "plan_lookup",
    "table_read",
]

Item = base.Item


class Status(enum.IntEnum):
    """A value's status; the numbers are those of the proto's FeatureStatus."""

    PRESENT = 1
    NOT_FOUND = 2
    OUTSIDE_MAX_AGE = 3


# Statuses as plain ints in the hot path: the proto's repeated enum takes them as they
# are, where IntEnum members would be converted one by one.
_PRESENT = int(Status.PRESENT)
_NOT_FOUND = int(Status.NOT_FOUND)
_OUTSIDE_MAX_AGE = int(Status.OUTSIDE_MAX_AGE)

# How bad a status is, for a transformation reading several features.
_RANK = {_PRESENT: 0, _OUTSIDE_MAX_AGE: 1, _NOT_FOUND: 2}

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EVENT_TIME = operator.itemgetter(layout.EVENT_TIME)
_NUMBER = operator.itemgetter("N")


def _ttl_anchor(item: Item) -> int:
    """What the TTL counts from: an aggregation's latest event, else the event time."""
    return int((item.get(layout.LATEST_EVENT_TIME) or item[layout.EVENT_TIME])["N"])


_NONES = itertools.repeat(None)


@dataclass(frozen=True)
class Column:
    """A decoded request column: its value type (None when every value is null) and
    its values (None for nulls)."""

    type: str | None
    values: list[Any]


@dataclass(frozen=True)
class ViewRead:
    """What to read from one view's table."""

    view: plan.FeatureViewPlan
    features: tuple[plan.Feature, ...]
    """The features to fetch: requested ones and those transformations read."""
    keys: tuple[str, ...]
    """Encoded entity keys, each once."""
    row_keys: tuple[str, ...]
    """The encoded key of each entity row, in row order (repeats included)."""
    attributes: tuple[str, ...] | None
    """The DynamoDB attributes of the fetched features; None when they are every
    feature the table holds, so whole items are read: a projection naming them all
    would cost the store work to save only the bookkeeping attributes' bytes."""


@dataclass(frozen=True)
class Lookup:
    """A checked request: what to read and what to answer with."""

    features: tuple[str, ...]
    """Names to answer with, in order."""
    reads: tuple[ViewRead, ...]
    rows: int
    request_data: Mapping[str, Column]
    transformations: tuple[str, ...]
    """Requested transformations, in the order of ``features``."""
    compiled: ondemand.Transformations
    include_event_times: bool


@dataclass(slots=True)
class FeatureResult:
    """One answered column. Not frozen: a request makes one per feature, and a frozen
    dataclass's initializer costs three times as much."""

    name: str
    type: str
    values: list[Any]
    statuses: list[int]
    event_times: list[int] | None
    """Microseconds since the epoch, 0 where nothing was found; None when not asked."""


@dataclass(frozen=True)
class LookupResult:
    """The answer: one column per feature, and how many values had each status."""

    features: list[FeatureResult]
    rows: int
    status_counts: Mapping[Status, int]


@dataclass(frozen=True)
class _ViewPart:
    """What a selection of features reads from one view, fixed by the plan."""

    view: plan.FeatureViewPlan
    features: tuple[plan.Feature, ...]
    key_types: tuple[tuple[str, str], ...]
    """Join key name and type, ordered by name as the encoded key orders them."""
    attributes: tuple[str, ...] | None
    """As :attr:`ViewRead.attributes`."""


@dataclass(frozen=True)
class _Selection:
    """A checked list of names to answer, and what answering it takes."""

    names: tuple[str, ...]
    transformations: tuple[str, ...]
    parts: tuple[_ViewPart, ...]
    request_fields: tuple[str, ...]
    """The request fields the transformations read."""


class Planner:
    """:func:`plan_lookup` over one serving plan, with what each selection of features
    needs (views, keys, attributes, transformation inputs) worked out once and kept:
    the feature server makes one at start and plans every request with it."""

    _KEPT = 1024
    """Selections kept; past that, the kept ones are dropped (callers asking for ever
    new lists of features cost a recomputation, not memory)."""

    def __init__(self, serving: plan.ServingPlan) -> None:
        self.serving = serving
        self._everything = serving.feature_names
        self._selections: dict[tuple[str, ...], _Selection] = {}

    def plan(
        self,
        *,
        feature_service: str | None,
        feature_names: Sequence[str] | None,
        entities: Mapping[str, Column],
        request_data: Mapping[str, Column],
        include_event_times: bool,
        max_rows: int,
    ) -> Lookup:
        """As :func:`plan_lookup`."""
        serving = self.serving
        if feature_names is None and feature_service == serving.feature_service:
            names = self._everything
        else:
            names = _requested(serving, feature_service, feature_names, self._everything)
        selection = self._selections.get(names)
        if selection is None:
            selection = _select(serving, names)
            if len(self._selections) >= self._KEPT:
                self._selections.clear()
            self._selections[names] = selection
        rows = _row_count(entities, request_data, max_rows)
        _check_entities(serving, selection.parts, entities)
        checked_request_data = _check_request_data(
            serving, selection.transformations, selection.request_fields, request_data
        )
        reads = []
        # Views of the same entity share their keys: encode them once per request.
        encoded: dict[tuple[tuple[str, str], ...], tuple[str, ...]] = {}
        for part in selection.parts:
            row_keys = encoded.get(part.key_types)
            if row_keys is None:
                row_keys = encoded[part.key_types] = _encode_keys(part.key_types, entities)
            unique = tuple(dict.fromkeys(row_keys))
            reads.append(ViewRead(part.view, part.features, unique, row_keys, part.attributes))
        return Lookup(
            features=names,
            reads=tuple(reads),
            rows=rows,
            request_data=checked_request_data,
            transformations=selection.transformations,
            compiled=serving.transformations,
            include_event_times=include_event_times,
        )


def plan_lookup(
    serving: plan.ServingPlan,
    *,
    feature_service: str | None,
    feature_names: Sequence[str] | None,
    entities: Mapping[str, Column],
    request_data: Mapping[str, Column],
    include_event_times: bool,
    max_rows: int,
) -> Lookup:
    """Check a request against the plan and say what to read.

    ``feature_service`` (when given) must be the plan's; ``feature_names`` (when
    given) picks some of its features, else all are answered. A server plans many
    requests over one plan: a :class:`Planner` does it with less work per request.
    """
    return Planner(serving).plan(
        feature_service=feature_service,
        feature_names=feature_names,
        entities=entities,
        request_data=request_data,
        include_event_times=include_event_times,
        max_rows=max_rows,
    )


def _select(serving: plan.ServingPlan, names: tuple[str, ...]) -> _Selection:
    transformations = tuple(n for n in names if n in serving.transformations)
    fetched = dict.fromkeys(n for n in names if n in serving.features)
    for name in serving.transformations.inputs(transformations):
        if name in serving.features:
            fetched.setdefault(name)
    declared = {r.name for r in serving.request_data}
    return _Selection(
        names=names,
        transformations=transformations,
        parts=tuple(
            _ViewPart(
                view,
                tuple(features),
                tuple(sorted(view.key_types.items())),
                _attributes_to_read(view, features),
            )
            for view, features in _views_of(serving, fetched).items()
        ),
        request_fields=tuple(
            n for n in serving.transformations.inputs(transformations) if n in declared
        ),
    )


def _attributes_to_read(
    view: plan.FeatureViewPlan, features: Sequence[plan.Feature]
) -> tuple[str, ...] | None:
    sources = tuple(f.source for f in features)
    if view.stored_features is not None and view.stored_features <= set(sources):
        return None
    return sources


def _encode_keys(
    key_types: Sequence[tuple[str, str]], entities: Mapping[str, Column]
) -> tuple[str, ...]:
    """The encoded key of each row; the columns are checked: every key there, of its
    type, without nulls."""
    columns = {name: entities[name].values for name, _ in key_types}
    return tuple(keys.encode_entity_keys(dict(key_types), columns))


def table_read(read: ViewRead) -> base.TableRead:
    """The store read of ``read``: its entities' keys, and for a materialized view the
    table's windows item, in the same call (BatchGetItem takes up to 100 keys)."""
    keys_ = read.keys if read.view.push is not None else (*read.keys, windows.WINDOWS_KEY)
    return base.TableRead(read.view.online_table, keys_, read.attributes)


def _complete_only(read: ViewRead, found: Mapping[str, Item]) -> Mapping[str, Item]:
    """``found`` without the items that windows still pending may have written."""
    if read.view.push is not None:
        return found
    ranges = windows.pending_ranges(found.get(windows.WINDOWS_KEY))
    if not ranges:
        return found
    return {
        key: item
        for key, item in found.items()
        if key != windows.WINDOWS_KEY
        and not windows.hidden(int(item[layout.EVENT_TIME]["N"]), ranges)
    }


def assemble(
    lookup: Lookup, items: Mapping[str, Mapping[str, Item]], now_micros: int
) -> LookupResult:
    """The answer to ``lookup`` from the items read (view table -> entity key -> item;
    absent keys were not found), judged at ``now_micros``.

    Raises :class:`featurekube.ondemand.TransformationError` when a transformation
    fails on this request's values.
    """
    rows = lookup.rows
    columns: dict[str, FeatureResult] = {}
    # Transformations take the event times of what they read, asked for or not.
    keep_times = lookup.include_event_times or bool(lookup.transformations)
    for read in lookup.reads:
        found = _complete_only(read, items.get(read.view.online_table, {}))
        statuses, event_times, stored = _judge(read, found, now_micros)
        present = _without_nones(stored)
        times = event_times if keep_times else None
        attributes = _attributes(read.features, present)
        for feature, column in zip(read.features, attributes, strict=True):
            decoded = _decode(feature.type, feature.source, stored, present, column)
            columns[feature.name] = FeatureResult(
                feature.name, feature.type, decoded, statuses, times
            )
    if lookup.transformations:
        computed = _transform(lookup, columns, rows)
        columns = {**columns, **computed}
    answered = [columns[name] for name in lookup.features]
    if keep_times and not lookup.include_event_times:
        answered = [FeatureResult(r.name, r.type, r.values, r.statuses, None) for r in answered]
    return LookupResult(answered, rows, _count(answered))


def _count(answered: Sequence[FeatureResult]) -> dict[Status, int]:
    """How many answered values have each status; the features of one view share one
    list of statuses, counted once."""
    present = not_found = outside_max_age = 0
    tallies: dict[int, tuple[int, int, int]] = {}
    for result in answered:
        tally = tallies.get(id(result.statuses))
        if tally is None:
            statuses = result.statuses
            tally = tallies[id(statuses)] = (
                statuses.count(_PRESENT),
                statuses.count(_NOT_FOUND),
                statuses.count(_OUTSIDE_MAX_AGE),
            )
        present += tally[0]
        not_found += tally[1]
        outside_max_age += tally[2]
    return {
        Status.PRESENT: present,
        Status.NOT_FOUND: not_found,
        Status.OUTSIDE_MAX_AGE: outside_max_age,
    }


# The value types decoded in bulk: the DynamoDB attribute tag holding the value, and
# the conversion from it.
_BULK: dict[str, tuple[operator.itemgetter[str], Any]] = {
    "int64": (operator.itemgetter("N"), int),
    "float64": (operator.itemgetter("N"), float),
    "string": (operator.itemgetter("S"), None),
    "bool": (operator.itemgetter("BOOL"), None),
}


def _attributes(
    features: Sequence[plan.Feature], present: list[Item]
) -> Sequence[Sequence[dict[str, Any]] | None]:
    """Per feature, its attribute in each of ``present``, when every item has every
    one of ``features`` (else Nones): each item is looked into once for all of them,
    rather than once per feature, which keeps it in the CPU's cache."""
    if len(features) > 1 and present:
        try:
            rows = list(map(operator.itemgetter(*(f.source for f in features)), present))
        except KeyError:
            pass
        else:
            return list(zip(*rows, strict=True))
    return [None] * len(features)


def _decode(
    value_type: str,
    source: str,
    stored: list[Item | None],
    present: list[Item] | None = None,
    attributes: Sequence[dict[str, Any]] | None = None,
) -> list[Any]:
    """The values of attribute ``source`` of each item (None: no valid item), exactly
    as :func:`featurekube.online.values.from_attribute` decodes them (a unit test holds
    them to it). ``present`` is ``stored`` without its Nones, when known.

    The common types are decoded a column at a time with C-level maps, which holds
    while every valid item has the attribute under its usual tag (nulls and NaN are
    stored otherwise); any other column is decoded value by value.
    """
    bulk = _BULK.get(value_type)
    if bulk is not None:
        if present is None:
            present = _without_nones(stored)
        tag, convert = bulk
        try:
            if attributes is None:
                attributes = list(map(operator.itemgetter(source), present))
            raw = list(map(tag, attributes))
        except KeyError:
            return _decode_each(value_type, source, stored)
        decoded = raw if convert is None else list(map(convert, raw))
        if present is stored:
            return decoded
        ordered = iter(decoded)
        return [None if i is None else next(ordered) for i in stored]
    return _decode_each(value_type, source, stored)


def _without_nones(stored: list[Item | None]) -> list[Item]:
    """``stored`` itself when it holds no None (the common case), else a copy without."""
    if None in stored:
        return [i for i in stored if i is not None]
    return cast("list[Item]", stored)


def _decode_each(value_type: str, source: str, stored: list[Item | None]) -> list[Any]:
    if value_type == "int64":
        return [
            int(a["N"]) if i is not None and (a := i.get(source)) is not None and "N" in a else None
            for i in stored
        ]
    if value_type == "float64":
        return [
            float(a["N"])
            if i is not None and (a := i.get(source)) is not None and "N" in a
            else (None if i is None else values.from_attribute("float64", i.get(source)))
            for i in stored
        ]
    if value_type == "string":
        return [
            a["S"] if i is not None and (a := i.get(source)) is not None and "S" in a else None
            for i in stored
        ]
    if value_type == "bool":
        return [
            a["BOOL"]
            if i is not None and (a := i.get(source)) is not None and "BOOL" in a
            else None
            for i in stored
        ]
    return [None if i is None else values.from_attribute(value_type, i.get(source)) for i in stored]


# --- checks --------------------------------------------------------------------------


def _requested(
    serving: plan.ServingPlan,
    feature_service: str | None,
    feature_names: Sequence[str] | None,
    everything: tuple[str, ...],
) -> tuple[str, ...]:
    if feature_service and feature_service != serving.feature_service:
        raise errors.NotServedError(
            f"this server serves feature service {serving.namespace}/{serving.feature_service},"
            f" not {feature_service!r}; call the server of {feature_service} (its endpoint is in"
            " the FeatureService's status.endpoint)"
        )
    if feature_names is None:
        return everything
    if not feature_names:
        raise errors.UnknownFeatureError(
            "the request names no feature: list some features, or name the feature service"
        )
    known = set(everything)
    seen: set[str] = set()
    for name in feature_names:
        if name not in known:
            raise errors.UnknownFeatureError(
                f"unknown feature {name!r}: feature service {serving.feature_service} serves "
                f"{_listing(everything)}{_hint(name, everything)}"
            )
        if name in seen:
            raise errors.UnknownFeatureError(f"feature {name!r} is asked for twice")
        seen.add(name)
    return tuple(feature_names)


def _views_of(
    serving: plan.ServingPlan, fetched: Mapping[str, None]
) -> dict[plan.FeatureViewPlan, list[plan.Feature]]:
    views: dict[plan.FeatureViewPlan, list[plan.Feature]] = {}
    for name in fetched:
        view, feature = serving.features[name]
        views.setdefault(view, []).append(feature)
    return views


def _row_count(
    entities: Mapping[str, Column], request_data: Mapping[str, Column], max_rows: int
) -> int:
    distinct = {len(c.values) for c in entities.values()}
    distinct.update(len(c.values) for c in request_data.values())
    if len(distinct) == 1:
        (rows,) = distinct
        if rows <= max_rows:
            return rows
    lengths = {
        **{f"entities[{n}]": len(c.values) for n, c in entities.items()},
        **{f"request_data[{n}]": len(c.values) for n, c in request_data.items()},
    }
    if not lengths:
        raise errors.InvalidColumnError(
            "the request has no entity rows: send the join keys as columns in 'entities'"
        )
    distinct = set(lengths.values())
    if len(distinct) > 1:
        shown = ", ".join(f"{where} has {n}" for where, n in sorted(lengths.items()))
        raise errors.InvalidColumnError(
            f"columns of different lengths ({shown}): send one value per entity row in each"
        )
    (rows,) = distinct
    if rows > max_rows:
        raise errors.TooManyRowsError(
            f"{rows} entity rows in one request; this server takes at most {max_rows}: "
            "split the request"
        )
    return rows


def _check_entities(
    serving: plan.ServingPlan, parts: Sequence[_ViewPart], entities: Mapping[str, Column]
) -> None:
    for name in entities:
        if name not in serving.join_keys:
            raise errors.InvalidColumnError(
                f"unknown join key {name!r}: feature service {serving.feature_service} is keyed "
                f"by {_listing(serving.join_keys)}{_hint(name, serving.join_keys)}"
            )
    for part in parts:
        for entity in part.view.entities:
            column = entities.get(entity.name)
            if column is None:
                raise errors.InvalidColumnError(
                    f"missing join key {entity.name} ({entity.type}), needed for "
                    f"{_listing([f.name for f in part.features])} of feature "
                    f"view {part.view.name}: send it in 'entities'"
                )
            if column.type != entity.type:
                found = "only nulls" if column.type is None else f"{column.type} values"
                raise errors.InvalidColumnError(
                    f"join key {entity.name} is {entity.type}, but the request sent {found}"
                )
            if any(map(operator.is_, column.values, _NONES)):
                row = next(i for i, v in enumerate(column.values) if v is None)
                raise errors.InvalidColumnError(
                    f"join key {entity.name} is null in row {row}: every entity row needs every key"
                )


def _check_request_data(
    serving: plan.ServingPlan,
    transformations: Sequence[str],
    needed: Sequence[str],
    request_data: Mapping[str, Column],
) -> dict[str, Column]:
    declared = {r.name: r.type for r in serving.request_data}
    for name in request_data:
        if name not in declared:
            raise errors.InvalidColumnError(
                f"unknown request field {name!r}: feature service {serving.feature_service} "
                f"takes {_listing(declared) if declared else 'no request data'}"
                f"{_hint(name, declared)}"
            )
    checked = {}
    for name in needed:
        column = request_data.get(name)
        if column is None:
            users = [t for t in transformations if name in serving.transformations[t].inputs]
            raise errors.InvalidColumnError(
                f"missing request field {name} ({declared[name]}), read by {_listing(users)}: "
                "send it in 'request_data'"
            )
        if column.type is None:
            column = Column(declared[name], column.values)
        elif column.type != declared[name]:
            if column.type == "int64" and declared[name] == "float64":
                column = Column("float64", [None if v is None else float(v) for v in column.values])
            else:
                raise errors.InvalidColumnError(
                    f"request field {name} is {declared[name]}, but the request sent "
                    f"{column.type} values"
                )
        checked[name] = column
    return checked


def _listing(names: Sequence[str] | Mapping[str, Any]) -> str:
    shown = list(names)
    if len(shown) > 12:
        return ", ".join(shown[:12]) + f" and {len(shown) - 12} more"
    return ", ".join(shown)


def _hint(name: str, known: Sequence[str] | Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- answers -------------------------------------------------------------------------


def _judge(
    read: ViewRead, found: Mapping[str, Item], now_micros: int
) -> tuple[list[int], list[int], list[Item | None]]:
    """Per row: the status, event time, and the item whose values count (None when
    the row's values are null because nothing valid was found)."""
    ttl = read.view.ttl_micros
    stored = list(map(found.get, read.row_keys))
    if None not in stored:
        # Every row found (the common case): judge the rows in bulk.
        items = cast("list[Item]", stored)
        event_times = list(map(int, map(_NUMBER, map(_EVENT_TIME, items))))
        if ttl is None or not event_times or now_micros - min(map(_ttl_anchor, items)) <= ttl:
            return [_PRESENT] * len(stored), event_times, stored
    per_key: dict[str, tuple[int, int, Item | None]] = {}
    for key in read.keys:
        item = found.get(key)
        if item is None:
            per_key[key] = (_NOT_FOUND, 0, None)
            continue
        event_time = int(item[layout.EVENT_TIME]["N"])
        if ttl is not None and now_micros - _ttl_anchor(item) > ttl:
            per_key[key] = (_OUTSIDE_MAX_AGE, event_time, None)
        else:
            per_key[key] = (_PRESENT, event_time, item)
    judged = [per_key[key] for key in read.row_keys]
    return [j[0] for j in judged], [j[1] for j in judged], [j[2] for j in judged]


def _transform(
    lookup: Lookup, columns: Mapping[str, FeatureResult], rows: int
) -> dict[str, FeatureResult]:
    compiled = lookup.compiled
    inputs: dict[str, pa.Array] = {}
    for name, column in lookup.request_data.items():
        inputs[name] = pa.array(column.values, type=ondemand.ARROW_TYPES[str(column.type)])
    for name in compiled.inputs(lookup.transformations):
        if name in columns:
            fetched = columns[name]
            inputs[name] = pa.array(fetched.values, type=ondemand.ARROW_TYPES[fetched.type])
    # A transformation of constants alone still needs to know how many rows there are.
    table = pa.table(inputs) if inputs else pa.table({"rows": pa.nulls(rows)})
    evaluated = compiled.evaluate(table, names=lookup.transformations)
    results = {}
    for name in lookup.transformations:
        transformation = compiled[name]
        read = [columns[n] for n in transformation.inputs if n in columns]
        statuses = [_PRESENT] * rows
        event_times = [0] * rows
        for source in read:
            statuses = [
                s if _RANK[s] >= _RANK[t] else t
                for s, t in zip(statuses, source.statuses, strict=True)
            ]
            if source.event_times is not None:
                event_times = [
                    max(a, b) for a, b in zip(event_times, source.event_times, strict=True)
                ]
        results[name] = FeatureResult(
            name, transformation.type, evaluated[name].to_pylist(), statuses, event_times
        )
    return results


# --- pushed rows ---------------------------------------------------------------------


def check_push(
    view: plan.FeatureViewPlan,
    columns: Mapping[str, Column],
    max_rows: int,
    latest_micros: int | None = None,
) -> pa.Table:
    """Check rows pushed to ``view`` against its schema and return them as the table a
    :class:`~featurekube_server.stores.base.PushWriter` takes: join keys, the event
    timestamp field (timestamp[us, UTC]) and every feature, each of its value type.
    Event times must lie between 1970 and ``latest_micros`` (the request time plus
    the allowed clock skew; None: no upper bound): a value from the far future would
    hold the online store against every real event until then.

    Raises :class:`featurekube_server.errors.InvalidPushError` naming the column, and
    the row where one value is at fault.
    """
    where = f"feature view {view.namespace}/{view.name}"
    if view.push is None:
        raise errors.InvalidPushError(
            f"{where} is not a push source (its spec.source is batch, or this server's plan "
            "does not say how to write it): only views with spec.source.push take pushed rows"
        )
    expected: dict[str, tuple[str, str]] = {e.name: (e.type, "a join key") for e in view.entities}
    expected[view.push.timestamp_field] = ("timestamp", "the event timestamp field")
    for feature in view.push.features:
        expected.setdefault(feature.source, (feature.type, "a feature"))
    for name in columns:
        if name not in expected:
            raise errors.InvalidPushError(
                f"column {name!r} is not a join key, the event timestamp field or a feature of "
                f"{where}; it takes {_listing(expected)}{_hint(name, expected)}"
            )
    missing = [f"{n} ({t})" for n, (t, _) in expected.items() if n not in columns]
    if missing:
        raise errors.InvalidPushError(
            f"rows pushed to {where} lack column(s) {', '.join(missing)}: send every join key, "
            "the event timestamp and every feature (null values are allowed in features)"
        )
    lengths = {len(c.values) for c in columns.values()}
    if len(lengths) > 1:
        shown = ", ".join(f"{n} has {len(c.values)}" for n, c in columns.items())
        raise errors.InvalidPushError(f"pushed columns have different lengths ({shown})")
    (rows,) = lengths
    if rows > max_rows:
        raise errors.TooManyRowsError(
            f"{rows} rows in one push; this server takes at most {max_rows}: split the push"
        )
    arrays = {}
    for name, (value_type, role) in expected.items():
        column = columns[name]
        values_ = column.values
        if column.type is not None and column.type != value_type:
            if column.type == "int64" and value_type == "float64":
                values_ = [None if v is None else float(v) for v in values_]
            else:
                raise errors.InvalidPushError(
                    f"column {name} is {role} of type {value_type}, but the rows have "
                    f"{column.type} values"
                )
        if role != "a feature":
            for row, value in enumerate(values_):
                if value is None:
                    raise errors.InvalidPushError(
                        f"row {row}, column {name}: null, but {role} must have a value in every row"
                    )
        if name == view.push.timestamp_field:
            _check_event_times(name, values_, latest_micros)
        arrays[name] = pa.array(values_, type=ondemand.ARROW_TYPES[value_type])
    return pa.table(arrays)


def _check_event_times(name: str, times: Sequence[Any], latest_micros: int | None) -> None:
    for row, value in enumerate(times):
        micros = value if isinstance(value, int) else _event_micros(value)
        if micros < 0:
            raise errors.InvalidPushError(
                f"row {row}, column {name}: event time {micros} µs is before 1970; "
                "send microseconds since 1970-01-01T00:00:00Z"
            )
        if latest_micros is not None and micros > latest_micros:
            raise errors.InvalidPushError(
                f"row {row}, column {name}: event time {micros} µs is ahead of this server's "
                f"clock by more than it allows ({latest_micros} µs at most): send the time the "
                "event happened, or fix the producer's clock"
            )


def _event_micros(value: dt.datetime) -> int:
    moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
