"""A view's Spark SQL transformation as DuckDB runs it; pure (sqlglot, no I/O).

The python engine (:mod:`featurekube.materialize.python_job`) computes exactly the rows
Spark computes. featurekube takes only the SQL whose meaning both engines share
(:mod:`featurekube.validation.sql`: the constructs of ``ALLOWED_SYNTAX`` and the
functions of ``ALLOWED_FUNCTIONS``), each of which sqlglot translates to a DuckDB
equivalent giving the same values (Spark's session in UTC, DuckDB's ``TimeZone`` UTC);
:func:`translate` adds the few corrections sqlglot's translation needs. A query using
anything else is refused with the construct named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from featurekube import sqlbounds
from featurekube.materialize.errors import TransformationError

if TYPE_CHECKING:
    from sqlglot import exp

__all__ = ["check", "portable", "translate", "unportable"]


def _parse(sql: str) -> tuple[exp.Expr | None, list[str]]:
    """``sql`` parsed, and what in it featurekube refuses (then possibly no tree)."""
    # sqlglot takes a fifth of a second to import: only a view with SQL pays it.
    import sqlglot
    import sqlglot.errors

    from featurekube.validation import sql as sql_rules

    deep = sqlbounds.nesting_problem(sql)
    if deep is not None:
        return None, [f"SQL that {deep}"]
    try:
        query = sqlglot.parse_one(sql, read="spark")
    except sqlglot.errors.ParseError as exc:
        return None, [f"SQL that does not parse: {str(exc).splitlines()[0]}"]
    except RecursionError:
        return None, [f"SQL that {sqlbounds.too_deep()}"]
    return query, sql_rules.disallowed(query)


def unportable(sql: str) -> list[str]:
    """What in ``sql`` (Spark SQL) the python engine does not compute as Spark does;
    empty when it may run the query. featurekube takes only such SQL
    (:func:`featurekube.validation.sql.disallowed`): the check stands here too because
    a job may be handed a view no validation saw.

    >>> unportable("SELECT driver_id, LOWER(zone) AS zone FROM source WHERE fare > 0")
    []
    """
    return _parse(sql)[1]


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
    query = check(sql, label)
    return str(query.transform(_spark_types).sql(dialect="duckdb"))


def check(sql: str, label: str = "the FeatureView") -> exp.Expr:
    """``sql`` parsed; raises
    :class:`~featurekube.materialize.errors.TransformationError` naming what in it
    featurekube does not allow. Every job checks here before it reads a row, as
    validate does: a job may be handed a view nothing validated."""
    query, problems = _parse(sql)
    if problems or query is None:
        raise TransformationError(
            f"{label}: spec.transformation.sql uses {', '.join(problems)}, which featurekube "
            "does not allow in a transformation: both engines must compute it alike, and it "
            "may read only the view's source (allowed: docs/semantics.md, "
            '"Transformations")'
        )
    return query


def _spark_types(node: exp.Expression) -> exp.Expression:
    """Where DuckDB would differ from Spark (in ANSI mode, its default): Spark's FLOOR
    and CEIL of a number are BIGINT, DuckDB's keep the argument's type, so cast, and the
    result's column types, and so the checks of them, agree; Spark fails a CAST of a
    value that does not convert and a division by zero, where sqlglot reads them as
    Spark's lenient mode would (TRY_CAST, NULLIF): make DuckDB fail them too."""
    from sqlglot import exp

    if isinstance(node, exp.TryCast):
        return exp.Cast(this=node.this, to=node.args["to"])
    if isinstance(node, exp.Div) and node.args.get("safe"):
        # Spark fails a division by zero; DuckDB gives infinity, sqlglot a NULL.
        divisor = node.expression
        zero = exp.EQ(this=divisor.copy(), expression=exp.Literal.number(0))
        fail = exp.Anonymous(
            this="error", expressions=[exp.Literal.string("[DIVIDE_BY_ZERO] Division by zero")]
        )
        guarded = exp.Case().when(zero, fail).else_(divisor.copy())
        return exp.Div(this=node.this, expression=exp.Paren(this=guarded))
    if isinstance(node, exp.Floor | exp.Ceil) and node.args.get("decimals") is None:
        return exp.Cast(this=node, to=exp.DataType.build("bigint"))
    return node
