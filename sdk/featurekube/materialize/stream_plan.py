"""What running a view version's stream means, as plain data; pure (no I/O, no pyspark).

:func:`plan_stream` turns a FeatureView with ``spec.source.stream`` and the instant
``since`` into a :class:`StreamPlan`: the Kafka source's options, the events' fields
and their Spark types, where the checkpoint, the dead letters and the progress live,
and the batch plan whose columns and types the stream's rows must have (the same
transformation reads both paths, so the same checks apply).

Which events the stream owns
----------------------------
The stream writes the events with event time ``E >= since``; batch windows compute
everything before ``since`` from the batch source (docs/semantics.md, "Streams"). The
split is by event time, not by arrival, so no event is written by both paths and no
event of either is lost: an event with ``E < since`` that arrives on the stream is
counted (``before_start``) and left to the batch windows.

For an aggregation view the split is at a boundary: batch windows own the boundaries
before ``since`` and the stream the later ones, and with them the events after the
last boundary before ``since`` (:mod:`featurekube.materialize.stream_windows`).

Dead letters
------------
A record whose value is not a JSON object (or not an Avro record of the schema), has a
field of the wrong type, or lacks its event time or (without a transformation) a join
key, is written with the reason to the version's dead-letter table
(:func:`dead_letter_uri`) and counted; the stream goes on. So is, for an aggregation
view, an event more than ``allowedLateness`` behind the stream's watermark (``late``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from featurekube import s3_prefixes
from featurekube.materialize import plan as planning
from featurekube.materialize.errors import PlanError
from featurekube.offline import layout as offline_layout
from featurekube.spec import v1alpha1
from featurekube.validation import streams as stream_checks

__all__ = [
    "KAFKA_ENV",
    "DeadLetterReason",
    "StreamPlan",
    "StreamProgress",
    "checkpoint_uri",
    "consumer_lag",
    "dead_letter_uri",
    "kafka_client_options",
    "latency_quantiles",
    "plan_stream",
    "progress_uri",
    "read_progress",
    "render_progress",
    "value_ddl",
]

PROGRESS_MAX_BYTES = 64 * 1024
"""The largest progress document read back; bounds what a reader trusts."""

KAFKA_ENV = {
    "protocol": "FEATUREKUBE_KAFKA_SECURITY_PROTOCOL",
    "mechanism": "FEATUREKUBE_KAFKA_SASL_MECHANISM",
    "username": "FEATUREKUBE_KAFKA_SASL_USERNAME",
    "password": "FEATUREKUBE_KAFKA_SASL_PASSWORD",
    "ca_file": "FEATUREKUBE_KAFKA_TLS_CA_FILE",
}
"""The environment through which a stream job gets its Kafka security settings."""

_SPARK_VALUE_TYPES = {**v1alpha1.SPARK_SQL_TYPES}


def checkpoint_uri(offline_uri: str) -> str:
    """The stream's checkpoint: ``<offline uri>/_stream/checkpoint`` (Spark spells S3 s3a).

    >>> checkpoint_uri("s3://lake/offline/rides/trips/v2")
    's3a://lake/offline/rides/trips/v2/_stream/checkpoint'
    """
    uri = f"{offline_layout.stream_uri(s3_prefixes.normalize(offline_uri))}/checkpoint"
    return "s3a://" + uri.removeprefix("s3://") if uri.startswith("s3://") else uri


def progress_uri(offline_uri: str) -> str:
    """Where the stream writes its progress after each micro-batch (JSON)."""
    return f"{offline_layout.stream_uri(s3_prefixes.normalize(offline_uri))}/progress.json"


def dead_letter_uri(offline_uri: str) -> str:
    """The version's dead-letter Delta table.

    >>> dead_letter_uri("s3://lake/offline/rides/trips/v2")
    's3://lake/offline/rides/trips/v2/_dead_letters'
    """
    return offline_layout.dead_letters_uri(s3_prefixes.normalize(offline_uri))


def value_ddl(fields: Sequence[v1alpha1.StreamField], as_text: bool = False) -> str:
    """The Spark DDL of the events' fields (``as_text``: every field a string, to tell
    a value of the wrong type from one that is absent).

    >>> value_ddl([v1alpha1.StreamField(name="fare", type="float64")])
    '`fare` double'
    """
    return ", ".join(
        f"`{f.name}` {'string' if as_text else _SPARK_VALUE_TYPES[f.type]}" for f in fields
    )


def kafka_client_options(env: Mapping[str, str]) -> dict[str, str]:
    """The Kafka source's security options (``kafka.``-prefixed) from ``env``
    (:data:`KAFKA_ENV`); none for plain text.

    >>> kafka_client_options({"FEATUREKUBE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    ...     "FEATUREKUBE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    ...     "FEATUREKUBE_KAFKA_SASL_USERNAME": "u", "FEATUREKUBE_KAFKA_SASL_PASSWORD": 'p"q'})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'kafka.security.protocol': 'SASL_SSL', 'kafka.sasl.mechanism': 'SCRAM-SHA-512',
     'kafka.sasl.jaas.config': 'org.apache.kafka.common.security.scram.ScramLoginModule
     required username="u" password="p\\\\"q";'}
    """
    protocol = env.get(KAFKA_ENV["protocol"], "PLAINTEXT") or "PLAINTEXT"
    if protocol == "PLAINTEXT":
        return {}
    options = {"kafka.security.protocol": protocol}
    if protocol.startswith("SASL_"):
        mechanism = env.get(KAFKA_ENV["mechanism"], "")
        if not mechanism:
            raise PlanError(f"{KAFKA_ENV['mechanism']} is needed with {protocol}")
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )

        def quoted(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

        username = env.get(KAFKA_ENV["username"], "")
        password = env.get(KAFKA_ENV["password"], "")
        options["kafka.sasl.mechanism"] = mechanism
        options["kafka.sasl.jaas.config"] = (
            f"{module} required username={quoted(username)} password={quoted(password)};"
        )
    ca_file = env.get(KAFKA_ENV["ca_file"], "")
    if protocol.endswith("SSL") and ca_file:
        options["kafka.ssl.truststore.type"] = "PEM"
        options["kafka.ssl.truststore.location"] = ca_file
    return options


@dataclass(frozen=True)
class StreamPlan:
    """Everything the stream job needs to know about one view version's stream."""

    label: str
    """``FeatureView namespace/name``, for messages."""
    query_name: str
    """The streaming query's name, unique per view version."""
    since: dt.datetime
    """The stream writes events with event time >= since; batch windows the others."""
    fields: tuple[v1alpha1.StreamField, ...]
    """The events' fields, in declared order."""
    format: str
    """json or avro."""
    avro_schema: str | None
    kafka_options: dict[str, str]
    """Options of Spark's Kafka source (subscribe, startingOffsets, ...)."""
    trigger_seconds: int
    """How often a micro-batch starts."""
    allowed_lateness: dt.timedelta
    """Aggregations: how far behind the watermark an event may be and still count."""
    batch: planning.MaterializationPlan
    """The batch plan of the view: columns, types, keys and features both paths share."""
    history_start: dt.datetime | None = None
    """Aggregations: where the version's batch windows start (its first window), which
    says whether they store the intervals before the split the stream's windows read;
    None: ``materialization.startTime``, else ``since``."""

    @property
    def key_fields(self) -> tuple[str, ...]:
        """Join keys read straight from the events (no transformation), which a record
        must have."""
        if self.batch.transformation is not None:
            return ()
        return tuple(name for name, _ in self.batch.keys)


def plan_stream(
    view: v1alpha1.FeatureView,
    since: dt.datetime,
    *,
    bootstrap_servers: str = "",
    client_options: Mapping[str, str] | None = None,
    version: int | None = None,
    history_start: dt.datetime | None = None,
) -> StreamPlan:
    """The plan of ``view``'s stream from ``since``; raises
    :class:`~featurekube.materialize.errors.PlanError` when it has no stream source,
    no brokers are known, or its fields do not fit the view."""
    spec = view.spec
    label = f"FeatureView {view.metadata.namespace or 'default'}/{view.metadata.name}"
    stream = spec.source.stream
    if stream is None:
        raise PlanError(f"{label}: spec.source has no stream; there is nothing to stream")
    kafka = stream.kafka
    servers = kafka.bootstrap_servers or bootstrap_servers
    if not servers:
        raise PlanError(
            f"{label}: spec.source.stream.kafka.bootstrapServers is unset and no default "
            "brokers are configured (the operator's FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS, "
            "or --bootstrap-servers)"
        )
    problems = stream_checks.check_stream_fields(spec)
    if problems:
        raise PlanError(
            f"{label}: spec.source.stream.kafka.fields do not fit the view:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    since = planning.utc(since)
    # A batch plan over any window: the stream shares its columns, keys and features.
    batch = planning.plan_materialization(view, since, since + dt.timedelta(seconds=1))
    options = {
        "kafka.bootstrap.servers": servers,
        "subscribe": kafka.topic,
        "startingOffsets": kafka.starting_offsets,
        # A topic's records deleted by retention before they were read are a loss the
        # stream must not pass over silently.
        "failOnDataLoss": "true",
        **dict(client_options or {}),
    }
    if kafka.max_offsets_per_trigger is not None:
        options["maxOffsetsPerTrigger"] = str(kafka.max_offsets_per_trigger)
    suffix = f"-v{version}" if version is not None else ""
    return StreamPlan(
        label=label,
        query_name=f"featurekube-{view.metadata.namespace or 'default'}-{view.metadata.name}"
        f"{suffix}",
        since=since,
        fields=tuple(kafka.value_fields()),
        format=kafka.format,
        avro_schema=kafka.avro_schema,
        kafka_options=options,
        trigger_seconds=int(v1alpha1.parse_duration(kafka.trigger_interval).total_seconds()),
        allowed_lateness=v1alpha1.parse_duration(kafka.allowed_lateness),
        batch=batch,
        history_start=planning.utc(history_start) if history_start is not None else None,
    )


class DeadLetterReason:
    """The reasons a record is dead-lettered, as the table's ``reason`` column starts."""

    EMPTY = "empty value"
    NOT_JSON = "not a JSON object"
    NOT_AVRO = "not an Avro record of the schema"
    WRONG_TYPE = "wrong type"
    NO_EVENT_TIME = "no event time"
    NO_KEY = "no join key"
    LATE = "late"
    FUTURE = "in the future"


MAX_FUTURE_SKEW = dt.timedelta(minutes=5)
"""How far after the moment it is read an event time may lie: clocks of producers
drift, but an event stamped further ahead would be served before its time and, in a
streaming aggregation, would push the watermark so far that every later event is late."""


@dataclass
class StreamProgress:
    """What a stream reports after each micro-batch, read by the operator."""

    batch_id: int = -1
    """The last micro-batch written."""
    updated_at: str = ""
    """When this was written (ISO 8601, UTC)."""
    started_at: str = ""
    """When this run of the job started."""
    since: str = ""
    """The stream's start: events before it come from batch windows."""
    records: int = 0
    """Records read since this run started."""
    rows: int = 0
    """Rows written offline since this run started."""
    dead_letters: int = 0
    """Records dead-lettered since this run started."""
    before_start: int = 0
    """Events before ``since`` seen on the stream and left to batch windows."""
    unkeyed: int = 0
    """Rows the transformation left without a join key or an event time, not written."""
    late: int = 0
    """Aggregations: events more than ``allowedLateness`` behind the watermark,
    dead-lettered (and counted in ``dead_letters`` too) since this run started."""
    watermark: str | None = None
    """Aggregations: the greatest event time applied, which lateness is measured from."""
    waiting_for_history: bool = False
    """Aggregations: the job waits, before it reads the topic, for the batch windows to
    store the intervals before the split that the stream's windows read."""
    history_missing: int = 0
    """Aggregations, while waiting: how many of those intervals are not stored yet."""
    history_missing_from: str | None = None
    """... the start of the earliest of them (ISO 8601, UTC)."""
    history_missing_until: str | None = None
    """... and the end of the latest."""
    last_event_time: str | None = None
    """The greatest event time written so far."""
    latency_p50_seconds: float | None = None
    """Of the last micro-batch: record appended to Kafka -> its value online, median."""
    latency_max_seconds: float | None = None
    """... and the longest."""
    consumer_lag: int | None = None
    """Records in the topic not yet read (summed over partitions), at the last poll."""
    first_online_at: str | None = None
    """When this run first wrote a value online."""


def render_progress(progress: StreamProgress) -> bytes:
    """The progress document."""
    return json.dumps(asdict(progress), sort_keys=True).encode()


def read_progress(document: bytes) -> StreamProgress:
    """A progress document read back; fields it lacks keep their defaults, unknown
    ones are ignored. Raises ValueError for one that is not a JSON object or too long."""
    if len(document) > PROGRESS_MAX_BYTES:
        raise ValueError(f"a stream progress document is at most {PROGRESS_MAX_BYTES} bytes")
    parsed: Any = json.loads(document)
    if not isinstance(parsed, dict):
        raise ValueError("a stream progress document is a JSON object")
    known = StreamProgress.__dataclass_fields__
    return StreamProgress(**{k: v for k, v in parsed.items() if k in known})


def latency_quantiles(
    written_at: dt.datetime, appended_micros: Sequence[int]
) -> tuple[float | None, float | None]:
    """Median and longest time from each record's Kafka timestamp to ``written_at``.

    >>> at = dt.datetime(2026, 1, 1, 0, 0, 10, tzinfo=dt.UTC)
    >>> latency_quantiles(at, [planning.to_micros(at) - s * 1_000_000 for s in (1, 2, 9)])
    (2.0, 9.0)
    """
    if not appended_micros:
        return None, None
    done = planning.to_micros(written_at)
    ordered = sorted(appended_micros)
    median = ordered[(len(ordered) - 1) // 2]
    return (done - median) / 1e6, (done - ordered[0]) / 1e6


def consumer_lag(progress: Mapping[str, Any] | None) -> int | None:
    """Records in the topic not yet read, from a streaming query's last progress
    (Spark's ``lastProgress``): the latest offsets minus those read, summed over
    partitions. None before the first progress.

    >>> consumer_lag({"sources": [{"endOffset": {"t": {"0": 5, "1": 7}},
    ...                            "latestOffset": {"t": {"0": 9, "1": 7}}}]})
    4
    """
    if not progress:
        return None
    lag = 0
    for source in progress.get("sources") or ():
        read, latest = _offsets(source.get("endOffset")), _offsets(source.get("latestOffset"))
        if latest is None:
            return None
        for key, offset in latest.items():
            lag += max(0, offset - (read or {}).get(key, 0))
    return lag


def _offsets(value: Any) -> dict[tuple[str, str], int] | None:
    """``{"topic": {"0": n}}`` (or its JSON text) -> ``{(topic, partition): n}``."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if not isinstance(value, Mapping):
        return None
    return {
        (str(topic), str(partition)): int(offset)
        for topic, partitions in value.items()
        if isinstance(partitions, Mapping)
        for partition, offset in partitions.items()
    }
