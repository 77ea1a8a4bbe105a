"""A view's Spark SQL transformation as DuckDB runs it; pure (sqlglot, no I/O).

The python engine (:mod:`featurekube.materialize.python_job`) computes exactly the rows
Spark computes, so it takes only the SQL whose meaning both engines share: a single
SELECT over ``source`` built from the constructs of :data:`EXPRESSIONS` and the
functions of :data:`FUNCTIONS`, each of which sqlglot translates to a DuckDB equivalent
giving the same values (Spark's session in UTC, DuckDB's ``TimeZone`` UTC). A query
using anything else is refused by :func:`translate` with the construct named; the
``auto`` engine then chooses Spark (:func:`portable`).
"""

from __future__ import annotations

import sqlglot
import sqlglot.errors
from sqlglot import exp

from featurekube.materialize.errors import TransformationError

__all__ = ["EXPRESSIONS", "FUNCTIONS", "portable", "translate", "unportable"]

FUNCTIONS: tuple[type[exp.Expression], ...] = (
    exp.Abs,
    exp.Ceil,
    exp.Coalesce,
    exp.Concat,
    exp.DateDiff,
    exp.Floor,
    exp.Greatest,
    exp.Least,
    exp.Length,
    exp.Lower,
    exp.Nullif,
    exp.Sqrt,
    exp.Trim,
    exp.TsOrDsToDate,
    exp.Upper,
)
"""Functions (as sqlglot parses Spark SQL) the two engines compute alike: ABS, CEIL,
COALESCE (and NVL, IFNULL), CONCAT, DATEDIFF, FLOOR, GREATEST, LEAST, LENGTH, LOWER,
NULLIF, SQRT, TRIM, UPPER. Left out on purpose: ROUND (Spark rounds a double's decimal
expansion, DuckDB the double) and SUBSTR (they differ at positions 0 and below)."""

EXPRESSIONS: tuple[type[exp.Expression], ...] = (
    exp.Select,
    exp.From,
    exp.Where,
    exp.Table,
    exp.TableAlias,
    exp.Identifier,
    exp.Column,
    exp.Star,
    exp.Alias,
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.Paren,
    exp.Cast,
    exp.DataType,
    exp.DataTypeParam,
    exp.Case,
    exp.If,
    exp.Not,
    exp.And,
    exp.Or,
    exp.Is,
    exp.In,
    exp.Between,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.Neg,
    exp.Like,
    *FUNCTIONS,
)
"""The syntax the python engine takes (CASE, IF, CAST, comparisons, arithmetic, LIKE,
IN, BETWEEN, IS [NOT] NULL, AND/OR/NOT, aliases) and :data:`FUNCTIONS`."""


def unportable(sql: str) -> list[str]:
    """What in ``sql`` (Spark SQL) the python engine does not compute as Spark does;
    empty when it may run the query.

    >>> unportable("SELECT driver_id, LOWER(zone) AS zone FROM source WHERE fare > 0")
    []
    >>> unportable("SELECT driver_id, percentile(fare, 0.5) AS p FROM source GROUP BY 1")
    ['GROUP BY', 'function percentile']
    """
    try:
        query = sqlglot.parse_one(sql, read="spark")
    except sqlglot.errors.ParseError as exc:
        return [f"SQL that does not parse: {str(exc).splitlines()[0]}"]
    found: dict[str, None] = {}
    for node in query.walk():
        if isinstance(node, EXPRESSIONS):
            continue
        if isinstance(node, exp.Group):
            found["GROUP BY"] = None
        elif isinstance(node, exp.Func):
            found[f"function {_function_name(node)}"] = None
        else:
            found[type(node).__name__] = None
    return list(found)


def portable(sql: str | None) -> bool:
    """Whether the python engine may run a view with this transformation (None: none)."""
    return sql is None or not unportable(sql)


def translate(sql: str, label: str = "the FeatureView") -> str:
    """``sql`` as DuckDB SQL; raises
    :class:`~featurekube.materialize.errors.TransformationError` naming what the python
    engine cannot run.

    >>> translate("SELECT FLOOR(fare) AS f FROM source WHERE NOT test")
    'SELECT CAST(FLOOR(fare) AS BIGINT) AS f FROM source WHERE NOT test'
    """
    problems = unportable(sql)
    if problems:
        raise TransformationError(
            f"{label}: spec.transformation.sql uses {', '.join(problems)}, which the python "
            "engine does not compute exactly as Spark does: set spec.materialization.engine "
            "to spark (or auto, which chooses Spark for it)"
        )
    query = sqlglot.parse_one(sql, read="spark").transform(_spark_types)
    return str(query.sql(dialect="duckdb"))


def _spark_types(node: exp.Expression) -> exp.Expression:
    """Spark's FLOOR and CEIL of a number are BIGINT, DuckDB's keep the argument's type:
    cast, so that the result's column types, and so the checks of them, agree. Spark
    (ANSI mode, its default) fails a CAST of a value that does not convert, where
    sqlglot reads it as TRY_CAST: make it a CAST again, failing in DuckDB too."""
    if isinstance(node, exp.TryCast):
        return exp.Cast(this=node.this, to=node.args["to"])
    if isinstance(node, exp.Floor | exp.Ceil) and node.args.get("decimals") is None:
        return exp.Cast(this=node, to=exp.DataType.build("bigint"))
    return node


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return str(node.sql_name()).lower()
