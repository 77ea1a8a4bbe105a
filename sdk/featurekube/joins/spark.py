"""Executes a :class:`~featurekube.joins.plan.JoinPlan` in Spark; does I/O.

The only module of :mod:`featurekube.joins` that imports pyspark, for entity frames too
big for one machine. It reads the same partitions and columns of each view's Delta
table as the DuckDB engine and gives the same rows. Per view:

- the view's rows (keys, event time E, created time, features) and the entity rows
  (keys, time T, position) are put in one frame, partitioned by the join keys and
  ordered by (time, view rows before entity rows, created time);
- each entity row takes the last view row before it, ``last(..., ignorenulls)`` over
  that window: the greatest E <= T (a view row at E = T comes first, so it counts),
  ties on E going to the greater created time, which is ordered last;
- rows with a null key never match (view rows with one are dropped, and entity rows
  with one find only each other); a view row older than the TTL at T gives nulls.

Entity times are taken in whole microseconds as by the DuckDB engine (down for
E <= T, up for the TTL); the result is ordered by the entity rows' positions.
Request-time transformations run through :mod:`featurekube.ondemand` on the
executors, over Arrow batches (``mapInArrow``), so the code that computes them is the
feature server's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from featurekube.joins import duckdb as engine
from featurekube.joins import plan
from featurekube.offline import layout
from featurekube.spec import v1alpha1

__all__ = ["ROW", "describe", "entity_frame", "execute"]

ROW = "__fk_row"
"""The entity rows' positions, the order of the result."""
TIME = "__fk_t"
"""Entity times in µs, rounded down (for E <= T)."""
TIME_UP = "__fk_t_up"
"""Entity times in µs, rounded up (for T - E <= ttl)."""
_MAX_INT64 = 9_223_372_036_854_775_807


def _spark_type(value_type: str) -> T.DataType:
    found: dict[str, T.DataType] = {
        "int64": T.LongType(),
        "float64": T.DoubleType(),
        "string": T.StringType(),
        "bool": T.BooleanType(),
        "timestamp": T.TimestampType(),
        "float64_array": T.ArrayType(T.DoubleType()),
    }
    return found[value_type]


def _key_column(key: plan.KeyColumn) -> Column:
    return F.col(key.name).cast("bigint" if key.type == "int64" else "string")


def _kind(data_type: T.DataType) -> plan.ColumnKind:
    name = data_type.typeName()
    if name in ("byte", "short", "integer", "long"):
        return "integer"
    if name in ("string", "varchar", "char"):
        return "string"
    if name in ("timestamp", "timestamp_ntz"):
        return "timestamp"
    return "other"


def describe(frame: DataFrame, timestamp_column: str) -> plan.EntityFrame:
    """The columns of a Spark DataFrame of entity rows, and the range of their times."""
    columns = tuple(
        plan.EntityColumn(f.name, _kind(f.dataType), f.dataType.simpleString())
        for f in frame.schema.fields
    )
    described = plan.EntityFrame(columns)
    column = described.column(timestamp_column)
    if column is None or column.kind != "timestamp":
        return described
    micros = _micros(frame, timestamp_column)
    low, high = frame.select(F.min(micros), F.max(micros)).first() or (None, None)
    if low is None or high is None:
        return described
    return plan.EntityFrame(columns, plan.utc_from_micros(low), plan.utc_from_micros(high))


def _micros(frame: DataFrame, name: str) -> Column:
    """A Spark timestamp column as µs since the epoch, UTC (one without a time zone is
    taken as UTC whatever the session's zone)."""
    column = F.col(name)
    if frame.schema[name].dataType.typeName() == "timestamp_ntz":
        epoch = F.lit("1970-01-01 00:00:00").cast("timestamp_ntz")
        return F.timestamp_diff("MICROSECOND", epoch, column)
    return F.unix_micros(column)


def entity_frame(
    spark: SparkSession, entities: engine.Entities | DataFrame, join_plan: plan.JoinPlan
) -> DataFrame:
    """The entity rows as a Spark DataFrame with their positions (:data:`ROW`) and
    times in µs (:data:`TIME`, :data:`TIME_UP`), beside the caller's columns."""
    if not isinstance(entities, engine.Entities):
        frame = entities.withColumn(ROW, F.monotonically_increasing_id())
        micros = _micros(frame, join_plan.timestamp_column)
        return frame.withColumn(TIME, micros).withColumn(TIME_UP, micros)
    table = entities.in_memory()
    if table is None:
        return _parquet_frame(spark, entities, join_plan)
    times = table.column(join_plan.timestamp_column)
    table = (
        table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
        .append_column(TIME, engine.to_micros(times, round_up=False))
        .append_column(TIME_UP, engine.to_micros(times, round_up=True))
    )
    created: DataFrame = spark.createDataFrame(table)
    return created


def _parquet_frame(
    spark: SparkSession, entities: engine.Entities, join_plan: plan.JoinPlan
) -> DataFrame:
    """Entity rows read by Spark from parquet, ordered as the DuckDB engine reads them:
    by file path, then by row within the file."""
    uri = entities.uri or ""
    if uri.startswith("s3://"):
        uri = "s3a://" + uri.removeprefix("s3://")
    frame = spark.read.parquet(uri)
    frame = frame.select(
        "*",
        F.col("_metadata.file_path").alias("__fk_file"),
        F.col("_metadata.row_index").alias("__fk_index"),
    )
    frame = frame.orderBy("__fk_file", "__fk_index").withColumn(
        ROW, F.monotonically_increasing_id()
    )
    frame = frame.drop("__fk_file", "__fk_index")
    micros = _micros(frame, join_plan.timestamp_column)
    return frame.withColumn(TIME, micros).withColumn(TIME_UP, micros)


def _view_rows(spark: SparkSession, view: plan.ViewJoin) -> DataFrame:
    """The view's rows the plan's bounds allow, as the window takes them."""
    table = spark.read.format("delta").load(view.table_uri)
    missing = [c for c in view.columns if c not in table.columns]
    if missing:
        raise plan.OfflineStoreError(
            f"the offline table of {view.where} at {view.table_uri} has no column "
            f"{', '.join(missing)}: it was written for another version of the view's spec"
        )
    event = F.col(layout.EVENT_TIMESTAMP)
    condition = event.isNotNull()
    for key in view.keys:
        condition = condition & F.col(key.name).isNotNull()
    first, last = view.partitions
    partitioned = layout.EVENT_DATE in table.columns
    if view.latest is None:
        condition = condition & F.lit(False)
    else:
        condition = condition & (event <= F.lit(view.latest))
        if partitioned and last is not None:
            condition = condition & (F.col(layout.EVENT_DATE) <= F.lit(last))
    if view.earliest is not None:
        condition = condition & (event >= F.lit(view.earliest))
        if partitioned and first is not None:
            condition = condition & (F.col(layout.EVENT_DATE) >= F.lit(first))
    # "e": what the TTL counts from, the row's latest event (docs/semantics.md).
    anchor = event if view.ttl_from == layout.EVENT_TIMESTAMP else F.col(view.ttl_from)
    values = F.struct(
        F.unix_micros(F.coalesce(anchor, event)).alias("e"),
        *(F.col(f.name).alias(f"f{j}") for j, f in enumerate(view.features)),
    )
    created = F.unix_micros(F.col(layout.CREATED_TIMESTAMP))
    return table.where(condition).select(
        *(_key_column(k).alias(k.name) for k in view.keys),
        F.unix_micros(event).alias("__ts"),
        F.lit(0).alias("__kind"),
        F.coalesce(created, F.lit(-_MAX_INT64)).alias("__c"),
        F.lit(None).cast("bigint").alias(ROW),
        values.alias("__v"),
    )


def _join_view(spark: SparkSession, entities: DataFrame, view: plan.ViewJoin) -> DataFrame:
    """One row per entity row: its position and the view's row it takes (or null)."""
    rows = _view_rows(spark, view)
    values_type = rows.schema["__v"].dataType
    probes = entities.select(
        *(_key_column(k).alias(k.name) for k in view.keys),
        F.col(TIME).alias("__ts"),
        F.lit(1).alias("__kind"),
        F.lit(_MAX_INT64).alias("__c"),
        F.col(ROW),
        F.lit(None).cast(values_type).alias("__v"),
    )
    window = (
        Window.partitionBy(*(k.name for k in view.keys))
        .orderBy("__ts", "__kind", "__c")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    taken = F.last("__v", ignorenulls=True).over(window)
    joined: DataFrame = (
        rows.unionByName(probes)
        .select(ROW, "__kind", taken.alias("__v"))
        .where(F.col("__kind") == 1)
        .select(ROW, "__v")
    )
    return joined


def execute(join_plan: plan.JoinPlan, entities: DataFrame) -> DataFrame:
    """The result as a Spark DataFrame ordered as the entity rows (which
    :func:`entity_frame` made): the caller's columns, the features, the
    transformations."""
    spark = entities.sparkSession
    result = entities
    outputs: list[Column] = []
    for index, view in enumerate(join_plan.views):
        joined = _join_view(spark, entities, view).withColumnRenamed("__v", f"__v{index}")
        result = result.join(joined, on=ROW, how="left")
        values = F.col(f"__v{index}")
        fresh = F.lit(True)
        if view.ttl is not None:
            limit = view.ttl // dt.timedelta(microseconds=1)
            fresh = (F.col(TIME_UP) - values["e"]) <= F.lit(limit)
        for j, feature in enumerate(view.features):
            value = F.when(fresh, values[f"f{j}"])
            outputs.append(value.cast(v1alpha1.SPARK_SQL_TYPES[feature.type]).alias(feature.output))
    ordered = result.select(
        *(F.col(name) for name in join_plan.entity_columns), *outputs, ROW
    ).orderBy(ROW)
    if join_plan.transformations:
        ordered = _transform(ordered, join_plan)
    return ordered.drop(ROW)


def _transform(frame: DataFrame, join_plan: plan.JoinPlan) -> DataFrame:
    """Request-time transformations appended, computed by featurekube.ondemand."""
    fields = [
        T.StructField(t.name, _spark_type(t.type), nullable=True) for t in join_plan.transformations
    ]
    schema = T.StructType([*frame.schema.fields, *fields])

    def evaluate(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        compiled = plan.compile_transformations(join_plan)
        for batch in batches:
            table = pa.Table.from_batches([batch])
            computed = compiled.evaluate(table) if compiled is not None else pa.table({})
            yield from pa.Table.from_arrays(
                [*table.columns, *computed.columns],
                names=[*table.column_names, *computed.column_names],
            ).to_batches()

    transformed: DataFrame = frame.mapInArrow(evaluate, schema)
    return transformed
