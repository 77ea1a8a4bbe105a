"""The FeatureView resource: what one set of features is; pure.

A FeatureView names its entities (join keys), where its raw rows come from, an
optional Spark SQL transformation, and either plain typed features or time-window
aggregations; then how long values stay valid (TTL), how it is materialized, and the
checks its values must pass.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from featurekube.spec.v1alpha1 import durations
from featurekube.spec.v1alpha1._base import (
    Cron,
    Duration,
    FeatureName,
    Rule,
    SpecModel,
    has_items,
    list_map,
    reserved_name_rule,
)
from featurekube.spec.v1alpha1.common import (
    Condition,
    ObjectMeta,
    ValueType,
)
from featurekube.spec.v1alpha1.monitoring import (
    ExpectationResult,
    FeatureDrift,
    FreshnessStatus,
    ViewMonitoring,
)
from featurekube.spec.v1alpha1.stream import KafkaSource, StreamField, StreamSource, StreamStatus

__all__ = [
    "AGGREGATION_FUNCTIONS",
    "STREAM_WINDOW_MAX_SECONDS",
    "Aggregation",
    "BackfillRange",
    "BatchSource",
    "Entity",
    "Expectation",
    "Feature",
    "FeatureView",
    "FeatureViewSpec",
    "FeatureViewStatus",
    "KafkaSource",
    "Materialization",
    "PushSource",
    "RetiredVersion",
    "RowCounts",
    "Source",
    "StreamField",
    "StreamSource",
    "StreamStatus",
    "Transformation",
    "VersionProgress",
    "Window",
    "WindowProgress",
]

_secs = durations.cel_seconds

STREAM_WINDOW_MAX_SECONDS = 30 * 86400
"""The longest aggregation window of a view with a stream source: 30 days."""

NamespaceOrAll = Annotated[
    str, Field(pattern=r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$", max_length=63)
]
"""A namespace name, or '*' for every namespace."""


def _seconds(text: str) -> int:
    return int(durations.parse_duration(text).total_seconds())


class Entity(SpecModel):
    """A join key. Every view of one entity must give its key the same name and type."""

    rules: ClassVar[tuple[Rule, ...]] = (reserved_name_rule("join key"),)

    name: FeatureName
    """The key's column name, e.g. driver_id."""
    type: Literal["int64", "string"]
    """The key's type: int64 or string. The two never collide in the online store."""
    description: Annotated[str, Field(max_length=1024)] | None = None
    """What the entity is."""


class BatchSource(SpecModel):
    """Raw rows in files on S3, read by each materialization window."""

    path: Annotated[
        str, Field(pattern=r"^s3a?://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", max_length=1024)
    ]
    """Where the rows are: s3://bucket/prefix/ (a directory of parquet files, or a Delta table)."""
    format: Literal["parquet", "delta"] = "parquet"
    """How the rows are stored."""
    timestamp_field: FeatureName = "event_timestamp"
    """The column with each row's event time (UTC; a naive timestamp is taken as UTC)."""
    created_timestamp_field: FeatureName | None = None
    """A column that orders rows with equal event times (the later created wins). Unset:
    the time the row was written decides. Rows equal in keys, event time and created
    time are a full tie: the row with the greatest feature values wins (compared in the
    order the features are declared, a null lowest), offline and online alike."""


class PushSource(SpecModel):
    """Rows pushed by producers through the feature server's Push RPC (streaming)."""

    timestamp_field: FeatureName = "event_timestamp"
    """The field of each pushed row that holds its event time."""


class Source(SpecModel):
    """Where a view's raw rows come from: exactly one of batch or push, and optionally a
    stream beside batch."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.batch) != has(self.push)",
            message="set exactly one of source.batch (files on S3) or source.push (rows pushed "
            "through the feature server)",
            check=lambda s: (s.batch is None) != (s.push is None),
        ),
        Rule(
            cel="!has(self.stream) || has(self.batch)",
            message="a stream source needs source.batch beside it: the same events' history, "
            "from which batch windows compute everything before the stream starts",
            check=lambda s: s.stream is None or s.batch is not None,
            field_path=".stream",
        ),
        Rule(
            cel="!has(self.stream) || !has(self.batch) || "
            "self.stream.kafka.timestampField == self.batch.timestampField",
            message="source.stream.kafka.timestampField must be source.batch.timestampField: "
            "one transformation reads both, so the event time has one name",
            check=lambda s: (
                s.stream is None
                or s.batch is None
                or s.stream.kafka.timestamp_field == s.batch.timestamp_field
            ),
            field_path=".stream.kafka.timestampField",
        ),
    )

    batch: BatchSource | None = None
    """Files on S3."""
    push: PushSource | None = None
    """Rows pushed through the feature server's Push RPC."""
    stream: StreamSource | None = None
    """Events as they arrive (Kafka), beside batch: batch windows compute the history
    before the stream's start, a long-running stream job everything after it."""


class Transformation(SpecModel):
    """Spark SQL run over the source's rows before features are taken from them."""

    sql: Annotated[str, Field(min_length=1, max_length=20000)]
    """A SELECT reading FROM source; it must keep the join keys and the timestamp column."""


class Feature(SpecModel):
    """A plain feature: a typed column of the (transformed) source.

    At time T an entity gets the value of its row with the greatest event time E <= T
    (then the greatest created time), nulls included: a null in that row is the value,
    not a reason to look further back.
    """

    rules: ClassVar[tuple[Rule, ...]] = (reserved_name_rule("feature"),)

    name: FeatureName
    """The feature's name, and the source column it is read from."""
    type: ValueType
    """Its values' type."""
    description: Annotated[str, Field(max_length=1024)] | None = None
    """What it means, for people browsing features."""


AGGREGATION_FUNCTIONS = ("count", "count_distinct", "sum", "mean", "min", "max", "last", "stddev")
_TYPED_BY_COLUMN = ("sum", "min", "max", "last")


class Aggregation(SpecModel):
    """A feature that aggregates a column over a sliding time window.

    Its value at step boundary t aggregates the events with t - window < E <= t, every
    event counting, two with the same event time included; at time T an entity gets
    the value at the latest boundary t <= T. Events that arrive late count at their
    event time once the window holding them is materialized again. An entity is known
    from its first event on (and, with a ttl, while its latest event is at most ttl
    old); unknown, every aggregate is null; known with an empty window, count and
    count_distinct are 0 and the others null.
    """

    rules: ClassVar[tuple[Rule, ...]] = (
        reserved_name_rule("feature"),
        Rule(
            cel="!(self.function in ['sum', 'min', 'max', 'last']) || has(self.type)",
            message="set type for a sum, min, max or last aggregation: it is the type of the "
            "column aggregated, e.g. int64 or float64",
            check=lambda a: a.function not in _TYPED_BY_COLUMN or a.type is not None,
            field_path=".type",
        ),
        Rule(
            cel="!has(self.type) || !(self.function in ['count', 'count_distinct']) "
            "|| self.type == 'int64'",
            message="a count or count_distinct aggregation is int64: drop type or set it to int64",
            check=lambda a: (
                a.type is None or a.function not in ("count", "count_distinct") or a.type == "int64"
            ),
            field_path=".type",
        ),
        Rule(
            cel="!has(self.type) || !(self.function in ['mean', 'stddev']) "
            "|| self.type == 'float64'",
            message="a mean or stddev aggregation is float64: drop type or set it to float64",
            check=lambda a: (
                a.type is None or a.function not in ("mean", "stddev") or a.type == "float64"
            ),
            field_path=".type",
        ),
    )

    name: FeatureName
    """The feature's name, e.g. trips_7d."""
    column: FeatureName
    """The source column aggregated."""
    function: Literal["count", "count_distinct", "sum", "mean", "min", "max", "last", "stddev"]
    """How the window's values are combined; nulls in the column are skipped by all.
    count: the events whose column is not null. count_distinct: their distinct values.
    sum, min, max: null when there are none; over an int64 column exact int64, whatever
    else is computed over the column. mean: float64. stddev: the sample standard
    deviation (n - 1), float64, null below two values. last: the value of the event
    with the greatest event time, then created time, ignoring nulls; among events equal
    in both, the greatest value."""
    window: Duration
    """How far back the window reaches, e.g. 30m, 1d, 7d: a multiple of aggregationInterval.
    The value at boundary t covers (t - window, t]: an event exactly at t counts from t."""
    type: ValueType | None = None
    """The result's type. count and count_distinct are int64, mean and stddev float64;
    sum, min, max and last take the column's type, which must be given."""
    description: Annotated[str, Field(max_length=1024)] | None = None
    """What it means."""

    @property
    def value_type(self) -> str:
        """The type of this aggregation's values."""
        if self.type is not None:
            return self.type
        return "int64" if self.function in ("count", "count_distinct") else "float64"

    @property
    def formula(self) -> str:
        """How it is computed, for people: e.g. ``sum(fare) over 1d``."""
        return f"{self.function}({self.column}) over {self.window}"


class Materialization(SpecModel):
    """How and when the view's stores are filled."""

    online: bool = True
    """Keep the latest values in the online store (DynamoDB) for serving."""
    offline: bool = True
    """Keep the full history in the offline store (Delta on S3) for training."""
    schedule: Cron = "@hourly"
    """When to materialize the window that just closed; cron, in UTC."""
    start_time: dt.datetime | None = None
    """Backfill from this time (UTC). Unset: start from the first schedule tick."""
    engine: Literal["auto", "spark", "python"] = "auto"
    """What computes each window: python (DuckDB and Arrow in one process, no JVM, for
    windows that fit one machine), spark, or auto: python when the window's input is
    at most the operator's threshold and its transformation uses only SQL both engines
    compute alike, else spark. Both give exactly the same rows."""


class Expectation(SpecModel):
    """Checks on one feature's values, evaluated on every materialized window."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.min) || !has(self.max) || self.min <= self.max",
            message="min must not exceed max",
            check=lambda e: e.min is None or e.max is None or e.min <= e.max,
            field_path=".min",
        ),
        Rule(
            cel="self.notNull || has(self.min) || has(self.max) || has(self.allowedValues)",
            message="an expectation checks nothing: set notNull, min, max or allowedValues",
            check=lambda e: (
                e.not_null or e.min is not None or e.max is not None or e.allowed_values is not None
            ),
        ),
    )

    feature: FeatureName
    """The feature checked."""
    not_null: bool = False
    """Every value is present."""
    min: float | None = None
    """No value is below this."""
    max: float | None = None
    """No value is above this."""
    allowed_values: list[Annotated[str, Field(max_length=256)]] | None = Field(
        None, min_length=1, max_length=256
    )
    """Every value is one of these (compared as text)."""
    on_violation: Literal["Warn", "Fail"] = "Warn"
    """Warn: report and go on. Fail: fail the window, publishing none of its rows."""


class FeatureViewSpec(SpecModel):
    """The desired state of a FeatureView."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.features) != has(self.aggregations)",
            message="set exactly one of spec.features (plain features) or spec.aggregations "
            "(time-window aggregations)",
            check=lambda s: has_items(s.features) != has_items(s.aggregations),
        ),
        Rule(
            cel="!has(self.aggregations) || has(self.aggregationInterval)",
            message="aggregations need spec.aggregationInterval, the step at which their "
            "values are computed, e.g. 10m",
            check=lambda s: not s.aggregations or s.aggregation_interval is not None,
            field_path=".aggregationInterval",
        ),
        Rule(
            cel="!has(self.aggregationInterval) || has(self.aggregations)",
            message="aggregationInterval applies to aggregations only: remove it, or define "
            "spec.aggregations",
            check=lambda s: s.aggregation_interval is None or bool(s.aggregations),
            field_path=".aggregationInterval",
        ),
        Rule(
            cel="!has(self.aggregations) || !has(self.aggregationInterval) || "
            f"self.aggregations.all(a, {_secs('a.window')} % "
            f"{_secs('self.aggregationInterval')} == 0)",
            message="every aggregation window must be a whole multiple of "
            "spec.aggregationInterval (e.g. 30m, 1d and 7d with a 10m interval)",
            check=lambda s: (
                not s.aggregations
                or s.aggregation_interval is None
                or all(
                    _seconds(a.window) % _seconds(s.aggregation_interval) == 0
                    for a in s.aggregations
                )
            ),
            field_path=".aggregations",
        ),
        Rule(
            cel="!has(self.ttl) || !has(self.aggregationInterval) || "
            f"{_secs('self.ttl')} >= {_secs('self.aggregationInterval')}",
            message="spec.ttl must be at least spec.aggregationInterval: values are refreshed "
            "once an interval, so a shorter TTL expires each one before the next arrives",
            check=lambda s: (
                s.ttl is None
                or s.aggregation_interval is None
                or _seconds(s.ttl) >= _seconds(s.aggregation_interval)
            ),
            field_path=".ttl",
        ),
        Rule(
            cel="(!has(self.features) || self.features.all(f, "
            "!self.entities.exists(e, e.name == f.name))) && (!has(self.aggregations) || "
            "self.aggregations.all(a, !self.entities.exists(e, e.name == a.name)))",
            message="a feature must not be named like one of the view's entity keys",
            check=lambda s: not ({e.name for e in s.entities} & set(s.feature_names)),
        ),
        Rule(
            cel="!has(self.expectations) || self.expectations.all(x, "
            "(has(self.features) && self.features.exists(f, f.name == x.feature)) || "
            "(has(self.aggregations) && self.aggregations.exists(a, a.name == x.feature)))",
            message="every expectation must name a feature of this view",
            check=lambda s: all(x.feature in s.feature_names for x in s.expectations or ()),
            field_path=".expectations",
        ),
        Rule(
            cel="!has(self.source.push) || (!has(self.transformation) && !has(self.aggregations))",
            message="a push source takes feature values as pushed: it cannot have a "
            "transformation or aggregations, which need a batch source",
            check=lambda s: (
                s.source.push is None or (s.transformation is None and not s.aggregations)
            ),
            field_path=".source",
        ),
        Rule(
            cel="!has(self.source.stream) || !has(self.aggregations) || "
            f"self.aggregations.all(a, {_secs('a.window')} <= {STREAM_WINDOW_MAX_SECONDS})",
            message="a streaming aggregation's window is at most 30d: the stream keeps its "
            "partial aggregates per interval over that span",
            check=lambda s: (
                s.source.stream is None
                or not s.aggregations
                or all(_seconds(a.window) <= STREAM_WINDOW_MAX_SECONDS for a in s.aggregations)
            ),
            field_path=".aggregations",
        ),
    )

    owner: Annotated[str, Field(min_length=1, max_length=256)]
    """Who to ask about this view: a team or an e-mail address."""
    description: Annotated[str, Field(max_length=4096)] | None = None
    """What the features describe, for people browsing them."""
    tags: dict[str, Annotated[str, Field(max_length=256)]] | None = Field(None, max_length=64)
    """Free-form labels for discovery."""
    entities: list[Entity] = Field(min_length=1, max_length=8, json_schema_extra=list_map("name"))
    """The join keys; several make a composite key."""
    source: Source
    """Where the raw rows come from."""
    transformation: Transformation | None = None
    """Spark SQL over the source, FROM source."""
    features: list[Feature] | None = Field(
        None, min_length=1, max_length=256, json_schema_extra=list_map("name")
    )
    """Plain typed features; or use aggregations."""
    aggregations: list[Aggregation] | None = Field(
        None, min_length=1, max_length=256, json_schema_extra=list_map("name")
    )
    """Time-window aggregations; or use features."""
    aggregation_interval: Duration | None = None
    """The step of aggregations: values are defined at the boundaries t = k * step since
    the epoch (UTC). A materialization window [start, end) computes the boundaries with
    start <= t < end, whether or not start and end are boundaries themselves."""
    ttl: Duration | None = None
    """How old a value may be and still be served (and joined for training); a value
    exactly ttl old still counts. Unset: no limit. Plain features: counted from the
    row's event time. Aggregations: counted from the entity's latest event, not from
    when a value last changed, so a value that stays the same stays valid while events
    keep coming; past it every aggregate is null (online: OUTSIDE_MAX_AGE)."""
    materialization: Materialization = Materialization()
    """How and when the stores are filled."""
    expectations: list[Expectation] | None = Field(
        None, min_length=1, max_length=256, json_schema_extra=list_map("feature")
    )
    """Checks on the features' values, run on each materialized window."""
    monitoring: ViewMonitoring = ViewMonitoring()
    """Freshness objective and drift measurement."""
    shared_with: list[NamespaceOrAll] | None = Field(
        None, max_length=256, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Other namespaces whose FeatureServices may use this view; '*' for all."""
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    """What happens to data no longer used. Delete: on deletion of the view its online
    tables are deleted, and a version that stopped being used (not serving, not the
    latest, pinned by no FeatureService) has its online table and offline Delta data
    deleted once versionRetention has passed. Retain: both are kept."""
    version_retention: Duration | None = None
    """With deletionPolicy Delete, how long a version's data is kept after it stopped
    being used, before it is deleted. Unset: the operator's setting (7d by default)."""

    @property
    def feature_names(self) -> list[str]:
        """The names of the view's features, plain or aggregated, in order."""
        return [f.name for f in self.features or self.aggregations or ()]

    def feature_types(self) -> dict[str, str]:
        """Feature name -> value type."""
        if self.features:
            return {f.name: f.type for f in self.features}
        return {a.name: a.value_type for a in self.aggregations or ()}


class Window(SpecModel):
    """A half-open materialization window [start, end)."""

    start: dt.datetime
    """The window's first instant (included)."""
    end: dt.datetime
    """The instant after the window (excluded)."""


class RowCounts(SpecModel):
    """Rows handled by the last successful window, and what computed it."""

    read: int = 0
    """Source rows read."""
    offline: int = 0
    """Rows written to the offline store."""
    online: int = 0
    """Entities written to the online store."""
    engine: Literal["python", "spark"] | None = None
    """The engine that computed the window (spec.materialization.engine)."""


class WindowProgress(SpecModel):
    """A window started and not yet part of materializedUntil."""

    start: dt.datetime
    """The window's first instant (included)."""
    end: dt.datetime
    """The instant after the window (excluded)."""
    state: Literal["Running", "Succeeded", "Failed"]
    """Running; Succeeded (completed after a window still missing, or a re-run); Failed."""
    attempt: Annotated[int, Field(ge=1)] = 1
    """Which attempt at the window this is (or was, when it failed)."""
    run: Annotated[str, Field(max_length=16)] | None = None
    """The backfill request this is a re-run for; unset for the scheduled run."""
    reason: Annotated[str, Field(max_length=1024)] | None = None
    """Why the last attempt failed."""
    permanent: bool | None = None
    """The failure cannot heal by running the window again (a Fail expectation, a schema
    error, an item too large): it is retried only a bounded number of times."""
    finished_at: dt.datetime | None = None
    """When the last attempt ended."""
    rows: RowCounts | None = None
    """Rows a succeeded attempt wrote."""
    engine: Literal["python", "spark"] | None = None
    """The engine that computed a succeeded attempt."""
    generation: int | None = None
    """The view's metadata.generation the last attempt started with: a failure that
    cannot heal is tried once more after each change of the view."""


class BackfillRange(SpecModel):
    """A range of a backfill request not started yet."""

    start: dt.datetime
    """The range's first instant (included)."""
    end: dt.datetime
    """The instant after the range (excluded)."""
    run: Annotated[str, Field(max_length=16)]
    """The backfill request it belongs to."""


class VersionProgress(SpecModel):
    """How far one version's materialization is: the operator's durable record of it.

    SparkApplications and Jobs are only the vehicles of attempts: once a window's
    outcome is recorded here, its application or Job may be deleted without anything
    running again.
    """

    version: Annotated[int, Field(ge=1)]
    """The data version."""
    materialized_until: dt.datetime | None = None
    """Every window from the first start up to this instant has completed."""
    planned_until: dt.datetime | None = None
    """End of the last scheduled window started."""
    windows: list[WindowProgress] | None = Field(None, max_length=256)
    """Windows started and not yet part of materializedUntil: running, failed, or
    completed while an earlier one is missing."""
    backfills: list[BackfillRange] | None = Field(None, max_length=64)
    """Ranges a backfill asked to run again that have not started."""
    last_window: WindowProgress | None = None
    """The latest window that completed, with the rows it read: with engine auto, the
    operator estimates a window's input from it."""


class RetiredVersion(SpecModel):
    """A version nothing uses any more: the durable record of when it stopped."""

    version: Annotated[int, Field(ge=1)]
    """The data version."""
    since: dt.datetime
    """When the operator first saw it unused; its data may go a retention period later."""
    deleted: bool = False
    """Its online table and offline data were deleted."""


class FeatureViewStatus(SpecModel):
    """The observed state of a FeatureView, written by the operator."""

    observed_generation: int | None = None
    """The metadata.generation the operator last acted on."""
    conditions: list[Condition] | None = Field(
        None, max_length=16, json_schema_extra=list_map("type")
    )
    """Ready, Materialized, Degraded."""
    version: int | None = None
    """The data version serving now; a change of data (source, features, ...) makes a new one."""
    latest_version: int | None = None
    """The version of the current spec; it serves once its backfill is done."""
    last_materialized_window: Window | None = None
    """The latest window written to the stores."""
    online_table: str | None = None
    """The DynamoDB table serving this view."""
    offline_uri: str | None = None
    """The Delta table holding this view's history."""
    rows: RowCounts | None = None
    """Rows of the last successful window."""
    progress: list[VersionProgress] | None = Field(None, max_length=8)
    """Materialization progress of the versions serving or backfilling."""
    backfill_request: Annotated[str, Field(max_length=1024)] | None = None
    """The last featurekube.dev/backfill annotation acted on."""
    serving_versions: list[Annotated[int, Field(ge=1)]] | None = Field(None, max_length=64)
    """Every version serving now: the view's own (``version``) and those FeatureServices
    pin that have caught up."""
    retired_versions: list[RetiredVersion] | None = Field(None, max_length=64)
    """Versions no longer used, since when, and whether their data was deleted."""
    expectations: list[ExpectationResult] | None = Field(None, max_length=1024)
    """Every expectation check's verdict on the last materialized window, Warn included."""
    freshness: FreshnessStatus | None = None
    """The freshness objective in force and whether it is met."""
    drift: list[FeatureDrift] | None = Field(None, max_length=256)
    """Each feature's drift in the last materialized window, when drift is measured."""
    streams: list[StreamStatus] | None = Field(None, max_length=8)
    """The streams of the versions with a stream source: since when, running or not,
    consumer lag, last event time and latency."""


class FeatureView(SpecModel):
    """A set of features of one or more entities, defined as code."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="size(self.metadata.name) <= 40",
            message="metadata.name must be at most 40 characters: the view's Spark jobs and "
            "tables are named after it",
            check=lambda v: len(v.metadata.name) <= 40,
            field_path=".metadata.name",
        ),
        Rule(
            cel="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
            message="metadata.name must be lower-case letters, digits and '-', starting with "
            "a letter and ending with a letter or digit: each window's SparkApplication is "
            "named after it, and the Spark Operator takes only such names",
            check=lambda v: _is_dns_1035_label(v.metadata.name),
            field_path=".metadata.name",
        ),
    )
    model_config = SpecModel.model_config | {"alias_generator": None}

    api_version: Literal["featurekube.dev/v1alpha1"] = Field(
        "featurekube.dev/v1alpha1", alias="apiVersion"
    )
    kind: Literal["FeatureView"] = "FeatureView"
    metadata: ObjectMeta
    spec: FeatureViewSpec
    status: FeatureViewStatus | None = None


def _is_dns_1035_label(name: str) -> bool:
    return re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) is not None
