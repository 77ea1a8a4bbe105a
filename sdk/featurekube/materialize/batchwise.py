"""Whether the python engine may run a view's transformation one source batch at a time;
pure (sqlglot, no I/O).

DuckDB's Arrow export of a query holds the query's whole result until its consumer has
taken the last batch, so a transformation run once over a window's source holds every
row it gives. Run on one batch of the source at a time, it holds one batch's rows, and
gives the same rows when each of its output rows comes from one source row alone:

- no ``DISTINCT`` and no ``UNION`` without ``ALL`` (they compare rows with each other);
- no query nested anywhere but in ``FROM``, a ``WITH`` or an operand of ``UNION ALL``
  (``x IN (SELECT ...)`` and scalar subqueries read other rows).

The query is parsed through the allowlist
(:func:`featurekube.materialize.translate.check`), which already leaves out aggregates,
window functions, joins, ``ORDER BY`` and ``LIMIT``; a query outside it never runs per
batch. The source batches are read pruned to the window's event times, as DuckDB prunes
the whole query's scan, so the event-time column must also pass from the source to the
output unchanged: a plain reference to the source's column of that name, in every
branch. A transformation that is not both runs once over the source, as before.

    >>> columns("SELECT driver_id, fare * 2 AS fare2, event_timestamp FROM source "
    ...         "WHERE fare > 0", ["driver_id", "fare", "tip", "event_timestamp"],
    ...         "event_timestamp")
    ['driver_id', 'fare', 'event_timestamp']
    >>> columns("SELECT DISTINCT driver_id, event_timestamp FROM source",
    ...         ["driver_id", "event_timestamp"], "event_timestamp") is None
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from featurekube.materialize import translate
from featurekube.materialize.errors import TransformationError

if TYPE_CHECKING:
    from sqlglot import exp

__all__ = ["columns"]


def columns(sql: str, source_columns: Sequence[str], timestamp_field: str) -> list[str] | None:
    """The columns of the source (among ``source_columns``, in their order) that ``sql``
    (Spark SQL over ``source``) reads, when it may run one batch of the source at a time
    with the batches pruned by the source's ``timestamp_field``; None when it may not,
    or when that cannot be told (a query outside the allowlist, or that does not
    qualify against the source's columns)."""
    # Imported here, as translate.py imports sqlglot: only a view with SQL pays for it.
    import sqlglot.errors
    from sqlglot import exp
    from sqlglot.optimizer.qualify import qualify

    from featurekube.validation.sql import SOURCE_TABLE

    # Column types play no part in which columns a query reads.
    schema: dict[str, object] = {SOURCE_TABLE: dict.fromkeys(source_columns, "string")}
    try:
        # The allowlist's parse: what it leaves out is what this module need not look for.
        query = translate.check(sql)
        if not _takes_rows_alone(query):
            return None
        # Unquoted, so that lineage names the source's columns as they are spelled.
        qualified = qualify(query, schema=schema, dialect="spark", identify=False)
        if not _passes_through(qualified, timestamp_field, schema):
            return None
    except (TransformationError, sqlglot.errors.SqlglotError, RecursionError):
        return None
    named = {column.name.lower() for column in qualified.find_all(exp.Column)}
    # A superset at worst (a CTE's column named as a source column is read for nothing).
    return [name for name in source_columns if name.lower() in named]


def _takes_rows_alone(query: exp.Expr) -> bool:
    from sqlglot import exp

    for node in query.walk():
        if isinstance(node, exp.Distinct):
            return False
        if isinstance(node, exp.SetOperation) and (
            not isinstance(node, exp.Union) or node.args.get("distinct")
        ):
            return False
        if isinstance(node, exp.Query) and node is not query and not _nested_as_rows(node):
            return False
    return True


def _nested_as_rows(node: exp.Expr) -> bool:
    """Whether the query ``node`` stands where its rows are the rows of what holds it: in
    FROM, as a WITH's query, or as an operand of a UNION."""
    from sqlglot import exp

    parent = node.parent
    while isinstance(parent, exp.Subquery):  # parentheses, or FROM (...) AS alias
        parent = parent.parent
    return isinstance(parent, exp.From | exp.CTE | exp.Union)


def _passes_through(qualified: exp.Expr, timestamp_field: str, schema: dict[str, object]) -> bool:
    """Whether the output's ``timestamp_field`` is the source's column of that name, by
    plain references only, in every branch of the ``qualified`` query."""
    from sqlglot import exp
    from sqlglot.lineage import lineage
    from sqlglot.optimizer.scope import build_scope

    from featurekube.validation.sql import SOURCE_TABLE

    # Given the scope of the query qualified once, lineage does not qualify it again.
    scope = build_scope(qualified)
    root = lineage(timestamp_field, qualified, schema=schema, dialect="spark", scope=scope)
    for node in root.walk():
        if node.downstream:
            if not isinstance(node.expression.unalias(), exp.Column):
                return False
        elif not (
            isinstance(node.expression, exp.Table)
            and node.expression.name.lower() == SOURCE_TABLE
            and node.name.rsplit(".", 1)[-1].lower() == timestamp_field.lower()
        ):
            return False
    return True
