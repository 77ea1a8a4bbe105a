"""Checks of the SQL in feature definitions, parsed without a JVM by sqlglot; pure.

Two kinds of SQL appear in specs: a FeatureView's ``spec.transformation.sql``, a
single Spark SQL SELECT reading ``FROM source``; and a FeatureService's request-time
``spec.transformations[].expression``, one SQL expression over request fields and the
service's features. The functions here return messages for the problems they find
(empty when there are none); :func:`check_transformations` turns them into problems.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping

import sqlglot
import sqlglot.errors
from sqlglot import exp

from featurekube import sqlbounds
from featurekube.spec import v1alpha1
from featurekube.validation import problems, schema

__all__ = [
    "ALLOWED_FUNCTIONS",
    "ALLOWED_SYNTAX",
    "check_expression",
    "check_query",
    "check_transformations",
    "disallowed",
    "needed_columns",
]

DIALECT = "spark"
SOURCE_TABLE = "source"
"""The name a transformation reads its view's source rows by."""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


ALLOWED_FUNCTIONS: tuple[type[exp.Expression], ...] = (
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

ALLOWED_SYNTAX: tuple[type[exp.Expression], ...] = (
    exp.Select,
    exp.With,
    exp.CTE,
    exp.Subquery,
    exp.Union,
    exp.Distinct,
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
    *ALLOWED_FUNCTIONS,
)
"""The syntax the python engine takes (CASE, IF, CAST, comparisons, arithmetic, LIKE,
IN, BETWEEN, IS [NOT] NULL, AND/OR/NOT, aliases) and :data:`ALLOWED_FUNCTIONS`."""


def disallowed(query: exp.Expr) -> list[str]:
    """The constructs and functions of ``query`` outside :data:`ALLOWED_SYNTAX` and
    :data:`ALLOWED_FUNCTIONS`, named once each; empty when it is allowed.

    >>> disallowed(sqlglot.parse_one("SELECT reflect('java.lang.System', 'getenv', 'K') "
    ...     "AS k FROM source", read="spark"))
    ['function reflect']
    """
    found: dict[str, None] = {}
    for node in query.walk():
        if isinstance(node, ALLOWED_SYNTAX):
            continue
        if isinstance(node, exp.Group):
            found["GROUP BY"] = None
        elif isinstance(node, exp.Func):
            found[f"function {_function_name(node)}"] = None
        elif not isinstance(node, exp.Ordered):  # the ORDER BY or OVER around it is named
            found[_construct_name(node)] = None
    return list(found)


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return str(node.sql_name()).lower()


def _construct_name(node: exp.Expr) -> str:
    """'Window' -> 'a window function (OVER)', or the class name spaced."""
    names = {
        "Window": "window functions (OVER)",
        "Join": "JOIN",
        "Order": "ORDER BY",
        "Limit": "LIMIT",
        "Having": "HAVING",
        "Lateral": "LATERAL VIEW",
        "Bracket": "indexing with [ ]",
        "Dot": "field access with .",
    }
    name = type(node).__name__
    return names.get(name, name)


def check_query(sql: str, needed: Mapping[str, str] | None = None) -> list[str]:
    """What is wrong with ``sql`` as a view's transformation: it must parse as Spark
    SQL and be a single SELECT reading FROM source and no other table.

    ``needed`` maps columns the view needs from the query to why (join keys, the
    timestamp, features); a query that names its outputs must output them all.

    >>> check_query("SELECT driver_id, event_timestamp, fare FROM source")
    []
    >>> check_query("SELECT * FROM trips")
    ["reads table 'trips': a transformation reads only FROM source, the view's spec.source"]
    """
    deep = sqlbounds.nesting_problem(sql)
    if deep is not None:
        return [deep]
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except sqlglot.errors.ParseError as exc:
        return [f"does not parse as Spark SQL: {_parse_error(exc)}"]
    except RecursionError:
        return [sqlbounds.too_deep()]
    if not statements:
        return ["contains no SQL statement: write a SELECT ... FROM source"]
    if len(statements) > 1:
        return [
            f"has {len(statements)} statements; a transformation is a single SELECT ... FROM source"
        ]
    (query,) = statements
    if not isinstance(query, exp.Query):
        return [
            f"is {_statement_name(query)} statement; a transformation is a single "
            "SELECT ... FROM source"
        ]
    found = _check_tables(query)
    refused = disallowed(query)
    if refused:
        found.append(
            f"uses {', '.join(refused)}, which a transformation may not: it takes the "
            "syntax and functions both engines compute alike (docs/semantics.md, "
            '"Transformations")'
        )
    if needed:
        found += _check_outputs(query, needed)
    return found


def check_expression(
    expression: str,
    names: Collection[str] | None,
    transformations: Collection[str] = (),
) -> list[str]:
    """What is wrong with a request-time transformation's ``expression``: it must
    parse as one Spark SQL expression and use only ``names`` (request fields and the
    service's features; None: not known, so not checked). Names in
    ``transformations`` (the service's other transformations) are refused with a
    message of their own: transformations are computed from fetched data only.

    >>> check_expression("trip_distance_km / nullif(avg_speed_kmh_7d, 0)",
    ...                  {"trip_distance_km", "avg_speed_kmh_7d"})
    []
    """
    deep = sqlbounds.nesting_problem(expression)
    if deep is not None:
        return [deep]
    try:
        trees = [t for t in sqlglot.parse(expression, read=DIALECT) if t is not None]
    except sqlglot.errors.ParseError as exc:
        return [f"does not parse as a Spark SQL expression: {_parse_error(exc)}"]
    except RecursionError:
        return [sqlbounds.too_deep()]
    if len(trees) != 1:
        return ["must be one SQL expression, e.g. trip_distance_km / nullif(avg_speed_kmh_7d, 0)"]
    (tree,) = trees
    if isinstance(tree, exp.Query | exp.DDL | exp.DML | exp.Command):
        return [
            f"is {_statement_name(tree)} statement; write one SQL expression over request "
            "fields and the service's features, without SELECT or FROM"
        ]
    if isinstance(tree, exp.Alias):
        return ["must not have an alias (AS ...): the feature's name is the transformation's name"]
    found = []
    known = {n.lower(): n for n in names or ()}
    others = {n.lower() for n in transformations}
    for column in _unique_columns(tree):
        name = column.name
        if column.table:
            found.append(
                f"refers to {column.sql(dialect=DIALECT)!r}: name request fields and features "
                "without a qualifier"
            )
        elif name.lower() in others:
            found.append(
                f"uses {name!r}, another request-time transformation; transformations can "
                "use only request fields and the service's features"
            )
        elif names is not None and name.lower() not in known:
            hint = problems.did_you_mean(name, sorted(known.values()))
            found.append(
                f"uses {name!r}, which is neither a request field (spec.requestData) nor a "
                f"feature of this service{hint}"
            )
    return found


def needed_columns(spec: v1alpha1.FeatureViewSpec) -> dict[str, str]:
    """The columns a view takes from its transformation's output, each with why."""
    needed = {e.name: "a join key" for e in spec.entities}
    batch = spec.source.batch
    if batch is not None:
        needed[batch.timestamp_field] = "the event time, spec.source.batch.timestampField"
        if batch.created_timestamp_field:
            needed[batch.created_timestamp_field] = (
                "the created time, spec.source.batch.createdTimestampField"
            )
    for feature in spec.features or ():
        needed.setdefault(feature.name, "a feature")
    for aggregation in spec.aggregations or ():
        needed.setdefault(aggregation.column, f"the column aggregated by {aggregation.name}")
    return needed


def check_transformations(objects: Iterable[schema.Parsed]) -> list[problems.Problem]:
    """The problems of every FeatureView's ``spec.transformation.sql``."""
    found = []
    for parsed in objects:
        resource = parsed.resource
        if not isinstance(resource, v1alpha1.FeatureView) or resource.spec.transformation is None:
            continue
        for message in check_query(resource.spec.transformation.sql, needed_columns(resource.spec)):
            found.append(
                problems.Problem.at(parsed.document, ("spec", "transformation", "sql"), message)
            )
    return found


def _check_tables(query: exp.Query) -> list[str]:
    ctes = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
    reads_source = False
    found = []
    for table in query.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # a table-valued function such as range(10)
        if table.db or table.catalog:
            name = ".".join(part.name for part in table.parts)
            found.append(
                f"reads table {name!r}: a transformation reads only FROM source, the view's "
                "spec.source"
            )
        elif table.name.lower() == SOURCE_TABLE:
            reads_source = True
        elif table.name.lower() not in ctes:
            found.append(
                f"reads table {table.name!r}: a transformation reads only FROM source, "
                "the view's spec.source"
            )
    if not reads_source and not found:
        found.append("does not read FROM source: select from the view's source rows")
    return found


def _check_outputs(query: exp.Query, needed: Mapping[str, str]) -> list[str]:
    outputs = {name.lower() for name in query.named_selects}
    if "*" in outputs or query.is_star:
        return []
    missing = [f"{name} ({why})" for name, why in needed.items() if name.lower() not in outputs]
    if not missing:
        return []
    them = "them" if len(missing) > 1 else "it"
    return [f"does not output {', '.join(missing)}: add {them} to the SELECT list"]


def _unique_columns(tree: exp.Expr) -> list[exp.Column]:
    seen: dict[str, exp.Column] = {}
    for column in tree.find_all(exp.Column):
        seen.setdefault(column.sql(dialect=DIALECT).lower(), column)
    return list(seen.values())


def _statement_name(statement: exp.Expr) -> str:
    """'an INSERT', 'a DROP', from the statement's first keyword."""
    if isinstance(statement, exp.Command):
        word = str(statement.this).upper()
    else:
        word = statement.key.upper()
    return f"{'an' if word[:1] in 'AEIOU' else 'a'} {word}"


def _parse_error(exc: sqlglot.errors.ParseError) -> str:
    """sqlglot's first error, in words, with its position and context; no colour codes."""
    if not exc.errors:
        return _ANSI.sub("", str(exc)).splitlines()[0]
    error = exc.errors[0]
    description = _ANSI.sub("", str(error.get("description") or ""))
    token = _ANSI.sub("", str(error.get("highlight") or ""))
    if description.startswith("Invalid expression / Unexpected token"):
        reason = f"unexpected {token!r}"
    elif description.startswith("Required keyword"):
        reason = f"something is missing near {token!r}" if token else "it is incomplete"
    else:
        # sqlglot names tokens by their repr; the end of input is its SENTINEL token.
        reason = re.sub(r"<Token token_type: TokenType\.SENTINEL[^>]*>", "the end", description)
        reason = re.sub(r"<Token [^>]*text: ([^,]*),[^>]*>", r"'\1'", reason)
        reason = reason[:1].lower() + reason[1:]
    context = " ".join(
        _ANSI.sub(
            "", f"{error.get('start_context', '')}{token}{error.get('end_context', '')}"
        ).split()
    )
    return f"{reason} at line {error.get('line')}, column {error.get('col')} (in {context!r})"
