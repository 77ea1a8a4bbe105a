"""Which transformations the python engine runs one source batch at a time, and which
source columns it then reads (featurekube.materialize.batchwise)."""

from __future__ import annotations

import doctest
import subprocess
import sys

import pytest

from featurekube.materialize import batchwise

SOURCE = ["driver_id", "fare", "tip", "Zone", "event_timestamp", "created"]


def _columns(sql: str) -> list[str] | None:
    return batchwise.columns(sql, SOURCE, "event_timestamp")


@pytest.mark.parametrize(
    ("sql", "read"),
    [
        (
            "SELECT driver_id, fare * 2 AS fare2, event_timestamp FROM source WHERE tip > 0",
            ["driver_id", "fare", "tip", "event_timestamp"],
        ),
        # Names match regardless of case, as DuckDB and Spark match them.
        (
            "SELECT driver_id, EVENT_TIMESTAMP, LOWER(zone) AS z FROM source",
            ["driver_id", "Zone", "event_timestamp"],
        ),
        ("SELECT *, fare + tip AS total FROM source", SOURCE),
        (
            "SELECT driver_id, event_timestamp FROM source UNION ALL "
            "SELECT driver_id + 1000, event_timestamp FROM source WHERE fare > 10",
            ["driver_id", "fare", "event_timestamp"],
        ),
        (
            "WITH paid AS (SELECT driver_id, tip, event_timestamp FROM source WHERE fare > 0) "
            "SELECT driver_id, tip, event_timestamp FROM paid",
            ["driver_id", "fare", "tip", "event_timestamp"],
        ),
        (
            "SELECT d, event_timestamp FROM (SELECT driver_id AS d, event_timestamp FROM source) t",
            ["driver_id", "event_timestamp"],
        ),
        (
            "(SELECT driver_id, event_timestamp FROM source) UNION ALL "
            "(SELECT driver_id, event_timestamp FROM ((SELECT * FROM source)) AS s)",
            SOURCE,
        ),
    ],
)
def test_a_query_taking_each_row_alone_and_passing_the_event_time_through_runs_per_batch(
    sql: str, read: list[str]
) -> None:
    assert _columns(sql) == read


@pytest.mark.parametrize(
    "sql",
    [
        # Rows compared with each other.
        "SELECT DISTINCT driver_id, event_timestamp FROM source",
        "SELECT driver_id, event_timestamp FROM source UNION "
        "SELECT driver_id, event_timestamp FROM source",
        # Other rows read by a nested query.
        "SELECT driver_id, event_timestamp FROM source "
        "WHERE driver_id IN (SELECT driver_id FROM source WHERE fare > 100)",
        "SELECT driver_id, event_timestamp FROM source "
        "WHERE driver_id IN ((SELECT driver_id FROM source WHERE fare > 100))",
        "SELECT driver_id, event_timestamp, (SELECT 1) AS one FROM source",
        # The event time not the source's column of that name, unchanged: pruning the
        # source by it could drop rows of the window.
        "SELECT driver_id, created AS event_timestamp FROM source",
        "SELECT driver_id, CAST(event_timestamp AS TIMESTAMP) AS event_timestamp FROM source",
        "SELECT driver_id, IF(tip > 0, event_timestamp, created) AS event_timestamp FROM source",
        "SELECT driver_id, event_timestamp FROM source UNION ALL "
        "SELECT driver_id, created FROM source",
        "SELECT * FROM (SELECT driver_id, event_timestamp AS ts FROM source) t",
        # Outside the allowlist: never run per batch, whatever else holds.
        "SELECT driver_id, event_timestamp, ROW_NUMBER() OVER (PARTITION BY driver_id "
        "ORDER BY event_timestamp) AS trips FROM source",
        # What cannot be told is run as before.
        "SELECT FROM WHERE (",
        "SELECT driver_id, event_timestamp, no_such_column FROM source",
    ],
)
def test_any_other_query_runs_once_over_the_source(sql: str) -> None:
    assert _columns(sql) is None


def test_the_modules_examples_hold() -> None:
    assert doctest.testmod(batchwise).failed == 0


def test_the_python_engine_loads_sqlglot_only_for_a_view_with_sql() -> None:
    # sqlglot takes a fifth of a second to import: a window of a plain view, which runs
    # no SQL of the user's, should not pay for it.
    code = (
        "import sys, featurekube.materialize.python_job\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlglot'))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert loaded.stdout.strip() == "[]"
