"""Rows as the write path takes them: the view's Arrow schema, and the conversion of
Python dicts or Arrow data into it; pure.

A row holds the view's join keys, its features (a missing feature or None is a null),
``event_timestamp`` and, optionally, ``created_timestamp``: the names of the offline
table's columns (:mod:`featurekube.offline.layout`), whatever the source called them.
Timestamps are datetimes (a naive one is UTC) or Arrow timestamps of any unit and zone;
they are kept to the microsecond. A missing or null ``created_timestamp`` becomes the
time of the write, as the point-in-time rule says (docs/semantics.md).

Input may be a ``pyarrow.Table``, a ``RecordBatch``, a ``RecordBatchReader``, an
iterable of record batches, or an iterable of mappings (``{"driver_id": 1001, ...}``).
:func:`iter_batches` turns any of them into record batches of :func:`row_schema`,
raising :class:`~featurekube.writer.errors.RowError` naming the row and column of the
first value that does not fit.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from featurekube.offline import layout as offline_layout
from featurekube.spec import v1alpha1
from featurekube.writer.errors import RowError
from featurekube.writer.labels import view_label

__all__ = [
    "ARROW_TYPES",
    "TIMESTAMP",
    "Rows",
    "iter_batches",
    "resolve_full_ties",
    "row_schema",
    "view_label",
]

TIMESTAMP = pa.timestamp("us", tz="UTC")
"""Every timestamp the stores hold: microseconds, UTC."""

ARROW_TYPES: Mapping[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": TIMESTAMP,
    "float64_array": pa.list_(pa.float64()),
}
"""Value type (of a feature or join key) -> its Arrow type."""

Rows: TypeAlias = (
    pa.Table
    | pa.RecordBatch
    | pa.RecordBatchReader
    | Iterable[pa.RecordBatch]
    | Iterable[Mapping[str, Any]]
)
"""What the writers accept; see the module docstring."""

_DICT_CHUNK = 10_000
_EVENT = offline_layout.EVENT_TIMESTAMP
_CREATED = offline_layout.CREATED_TIMESTAMP


def row_schema(spec: v1alpha1.FeatureViewSpec) -> pa.Schema:
    """Join keys, features (in spec order), ``event_timestamp``, ``created_timestamp``,
    and for aggregation views ``latest_event_timestamp`` (null: the event time).

    >>> from featurekube.spec import v1alpha1
    >>> spec = v1alpha1.FeatureViewSpec.model_validate({
    ...     "owner": "a", "entities": [{"name": "driver_id", "type": "int64"}],
    ...     "source": {"push": {}}, "features": [{"name": "rating", "type": "float64"}]})
    >>> row_schema(spec).names
    ['driver_id', 'rating', 'event_timestamp', 'created_timestamp']
    """
    fields = [pa.field(e.name, ARROW_TYPES[e.type], nullable=False) for e in spec.entities]
    fields += [pa.field(name, ARROW_TYPES[t]) for name, t in spec.feature_types().items()]
    fields += [pa.field(_EVENT, TIMESTAMP, nullable=False), pa.field(_CREATED, TIMESTAMP)]
    if spec.aggregations:
        fields.append(pa.field(offline_layout.LATEST_EVENT_TIMESTAMP, TIMESTAMP))
    return pa.schema(fields)


def resolve_full_ties(spec: v1alpha1.FeatureViewSpec, table: pa.Table) -> pa.Table:
    """``table`` with one row of each full tie: of rows equal in join keys,
    ``event_timestamp`` and ``created_timestamp`` (absent: all equal), the one with the
    greatest feature values, compared in the order the features are declared, a null
    lowest — the row the materialization job keeps, so that pushed rows resolve ties
    offline and online as materialized ones do (docs/semantics.md). Rows stay in order.

    >>> from featurekube.spec import v1alpha1
    >>> spec = v1alpha1.FeatureViewSpec.model_validate({
    ...     "owner": "a", "entities": [{"name": "driver_id", "type": "int64"}],
    ...     "source": {"push": {}}, "features": [{"name": "zone", "type": "int64"}]})
    >>> rows = pa.table({"driver_id": [1, 1, 1], "zone": [4, None, 7],
    ...                  "event_timestamp": [0, 0, 0]})
    >>> resolve_full_ties(spec, rows).column("zone").to_pylist()
    [7]
    """
    group_columns = [e.name for e in spec.entities] + [
        c for c in (_EVENT, _CREATED) if c in table.column_names
    ]
    features = [f for f in spec.feature_types() if f in table.column_names]
    rows = table.select([*group_columns, *features]).to_pylist()
    best: dict[tuple[Any, ...], int] = {}
    for index, row in enumerate(rows):
        group = tuple(row[c] for c in group_columns)
        held = best.get(group)
        if held is None or _tie_rank(row, features) > _tie_rank(rows[held], features):
            best[group] = index
    if len(best) == len(rows):
        return table
    return table.take(pa.array(sorted(best.values()), pa.int64()))


def _tie_rank(row: Mapping[str, Any], features: list[str]) -> tuple[tuple[bool, Any], ...]:
    # (present, value): a null is lowest, and two nulls compare equal without '<'.
    return tuple((row[f] is not None, row[f]) for f in features)


def iter_batches(
    spec: v1alpha1.FeatureViewSpec,
    rows: Rows,
    *,
    created_default: dt.datetime,
    label: str = "the FeatureView",
) -> Iterator[pa.RecordBatch]:
    """``rows`` as record batches of :func:`row_schema`, nulls in ``created_timestamp``
    filled with ``created_default``; raises :class:`RowError` on the first misfit."""
    schema = row_schema(spec)
    offset = 0
    for batch in _raw_batches(rows, schema, label):
        yield _conform(batch, schema, spec, created_default, label, offset)
        offset += batch.num_rows


def _raw_batches(rows: Rows, schema: pa.Schema, label: str) -> Iterator[pa.RecordBatch]:
    if isinstance(rows, pa.Table):
        yield from rows.to_batches()
        return
    if isinstance(rows, pa.RecordBatch):
        yield rows
        return
    if isinstance(rows, pa.RecordBatchReader):
        yield from rows
        return
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return
    if isinstance(first, pa.RecordBatch):
        # A stream of batches passes through one at a time: holding any back would
        # hold a whole window's rows in memory.
        yield first
        yield from iterator
        return
    offset = 0
    chunk = [first, *itertools.islice(iterator, _DICT_CHUNK - 1)]
    while chunk:
        yield _from_dicts(chunk, schema, label, offset)
        offset += len(chunk)
        chunk = list(itertools.islice(iterator, _DICT_CHUNK))


def _from_dicts(
    chunk: list[Mapping[str, Any]], schema: pa.Schema, label: str, offset: int
) -> pa.RecordBatch:
    known = set(schema.names)
    for index, row in enumerate(chunk):
        unknown = set(row) - known
        if unknown:
            column = sorted(unknown)[0]
            raise RowError(
                f"{label}: row {offset + index} has column {column!r}, which the view does "
                f"not define; its columns are {', '.join(schema.names)}",
                row=offset + index,
                column=column,
            )
    arrays = []
    for field in schema:
        values = [row.get(field.name) for row in chunk]
        try:
            arrays.append(pa.array(values, field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            index = _first_misfit(values, field.type)
            raise RowError(
                f"{label}: row {offset + index} column {field.name!r}: "
                f"{values[index]!r} is not a {_type_name(field.type)}",
                row=offset + index,
                column=field.name,
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema.with_metadata(None))


def _first_misfit(values: list[Any], type_: pa.DataType) -> int:
    for index, value in enumerate(values):
        try:
            pa.array([value], type_)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            return index
    return 0


def _type_name(type_: pa.DataType) -> str:
    for name, arrow in ARROW_TYPES.items():
        if arrow == type_:
            return name
    return str(type_)


def _conform(
    batch: pa.RecordBatch,
    schema: pa.Schema,
    spec: v1alpha1.FeatureViewSpec,
    created_default: dt.datetime,
    label: str,
    offset: int,
) -> pa.RecordBatch:
    names = set(batch.schema.names)
    unknown = sorted(names - set(schema.names))
    if unknown:
        raise RowError(
            f"{label}: column {unknown[0]!r} is not defined by the view; its columns are "
            f"{', '.join(schema.names)}",
            column=unknown[0],
        )
    arrays = []
    for field in schema:
        if field.name not in names:
            if not field.nullable:
                raise RowError(
                    f"{label}: column {field.name!r} is missing; every row needs the join "
                    f"keys ({', '.join(e.name for e in spec.entities)}) and {_EVENT}",
                    column=field.name,
                )
            arrays.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(field.name)
        arrays.append(_cast(column, field, label, offset))
    conformed = pa.RecordBatch.from_arrays(arrays, schema=schema)
    for field in schema:
        if not field.nullable:
            nulls = conformed.column(field.name).null_count
            if nulls:
                index = pc.index(pc.is_null(conformed.column(field.name)), True).as_py()
                raise RowError(
                    f"{label}: row {offset + index} has no {field.name} (null)",
                    row=offset + index,
                    column=field.name,
                )
    created = conformed.column(_CREATED)
    if created.null_count:
        filled = pc.fill_null(created, pa.scalar(created_default, TIMESTAMP))
        conformed = conformed.set_column(schema.get_field_index(_CREATED), _CREATED, filled)
    return conformed


def _cast(column: pa.Array, field: pa.Field, label: str, offset: int) -> pa.Array:
    if column.type == field.type:
        return column
    # A timestamp of any zone is an instant: only its unit may need truncating (Spark
    # and the stores keep microseconds). A naive one is UTC.
    safe = not (pa.types.is_timestamp(column.type) and pa.types.is_timestamp(field.type))
    try:
        return column.cast(field.type, safe=safe)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise RowError(
            f"{label}: column {field.name!r} is {column.type}, which does not convert to "
            f"{_type_name(field.type)}: {exc}",
            column=field.name,
        ) from exc
