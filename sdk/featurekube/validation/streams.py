"""Checks of a FeatureView's stream source that need more than its schema; pure.

The events' declared fields are the columns the view's transformation (or, without
one, the view itself) reads from the stream, as it reads the batch source's columns:
the event time must be one of them, typed timestamp, and so must the created time the
batch source names; without a transformation every join key and feature must be one
of them, of a type that converts to the declared one. The stream job runs the same
checks before it reads a record (:mod:`featurekube.materialize.stream_job`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from featurekube.spec import v1alpha1
from featurekube.validation import problems, schema

__all__ = ["check_stream_fields", "check_streams"]

_CONVERTS = {
    "int64": ("int64",),
    "float64": ("float64", "int64"),
    "string": ("string",),
    "bool": ("bool",),
    "timestamp": ("timestamp",),
    "float64_array": ("float64_array",),
}
"""A declared column type -> the event field types that convert to it losslessly."""

FIELDS_PATH = ("spec", "source", "stream", "kafka", "fields")


def check_stream_fields(spec: v1alpha1.FeatureViewSpec) -> list[str]:
    """What is wrong with the stream's fields for ``spec``, one message each; none: fine.

    >>> import featurekube.spec.v1alpha1 as v
    >>> spec = v.FeatureViewSpec.model_validate({"owner": "o",
    ...     "entities": [{"name": "driver_id", "type": "int64"}],
    ...     "source": {"batch": {"path": "s3://bucket/x/"}, "stream": {"kafka": {
    ...         "topic": "trips", "fields": [{"name": "driver_id", "type": "string"},
    ...                                      {"name": "event_timestamp", "type": "timestamp"}]}}},
    ...     "features": [{"name": "fare", "type": "float64"}]})
    >>> for message in check_stream_fields(spec): print(message)
    field driver_id is string, but the join key driver_id is int64: declare it int64
    the feature fare is not among the fields: add it, or compute it in spec.transformation
    """
    stream, batch = spec.source.stream, spec.source.batch
    if stream is None or batch is None:
        return []
    try:
        fields = {f.name: f.type for f in stream.kafka.value_fields()}
    except ValueError as exc:  # an unreadable Avro schema is reported by the schema check
        return [f"avroSchema: {exc}"]
    found = []
    timed = [("the event time", batch.timestamp_field)]
    if batch.created_timestamp_field:
        timed.append(("the created time", batch.created_timestamp_field))
    for role, name in timed:
        if name not in fields:
            found.append(f"{role} field {name} is not among the fields: add it, typed timestamp")
        elif fields[name] != "timestamp":
            found.append(f"{role} field {name} is {fields[name]}: declare it timestamp")
    found += _aggregation_problems(spec, fields)
    if spec.transformation is not None:
        return found
    wanted: list[tuple[str, str, str]] = [
        (f"join key {e.name}", e.name, e.type) for e in spec.entities
    ]
    wanted += [(f"feature {f.name}", f.name, f.type) for f in spec.features or ()]
    for role, name, type_ in wanted:
        if name not in fields:
            found.append(
                f"the {role} is not among the fields: add it, or compute it in spec.transformation"
            )
        elif fields[name] not in _CONVERTS[type_]:
            found.append(
                f"field {name} is {fields[name]}, but the {role} is {type_}: declare it {type_}"
            )
    return found


_UNTILED = {
    "float64_array": ("count",),
    "timestamp": ("count", "count_distinct", "min", "max", "last"),
}
"""Field types the stream keeps in its partial aggregates for some functions only."""


def _aggregation_problems(spec: v1alpha1.FeatureViewSpec, fields: Mapping[str, str]) -> list[str]:
    """A streaming aggregation keeps per-interval partial aggregates (tiles): a column
    they cannot keep (an array under anything but count, a sum, mean or stddev of
    times) is refused. Without a transformation the column must be a field."""
    found = []
    for index, aggregation in enumerate(spec.aggregations or ()):
        at = f"spec.aggregations[{index}] ({aggregation.name})"
        type_ = fields.get(aggregation.column)
        if type_ is None:
            if spec.transformation is None:
                found.append(
                    f"{at}: the column {aggregation.column} is not among the fields: add it, or "
                    "compute it in spec.transformation"
                )
            continue
        allowed = _UNTILED.get(type_)
        if allowed is not None and aggregation.function not in allowed:
            found.append(
                f"{at}: a stream cannot keep {aggregation.function} of the {type_} column "
                f"{aggregation.column} in its partial aggregates; use "
                f"{' or '.join(allowed)}, or compute it from source.batch alone"
            )
    return found


def check_streams(objects: Iterable[schema.Parsed]) -> list[problems.Problem]:
    """The problems of every FeatureView's stream source."""
    found = []
    for parsed in objects:
        resource = parsed.resource
        if not isinstance(resource, v1alpha1.FeatureView) or resource.spec.source.stream is None:
            continue
        for message in check_stream_fields(resource.spec):
            found.append(problems.Problem.at(parsed.document, FIELDS_PATH, message))
    return found
