"""Checks of a materialization before Spark starts; pure (no I/O, no pyspark).

Starting Spark takes seconds and reading a window minutes; a missing bucket, an empty
source or a mistyped column is found in milliseconds from a listing and one file's
footer. :mod:`featurekube.materialize.probe` gathers those facts (:class:`SourceFacts`,
:class:`StoreFacts`); the functions here judge them and return the first problem as an
error whose first line names the view, the field or path, and the next step.

Parquet timestamps in nanoseconds (pandas' default) are refused here: Spark cannot
read them ("Illegal Parquet type: INT64 (TIMESTAMP(NANOS,...))"), and finding that out
only once the job runs points at the wrong cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from featurekube import errors
from featurekube.materialize import plan as planning

__all__ = [
    "NANOSECOND_FIX",
    "SourceFacts",
    "StoreFacts",
    "check_source",
    "check_stores",
    "column_problems",
    "nanosecond_columns",
]

NANOSECOND_FIX = (
    "write timestamps in microseconds: pandas: "
    "frame.to_parquet(path, coerce_timestamps='us', allow_truncated_timestamps=True); "
    "pyarrow: pq.write_table(table, path, coerce_timestamps='us', "
    "allow_truncated_timestamps=True)"
)


@dataclass(frozen=True)
class SourceFacts:
    """What a listing of the source path, and one of its files, showed."""

    bucket_exists: bool
    files: tuple[str, ...]
    """Data files under the path, in the view's format (for Delta: its log's files)."""
    sample: str | None = None
    """The file whose schema was read."""
    schema: pa.Schema | None = None
    """Its schema; None when not read (a Delta table, or no files)."""
    read_error: str | None = None
    """Why the sample's schema could not be read, when it could not."""


@dataclass(frozen=True)
class StoreFacts:
    """Whether the stores a run writes to are there."""

    offline_uri: str | None
    offline_bucket_exists: bool
    online_table: str | None
    online_reachable: bool
    online_detail: str = ""


def _bucket(uri: str) -> str:
    return uri.split("://", 1)[-1].split("/", 1)[0]


def nanosecond_columns(schema: pa.Schema) -> list[str]:
    """Columns holding timestamps in nanoseconds, which Spark's parquet reader refuses."""
    return [
        field.name
        for field in schema
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns"
    ]


def _fits(arrow: pa.DataType, value_type: str) -> bool:
    if value_type == "any":
        return True
    if value_type == "int64":
        return bool(pa.types.is_integer(arrow))
    if value_type == "float64":
        return bool(
            pa.types.is_integer(arrow) or pa.types.is_floating(arrow) or pa.types.is_decimal(arrow)
        )
    if value_type == "string":
        return bool(pa.types.is_string(arrow) or pa.types.is_large_string(arrow))
    if value_type == "bool":
        return bool(pa.types.is_boolean(arrow))
    if value_type == "timestamp":
        return bool(pa.types.is_timestamp(arrow) or pa.types.is_date(arrow))
    if value_type == "float64_array":
        return bool(pa.types.is_list(arrow) or pa.types.is_large_list(arrow))
    return True


def column_problems(columns: Sequence[planning.Column], schema: pa.Schema) -> list[str]:
    """One line per column the job needs that ``schema`` lacks or types otherwise."""
    found = []
    for column in columns:
        index = schema.get_field_index(column.name)
        if index < 0:
            found.append(f"{column.name} ({column.role}) is missing")
        elif not _fits(schema.field(index).type, column.value_type):
            found.append(
                f"{column.name} ({column.role}) is {schema.field(index).type}, "
                f"not convertible to {column.value_type}"
            )
    return found


def check_source(plan: planning.MaterializationPlan, facts: SourceFacts) -> None:
    """Raise the first problem of the source, as a one-line error with the detail after."""
    where = f"{plan.label}: spec.source.batch.path {plan.source_path}"
    if not facts.bucket_exists:
        raise errors.SourceError(
            f"{where}: bucket {_bucket(plan.source_path)} does not exist, or these "
            "credentials may not read it: check the path, and AWS_ENDPOINT_URL and the "
            'credentials of this shell (`eval "$(featurekube dev env)"` for the local '
            "platform)"
        )
    if not facts.files:
        kind = "a Delta table (_delta_log/)" if plan.source_format == "delta" else "parquet files"
        raise errors.SourceError(
            f"{where}: holds no {kind}: check spec.source.batch.path and "
            "spec.source.batch.format, or write the source data first"
        )
    sample = facts.sample or plan.source_path
    if facts.read_error is not None:
        raise errors.SourceError(
            f"{where}: {sample} could not be read as {plan.source_format} "
            f"({facts.read_error}): check spec.source.batch.format, or remove files that "
            "are not data from the path"
        )
    if facts.schema is None:
        return
    nanos = nanosecond_columns(facts.schema)
    if nanos:
        raise errors.SourceSchemaError(
            f"{where}: column {', '.join(nanos)} of {sample} holds timestamps in "
            f"nanoseconds, which Spark cannot read: {NANOSECOND_FIX}",
            [f"{name}: timestamp[ns]" for name in nanos],
        )
    if plan.transformation is not None:
        return  # the columns come out of the SQL, which Spark analyzes
    problems = column_problems(plan.columns, facts.schema)
    if problems:
        raise errors.SourceSchemaError(
            f"{where}: {sample} does not fit the spec: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + ": fix the source data or the spec's field names and types\n"
            + "\n".join(f"  {problem}" for problem in problems),
            problems,
        )


def check_stores(label: str, facts: StoreFacts) -> None:
    """Raise when a store the run writes to is not there (nothing has been made yet)."""
    if facts.offline_uri is not None and not facts.offline_bucket_exists:
        bucket = _bucket(facts.offline_uri)
        raise errors.StoreNotFoundError(
            f"{label}: offline store {facts.offline_uri}: bucket {bucket} does not exist: "
            "pass --create-bucket to create it, --offline-uri with a bucket that exists, or "
            "--no-offline"
        )
    if facts.online_table is not None and not facts.online_reachable:
        raise errors.StoreUnavailableError(
            f"{label}: online store (DynamoDB, table {facts.online_table}) did not answer: "
            "check AWS_ENDPOINT_URL, AWS_REGION and the credentials, or pass --no-online"
            + (f"\n{facts.online_detail}" if facts.online_detail else "")
        )
