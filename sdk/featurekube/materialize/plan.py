"""What materializing one window of a view means, as plain data; pure (no I/O, no
pyspark).

:func:`plan_materialization` turns a FeatureView and a window [start, end) into a
:class:`MaterializationPlan`: which source rows to read (by event time, lookback
included), which columns the (transformed) source must have and of what types, and
what to compute. The Spark job (:mod:`featurekube.materialize.spark_job`) executes it.

Which rows a window owns
------------------------
Plain features: the source rows with ``start <= E < end``. Rows of one entity with
equal event times are one row: the one with the greatest created time.

Aggregations, with interval S and windows W: values exist at boundaries t = k·S, the
value at t aggregating the events with ``t - W < E <= t`` (docs/semantics.md,
"Aggregations"). A window owns the boundaries with ``start <= t < end`` — each boundary
belongs to exactly one of a sequence of windows, and the value at an owned t needs
only events with E <= t < end, which have all arrived when the window is due. A window
[start, end) that does not start or end on a boundary owns the boundaries inside it:
the first at or after ``start``, the last before ``end``; one between two boundaries
owns none and computes nothing. The offline store gets a row at an owned t for
each entity whose values differ from those at t - S (a change; an emptied window is one,
with count 0 and other values null), or which had an event in (t - S, t]: each row
carries ``latest_event_timestamp``, the entity's latest event at or before t, which
the TTL counts from. Whether the values at t - S differ is computed from the events
themselves, not from earlier output, so the rows at t are a function of the source
events with ``t - S - max(W) < E <= t`` alone: re-running a window gives the same rows,
and any split of a period into windows gives the rows of the whole. Hence the read
range ``(first - S - max(W), last]`` for the window's first and last boundaries. An
aggregation row's event time is t and its created time is t too, so a re-run replaces
it online while an older window's never does.

An aggregated column is read once, in one type (:func:`read_types`): an integer column
as int64 whatever is computed over it, so that sum, min, max and last stay exact
beyond 2^53 beside a mean or a deviation of the same column.

Online, the job writes each entity's newest row of the window (greatest event time,
then created time), which is the offline point-in-time value at any T from that row's
event time until the next row of that entity: online and offline agree at every T in
[last owned boundary, end) once every window up to ``end`` is materialized.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from featurekube.materialize import translate
from featurekube.materialize.errors import PlanError, SourceSchemaError
from featurekube.spec import v1alpha1

__all__ = [
    "CREATED_MICROS",
    "EVENT_MICROS",
    "AggregationPlan",
    "AggregationStep",
    "Column",
    "MaterializationPlan",
    "check_columns",
    "from_micros",
    "parse_time",
    "plan_materialization",
    "read_types",
    "read_view_document",
    "to_micros",
    "utc",
]

EVENT_MICROS = "__event_micros"
"""The job's column of each source row's event time, in microseconds since the epoch."""
CREATED_MICROS = "__created_micros"
"""The job's column of each source row's created time, in microseconds."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

_INTEGERS = ("bigint", "int", "smallint", "tinyint")
_ACCEPTED: Mapping[str, tuple[str, ...]] = {
    "int64": _INTEGERS,
    "float64": ("double", "float", *_INTEGERS, "decimal"),
    "string": ("string", "varchar", "char"),
    "bool": ("boolean",),
    "timestamp": ("timestamp", "timestamp_ntz"),
    "float64_array": ("array<double>", "array<float>"),
    "any": (),
}
"""Value type -> the Spark types (``simpleString``, without parameters) that convert to
it without loss of meaning. ``any``: every type."""


def to_micros(moment: dt.datetime) -> int:
    """Microseconds since the epoch; a naive datetime is UTC.

    >>> to_micros(dt.datetime(1970, 1, 1, 0, 0, 1))
    1000000
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 instant (``2026-01-01T00:00:00Z``); without a zone it is UTC.

    >>> parse_time("2026-01-01T02:00:00+02:00").isoformat()
    '2026-01-01T00:00:00+00:00'
    """
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time such as 2026-01-01T00:00:00Z") from None
    return utc(moment)


def from_micros(micros: int) -> dt.datetime:
    """The UTC datetime ``micros`` after the epoch."""
    return _EPOCH + dt.timedelta(microseconds=micros)


def utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC; a naive datetime is taken as UTC."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


@dataclass(frozen=True)
class Column:
    """A column the job needs from the (transformed) source."""

    name: str
    value_type: str
    """What it must convert to: a value type, or ``any``."""
    role: str
    """Why it is needed, for messages: ``join key``, ``feature rating``, ..."""


@dataclass(frozen=True)
class AggregationStep:
    """One aggregation, in microseconds."""

    name: str
    column: str
    function: str
    window: int
    """The window's length in microseconds."""
    value_type: str


@dataclass(frozen=True)
class AggregationPlan:
    """The boundaries a window owns and the aggregations computed at them."""

    interval: int
    """S, in microseconds."""
    first_boundary: int | None
    """The first owned boundary (microseconds), None when the window owns none."""
    last_boundary: int | None
    """The last owned boundary (microseconds), None when the window owns none."""
    steps: tuple[AggregationStep, ...]

    @property
    def longest_window(self) -> int:
        return max(step.window for step in self.steps)

    @property
    def windows(self) -> tuple[int, ...]:
        """The distinct window lengths, ascending."""
        return tuple(sorted({step.window for step in self.steps}))


@dataclass(frozen=True)
class MaterializationPlan:
    """Everything the job needs to know about one window of one view."""

    label: str
    """``FeatureView namespace/name``, for messages."""
    name: str
    spec: v1alpha1.FeatureViewSpec
    start: dt.datetime
    end: dt.datetime
    read_start: dt.datetime
    """Source rows with read_start <= E < read_end are read."""
    read_end: dt.datetime
    source_path: str
    source_format: str
    timestamp_field: str
    created_field: str | None
    transformation: str | None
    keys: tuple[tuple[str, str], ...]
    """(name, type) of each join key, in spec order."""
    features: tuple[tuple[str, str], ...]
    """(name, value type) of each feature, in spec order."""
    columns: tuple[Column, ...]
    """What the (transformed) source must have."""
    aggregation: AggregationPlan | None
    """None for plain features."""

    @property
    def reads_nothing(self) -> bool:
        """An aggregation window that owns no boundary computes nothing."""
        return self.read_start >= self.read_end

    def aggregated_columns(self) -> list[str]:
        """The source columns aggregations read, deduplicated, in spec order."""
        return list(
            dict.fromkeys(c.name for c in self.columns if c.role.startswith("aggregation "))
        )

    def source_columns(self) -> list[str]:
        """The columns the job selects from the transformed source, deduplicated."""
        seen: dict[str, None] = {}
        for column in self.columns:
            seen.setdefault(column.name, None)
        return list(seen)


def plan_materialization(
    view: v1alpha1.FeatureView, start: dt.datetime, end: dt.datetime
) -> MaterializationPlan:
    """The plan for materializing ``view`` over [start, end); raises
    :class:`~featurekube.materialize.errors.PlanError` for a push source or an empty
    window."""
    spec = view.spec
    label = f"FeatureView {view.metadata.namespace or 'default'}/{view.metadata.name}"
    start, end = utc(start), utc(end)
    if not start < end:
        raise PlanError(
            f"{label}: the window [{start.isoformat()}, {end.isoformat()}) is empty: "
            "--start must be before --end"
        )
    batch = spec.source.batch
    if batch is None:
        raise PlanError(
            f"{label}: spec.source is a push source, whose rows are written by the feature "
            "server's Push RPC as they arrive; there is nothing to materialize"
        )
    if spec.transformation is not None:
        translate.check(spec.transformation.sql, label)
    keys = tuple((e.name, e.type) for e in spec.entities)
    columns = [Column(name, type_, "join key") for name, type_ in keys]
    columns.append(Column(batch.timestamp_field, "timestamp", "event time"))
    if batch.created_timestamp_field:
        columns.append(Column(batch.created_timestamp_field, "timestamp", "created time"))
    aggregation = None
    read_start, read_end = start, end
    if spec.aggregations:
        aggregation = _plan_aggregation(spec, start, end)
        columns += [
            Column(step.column, _column_type(step), f"aggregation {step.name}")
            for step in aggregation.steps
        ]
        first, last = aggregation.first_boundary, aggregation.last_boundary
        if first is None or last is None:
            read_start = read_end = start
        else:
            lookback = aggregation.interval + aggregation.longest_window
            read_start = from_micros(first - lookback + 1)
            read_end = from_micros(last + 1)
    else:
        columns += [Column(f.name, f.type, f"feature {f.name}") for f in spec.features or ()]
    return MaterializationPlan(
        label=label,
        name=view.metadata.name,
        spec=spec,
        start=start,
        end=end,
        read_start=read_start,
        read_end=read_end,
        source_path=batch.path,
        source_format=batch.format,
        timestamp_field=batch.timestamp_field,
        created_field=batch.created_timestamp_field,
        transformation=spec.transformation.sql if spec.transformation else None,
        keys=keys,
        features=tuple(spec.feature_types().items()),
        columns=tuple(columns),
        aggregation=aggregation,
    )


def _seconds(duration: str) -> int:
    return int(v1alpha1.parse_duration(duration).total_seconds())


def _plan_aggregation(
    spec: v1alpha1.FeatureViewSpec, start: dt.datetime, end: dt.datetime
) -> AggregationPlan:
    assert spec.aggregation_interval is not None  # the spec's own rules say so
    interval = _seconds(spec.aggregation_interval) * 1_000_000
    steps = tuple(
        AggregationStep(a.name, a.column, a.function, _seconds(a.window) * 1_000_000, a.value_type)
        for a in spec.aggregations or ()
    )
    first = -(-to_micros(start) // interval) * interval  # the first boundary >= start
    last = -(-to_micros(end) // interval) * interval - interval  # the last boundary < end
    if first > last:
        return AggregationPlan(interval, None, None, steps)
    return AggregationPlan(interval, first, last, steps)


def _column_type(step: AggregationStep) -> str:
    """The type a step's column must convert to (``any``: every type)."""
    if step.function in ("count", "count_distinct"):
        return "any"
    if step.function in ("mean", "stddev"):
        return "float64"
    return step.value_type


def read_types(plan: MaterializationPlan, found: Mapping[str, str]) -> dict[str, str]:
    """Each aggregated column -> the value type it is read as (``any``: as it is).

    ``found`` maps columns to their Spark types. An integer column is read as int64
    whatever is computed over it: int64 holds every integer type exactly, and the
    kernel computes means and deviations of integers exactly, so the order in which
    aggregations are declared never decides whether a sum is exact. Any other column
    is read as the first type its aggregations need (:func:`check_columns` has made
    sure they all accept it).

    >>> import featurekube.spec.v1alpha1 as v
    >>> view = v.FeatureView.model_validate({"metadata": {"name": "a"}, "spec": {
    ...     "owner": "o", "entities": [{"name": "driver_id", "type": "int64"}],
    ...     "source": {"batch": {"path": "s3://bucket/x/"}}, "aggregationInterval": "1h",
    ...     "aggregations": [
    ...         {"name": "mean_tip", "column": "tip", "function": "mean", "window": "1d"},
    ...         {"name": "sum_tip", "column": "tip", "function": "sum", "window": "1d",
    ...          "type": "int64"},
    ...         {"name": "mean_fare", "column": "fare", "function": "mean", "window": "1d"},
    ...         {"name": "riders", "column": "rider", "function": "count_distinct",
    ...          "window": "1d"}]}})
    >>> p = plan_materialization(view, dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2))
    >>> read_types(p, {"tip": "bigint", "fare": "int", "rider": "string"})
    {'tip': 'int64', 'fare': 'int64', 'rider': 'any'}
    """
    types: dict[str, str] = {}
    for column in plan.columns:
        if not column.role.startswith("aggregation "):
            continue
        if re.sub(r"\(.*\)$", "", found.get(column.name, "")) in _INTEGERS:
            types[column.name] = "int64"
        elif types.get(column.name, "any") == "any":
            types[column.name] = column.value_type
    return types


def check_columns(plan: MaterializationPlan, found: Mapping[str, str]) -> list[str]:
    """Problems of the (transformed) source's columns, one line each; none: fine.

    ``found`` maps each column to its Spark type (``DataType.simpleString()``).

    >>> import featurekube.spec.v1alpha1 as v
    >>> view = v.FeatureView.model_validate({"metadata": {"name": "a"}, "spec": {
    ...     "owner": "o", "entities": [{"name": "driver_id", "type": "int64"}],
    ...     "source": {"batch": {"path": "s3://bucket/x/"}},
    ...     "features": [{"name": "rating", "type": "float64"}]}})
    >>> p = plan_materialization(view, dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2))
    >>> check_columns(p, {"driver_id": "string", "event_timestamp": "timestamp"})
    ... # doctest: +NORMALIZE_WHITESPACE
    ["column driver_id (join key): expected int64 (Spark bigint), found string",
     'column rating (feature rating): missing']
    """
    problems = []
    for column in plan.columns:
        spark_type = found.get(column.name)
        if spark_type is None:
            problems.append(f"column {column.name} ({column.role}): missing")
            continue
        if not _accepts(column.value_type, spark_type):
            problems.append(
                f"column {column.name} ({column.role}): expected {column.value_type} "
                f"(Spark {v1alpha1.SPARK_SQL_TYPES[column.value_type]}), found {spark_type}"
            )
    return list(dict.fromkeys(problems))


def require_columns(
    plan: MaterializationPlan, found: Mapping[str, str], *, stream: bool = False
) -> None:
    """Raise :class:`~featurekube.materialize.errors.SourceSchemaError` naming every
    problem :func:`check_columns` finds, and where the columns came from: the source
    (its path), the view's stream (``stream``), or the transformation over either."""
    problems = check_columns(plan, found)
    if not problems:
        return
    if plan.transformation:
        where = "after spec.transformation.sql"
    else:
        where = "in the stream" if stream else "in the source"
    read = "" if stream else f" ({plan.source_path})"
    raise SourceSchemaError(
        f"{plan.label}: the columns {where}{read} do not match the spec:\n"
        + "\n".join(f"  - {p}" for p in problems),
        problems,
    )


def _accepts(value_type: str, spark_type: str) -> bool:
    accepted = _ACCEPTED[value_type]
    if not accepted:
        return True
    base = re.sub(r"\(.*\)$", "", spark_type)
    return spark_type in accepted or base in accepted


def read_view_document(body: Any) -> tuple[v1alpha1.FeatureView, dict[str, Any]]:
    """A FeatureView from a parsed YAML document: a plain FeatureView, or the operator's
    snapshot (the view plus ``resolved``: version, onlineTable, offlineUri), which is
    returned beside it (empty for a plain view)."""
    if not isinstance(body, Mapping) or body.get("kind") != "FeatureView":
        kind = body.get("kind") if isinstance(body, Mapping) else type(body).__name__
        raise PlanError(f"expected a FeatureView document, found {kind}")
    view_body = {k: v for k, v in body.items() if k != "resolved"}
    resolved = body.get("resolved") or {}
    if not isinstance(resolved, Mapping):
        raise PlanError("the snapshot's resolved section must be a mapping")
    try:
        view = v1alpha1.FeatureView.model_validate(view_body)
    except pydantic.ValidationError as exc:
        name = (body.get("metadata") or {}).get("name", "?")
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise PlanError(f"FeatureView {name} is not valid: {problems}") from exc
    return view, dict(resolved)
