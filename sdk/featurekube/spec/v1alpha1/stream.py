"""Stream sources: where a streaming FeatureView's events arrive as they happen; pure.

A view's ``spec.source.stream.kafka`` names a Kafka topic whose record values are
events (JSON objects, or Avro records of a given schema). The operator runs one
long-running Spark Structured Streaming job per view version over it; the view's
``spec.source.batch`` beside it holds the same events' history, from which batch
windows compute everything before the stream's start (docs/semantics.md, "Streams").

An Avro schema is read here without an Avro library: only what featurekube needs of it
(a record's field names and types) is taken, and a schema outside that subset is
refused with a message naming the field.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import Field, field_validator

from featurekube.spec.v1alpha1 import durations
from featurekube.spec.v1alpha1._base import Duration, FeatureName, Rule, SpecModel, list_map
from featurekube.spec.v1alpha1.common import ValueType

__all__ = [
    "ALLOWED_LATENESS_MAX_SECONDS",
    "AVRO_SCHEMA_MAX_LENGTH",
    "KafkaSource",
    "StreamField",
    "StreamSource",
    "StreamStatus",
    "avro_fields",
]

AVRO_SCHEMA_MAX_LENGTH = 65536
"""The longest Avro schema a view may carry, in characters."""

ALLOWED_LATENESS_MAX_SECONDS = 7 * 86400
"""The longest ``allowedLateness`` a stream may declare: 7 days."""

SourceColumn = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]
"""A field of an event: letters, digits and underscores, not starting with a digit."""

BootstrapServers = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?:[0-9]{1,5}"
        r"(,[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?:[0-9]{1,5})*$",
        max_length=1024,
    ),
]
"""``host:port[,host:port...]``."""

Topic = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$", min_length=1, max_length=249)]
"""A Kafka topic name: letters, digits, '.', '_' and '-', at most 249 characters."""


class StreamField(SpecModel):
    """One field of an event's value, and the type it must have."""

    name: SourceColumn
    """The field's name in the record's value (and the column the transformation reads)."""
    type: ValueType
    """Its type. A timestamp is an ISO 8601 string in JSON (``2026-01-01T08:00:00Z``,
    naive means UTC), a ``timestamp-micros`` or ``timestamp-millis`` long in Avro. A
    value that does not convert (a string where int64 is declared) sends the record to
    the dead letters."""


_AVRO_TYPES: Mapping[str, str] = {
    "long": "int64",
    "int": "int64",
    "double": "float64",
    "float": "float64",
    "string": "string",
    "boolean": "bool",
}


def _avro_value_type(name: str, declared: Any) -> str:
    """The value type of an Avro field's type; ValueError naming the field otherwise."""
    if isinstance(declared, list):
        members = [m for m in declared if m != "null"]
        if len(members) != 1 or len(declared) > 2:
            raise ValueError(
                f"field {name!r}: a union may only make one type nullable "
                f'(["null", "long"]), found {json.dumps(declared)}'
            )
        return _avro_value_type(name, members[0])
    if isinstance(declared, dict):
        logical = declared.get("logicalType")
        if logical in ("timestamp-micros", "timestamp-millis") and declared.get("type") == "long":
            return "timestamp"
        if declared.get("type") == "array" and declared.get("items") in ("double", "float"):
            return "float64_array"
        if logical is None and isinstance(declared.get("type"), str):
            return _avro_value_type(name, declared["type"])
    elif isinstance(declared, str) and declared in _AVRO_TYPES:
        return _AVRO_TYPES[declared]
    raise ValueError(
        f"field {name!r}: type {json.dumps(declared)} is not one featurekube reads; use long, "
        "int, double, float, string, boolean, a long with logicalType timestamp-micros or "
        'timestamp-millis, an array of double, or a union with "null"'
    )


def avro_fields(schema: str) -> list[StreamField]:
    """The fields of an Avro record schema (JSON text), as :class:`StreamField`\\ s.

    Raises ValueError with a message naming what is wrong.

    >>> [f.type for f in avro_fields('{"type": "record", "name": "Trip", "fields": ['
    ...     '{"name": "driver_id", "type": "long"},'
    ...     '{"name": "fare", "type": ["null", "double"]},'
    ...     '{"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}}]}')]
    ['int64', 'float64', 'timestamp']
    """
    try:
        parsed = json.loads(schema)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise ValueError('must be an Avro record schema: {"type": "record", "fields": [...]}')
    fields = parsed.get("fields")
    if not isinstance(fields, list) or not fields or len(fields) > 256:
        raise ValueError("a record schema needs between 1 and 256 fields")
    out = []
    for index, field in enumerate(fields):
        if not isinstance(field, dict) or not isinstance(field.get("name"), str):
            raise ValueError(f"fields[{index}] has no name")
        name = field["name"]
        value_type = _avro_value_type(name, field.get("type"))
        try:
            out.append(StreamField.model_validate({"name": name, "type": value_type}))
        except pydantic.ValidationError:
            raise ValueError(
                f"field {name!r}: a field name is letters, digits and underscores, not "
                "starting with a digit, at most 128 characters"
            ) from None
    return out


class KafkaSource(SpecModel):
    """A Kafka topic whose record values are the view's events."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.format != 'json' || (has(self.fields) && !has(self.avroSchema))",
            message="a json stream declares its events' fields and types in fields "
            "(and has no avroSchema)",
            check=lambda k: k.format != "json" or (bool(k.fields) and k.avro_schema is None),
            field_path=".fields",
        ),
        Rule(
            cel="self.format != 'avro' || (has(self.avroSchema) && !has(self.fields))",
            message="an avro stream needs avroSchema, its records' schema; its fields come "
            "from it (remove fields)",
            check=lambda k: k.format != "avro" or (k.avro_schema is not None and not k.fields),
            field_path=".avroSchema",
        ),
        Rule(
            cel=f"{durations.cel_seconds('self.allowedLateness')} <= "
            f"{ALLOWED_LATENESS_MAX_SECONDS}",
            message="allowedLateness is at most 7d: a streaming aggregation rewrites the "
            "values an event changes, and the lateness bounds how far back that reaches",
            check=lambda k: (
                durations.parse_duration(k.allowed_lateness).total_seconds()
                <= ALLOWED_LATENESS_MAX_SECONDS
            ),
            field_path=".allowedLateness",
        ),
    )

    bootstrap_servers: BootstrapServers | None = None
    """The brokers, ``host:port[,host:port...]``. Unset: the ones the operator is
    configured with (the chart's ``kafka.bootstrapServers``, with its TLS and SASL
    settings)."""
    topic: Topic
    """The topic to read, every partition of it."""
    format: Literal["json", "avro"] = "json"
    """How each record's value is encoded: a JSON object, or an Avro record (binary,
    without a schema registry's header) of ``avroSchema``."""
    fields: list[StreamField] | None = Field(
        None, min_length=1, max_length=256, json_schema_extra=list_map("name")
    )
    """json: the fields of each event and their types (the columns the view's
    transformation reads, as it reads the batch source's). Fields an event has beyond
    these are ignored; a declared field it lacks is null."""
    avro_schema: Annotated[str, Field(min_length=2, max_length=AVRO_SCHEMA_MAX_LENGTH)] | None = (
        None
    )
    """avro: the records' schema (JSON text), a record of long, int, double, float,
    string, boolean, timestamp-micros/millis, array-of-double fields, each optionally
    nullable."""
    timestamp_field: FeatureName = "event_timestamp"
    """The field holding each event's time; the same name as the batch source's
    timestampField, since one transformation reads both."""
    starting_offsets: Literal["earliest", "latest"] = "earliest"
    """Where a new version's stream starts in the topic: its earliest records, or only
    those that arrive after it starts. A restarted stream goes on from its checkpoint."""
    max_offsets_per_trigger: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    """At most this many records per micro-batch (unset: all that are there)."""
    trigger_interval: Duration = "1s"
    """How often a micro-batch starts when records are waiting, e.g. 1s, 10s."""
    allowed_lateness: Duration = "10m"
    """Aggregations: how far an event's time may lie behind the stream's watermark (the
    greatest event time it has applied) and still be applied; a later event is
    dead-lettered with reason ``late`` and counted. At most 7d. Plain features take
    every event whenever it arrives."""

    @field_validator("avro_schema")
    @classmethod
    def _readable_schema(cls, value: str | None) -> str | None:
        if value is not None:
            avro_fields(value)
        return value

    def value_fields(self) -> list[StreamField]:
        """The events' fields: ``fields``, or those of ``avroSchema``."""
        if self.avro_schema is not None:
            return avro_fields(self.avro_schema)
        return list(self.fields or ())


class StreamSource(SpecModel):
    """Events arriving as they happen; today from Kafka."""

    kafka: KafkaSource
    """A Kafka topic."""


class StreamStatus(SpecModel):
    """One version's stream as the operator last saw it."""

    version: Annotated[int, Field(ge=1)]
    """The data version the stream writes."""
    since: dt.datetime
    """The stream's start: it writes the events from here on; batch windows those before."""
    application: Annotated[str, Field(max_length=253)]
    """The SparkApplication running it."""
    state: Annotated[str, Field(max_length=32)]
    """Running, WaitingForHistory, Starting, Restarting or Failed."""
    consumer_lag: Annotated[int, Field(ge=0)] | None = None
    """Records in the topic not yet read, at the stream's last report."""
    last_event_time: dt.datetime | None = None
    """The greatest event time the stream has written."""
    latency_seconds: float | None = None
    """Record appended to Kafka -> its value online, median of the last micro-batch."""
    dead_letters: Annotated[int, Field(ge=0)] | None = None
    """Records dead-lettered since the stream's current run started."""
    late_events: Annotated[int, Field(ge=0)] | None = None
    """Aggregations: events dead-lettered as later than allowedLateness behind the
    stream's watermark since its current run started (among deadLetters)."""
    reported_at: dt.datetime | None = None
    """When the stream last reported."""
