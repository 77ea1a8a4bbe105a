"""Statistics and reference profiles computed with DuckDB over a registered relation;
no I/O of its own (the caller registers Arrow data or a dataset).

:func:`window_statistics` is the python engine's (Spark's job computes the same with
the same definitions, :mod:`featurekube.materialize.spark_job`); :func:`profile` makes
a reference profile, for both engines, from a period of a view's offline rows or from
a training pull. Each takes one aggregate query over the relation, and one grouped
query for the top values of categorical features.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from featurekube.monitoring import drift, stats

__all__ = [
    "Column",
    "ColumnValues",
    "exact_moments",
    "exact_summary",
    "profile",
    "window_statistics",
]

Column = tuple[str, str, str]
"""A column to describe: (column name in the relation, feature name, value type)."""


class ColumnValues(Protocol):
    """The relation's rows, one column at a time: a ``pa.Table``, or a reader that
    fetches only the column asked for, so a large window is never held whole."""

    def column(self, name: str) -> pa.ChunkedArray: ...


def window_statistics(
    connection: duckdb.DuckDBPyConnection,
    relation: str,
    columns: Sequence[Column],
    reference: drift.ReferenceProfile | None = None,
    *,
    values: ColumnValues | None = None,
) -> list[stats.FeatureStatistics]:
    """Each column's statistics over ``relation``, with its PSI against ``reference``
    when that profiles the feature. ``values``: the relation's columns as Arrow, from
    which means, deviations and quantiles are computed the same whatever order the
    rows come in, from one sort of each numeric column, one column at a time
    (:func:`exact_summary`); None: DuckDB's floating-point sums and quantiles, every
    column's values held at once."""
    exprs: list[str] = []
    for column, feature, type_ in columns:
        c = _q(column)
        exprs += [f"count({c})", f"count(*) FILTER (WHERE {c} IS NULL)"]
        if stats.kind_of(type_) == "numeric":
            exprs += [f"CAST(min({c}) AS DOUBLE)", f"CAST(max({c}) AS DOUBLE)"]
            if values is None:
                levels = ", ".join(_double(level) for level in stats.PROBE_LEVELS)
                exprs += [
                    f"avg(CAST({c} AS DOUBLE))",
                    f"stddev_samp(CAST({c} AS DOUBLE))",
                    f"CAST(quantile_disc({c}, [{levels}]) AS DOUBLE[])",
                ]
        exprs += _bin_counts(c, _profile_of(reference, feature, type_))
    found = _one_row(connection, f"SELECT {', '.join(exprs) or '1'} FROM {relation}")
    top = _top_values(connection, relation, columns)
    cells = iter(found)
    out = []
    for column, feature, type_ in columns:
        count, nulls = int(next(cells)), int(next(cells))
        numbers: list[Any] = [None] * 5
        if stats.kind_of(type_) == "numeric":
            numbers = [next(cells) for _ in range(2 if values is not None else 5)]
        feature_profile = _profile_of(reference, feature, type_)
        psi = None
        if feature_profile is not None:
            categorical = feature_profile.kind == "categorical"
            bins = [int(next(cells)) for _ in range(len(feature_profile.fractions) - categorical)]
            if categorical:
                bins.append(count - sum(bins))
            psi = drift.psi(feature_profile.fractions, bins)
        if values is not None and stats.kind_of(type_) == "numeric":
            numbers[2:] = exact_summary(values.column(column)) if count else [None] * 3
        out.append(
            stats.FeatureStatistics(
                feature=feature,
                type=type_,
                count=count,
                nulls=nulls,
                min=numbers[0],
                max=numbers[1],
                mean=numbers[2],
                stddev=numbers[3],
                quantiles=numbers[4],
                top_values=top.get(column) if stats.kind_of(type_) == "categorical" else None,
                psi=psi,
            )
        )
    return out


def profile(
    connection: duckdb.DuckDBPyConnection,
    relation: str,
    columns: Sequence[Column],
    *,
    key: str,
    fingerprint: str,
    description: str,
    computed_at: dt.datetime,
) -> drift.ReferenceProfile:
    """The reference profile of ``relation``'s columns: numeric ones binned at their
    deciles, categorical ones by their top values. A column without a value is left
    out (a window's PSI for it is then null)."""
    numeric = [c for c in columns if stats.kind_of(c[2]) == "numeric"]
    features: dict[str, drift.FeatureProfile] = {}
    if numeric:
        levels = ", ".join(_double(level) for level in drift.DECILE_LEVELS)
        exprs = []
        for column, _, _ in numeric:
            c = _q(column)
            finite = f"NOT isnan(CAST({c} AS DOUBLE))"
            exprs += [
                f"count({c}) FILTER (WHERE {finite})",
                f"CAST(quantile_disc({c}, [{levels}]) FILTER (WHERE {finite}) AS DOUBLE[])",
            ]
        found = iter(_one_row(connection, f"SELECT {', '.join(exprs)} FROM {relation}"))
        edges: dict[str, tuple[float, ...]] = {}
        for column, _, _ in numeric:
            count, deciles = int(next(found)), next(found)
            if count:
                edges[column] = drift.cut_points(deciles)
        binned = [c for c in numeric if c[0] in edges]
        if binned:
            exprs = []
            for column, feature, type_ in binned:
                partial = drift.FeatureProfile(
                    feature, type_, "numeric", 0, (0.0,) * (len(edges[column]) + 1), edges[column]
                )
                exprs += _bin_counts(_q(column), partial, last=True)
            found = iter(_one_row(connection, f"SELECT {', '.join(exprs)} FROM {relation}"))
            for column, feature, type_ in binned:
                counts = [int(next(found)) for _ in range(len(edges[column]) + 1)]
                total = sum(counts)
                features[feature] = drift.FeatureProfile(
                    feature,
                    type_,
                    "numeric",
                    total,
                    tuple(n / total for n in counts),
                    edges=edges[column],
                )
    categorical = [c for c in columns if stats.kind_of(c[2]) == "categorical"]
    if categorical:
        exprs = [f"count({_q(column)})" for column, _, _ in categorical]
        totals = _one_row(connection, f"SELECT {', '.join(exprs)} FROM {relation}")
        top = _top_values(connection, relation, categorical)
        for (column, feature, type_), total in zip(categorical, totals, strict=True):
            if not total:
                continue
            # A value too long to keep goes to the "other" bin, here and in windows.
            kept = [(v, n) for v, n in top.get(column, []) if len(v) <= stats.MAX_VALUE_LENGTH]
            shares = [n / total for _, n in kept]
            features[feature] = drift.FeatureProfile(
                feature,
                type_,
                "categorical",
                int(total),
                (*shares, max(0.0, (total - sum(n for _, n in kept)) / total)),
                values=tuple(v for v, _ in kept),
            )
    return drift.ReferenceProfile(key, fingerprint, description, computed_at, features)


def exact_summary(
    column: pa.ChunkedArray | pa.Array,
) -> tuple[float | None, float | None, list[float] | None]:
    """The mean, sample standard deviation and the quantiles p0, p5, ..., p100 (nearest
    rank, NaN above every number) of a numeric column's non-null values, from one sort
    of them: :func:`exact_moments`' figures, and the values DuckDB's ``quantile_disc``
    gives at :data:`~featurekube.monitoring.stats.PROBE_LEVELS` (the ranks of
    :func:`~featurekube.monitoring.stats.nearest_rank`; where a rank falls among zeros
    of both signs, either engine may give either)."""
    ordered = _sorted_values(column)
    if ordered.size == 0:
        return None, None, None
    ranks = [stats.nearest_rank(ordered.size, percent) - 1 for percent in stats.PERCENTS]
    quantiles = [float(value) for value in ordered[ranks]]
    return (*_moments_of_sorted(ordered), quantiles)


def exact_moments(column: pa.ChunkedArray | pa.Array) -> tuple[float | None, float | None]:
    """The mean and sample standard deviation (n - 1; None below two values) of a
    numeric column's non-null values, summed in ascending order of the values
    (numpy's pairwise sums), so that the result depends on the values only, never on
    the order the rows come in: ``sum(x) / n``, then ``sqrt(sum((x - mean)²) / (n - 1))``.
    A NaN, or infinities of both signs, give NaN; an infinity of one sign gives it as
    the mean and NaN as the deviation.

    >>> exact_moments(pa.array([1.0, 2.0, None, 3.0, 4.0]))
    (2.5, 1.2909944487358056)
    """
    return _moments_of_sorted(_sorted_values(column))


def _sorted_values(column: pa.ChunkedArray | pa.Array) -> Any:
    """The non-null values of ``column`` as float64, ascending (NaN last): copied into
    one array a chunk at a time and sorted in its place, so that beside ``column`` only
    8 bytes a value are held (the whole column's copies to drop nulls, to join chunks
    and to sort took three times that)."""
    import numpy as np

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    ordered = np.empty(len(column) - column.null_count, np.float64)
    at = 0
    for chunk in chunks:
        part = chunk.drop_null().to_numpy(zero_copy_only=False)
        ordered[at : at + len(part)] = part
        at += len(part)
    ordered.sort()
    return ordered


def _moments_of_sorted(data: Any) -> tuple[float | None, float | None]:
    """:func:`exact_moments` of ``data``, sorted; squares the deviations in its place
    (no copy of a large window's column: the same figures to the last bit)."""
    import numpy as np

    n = data.size
    if n == 0:
        return None, None
    with np.errstate(invalid="ignore", over="ignore"):
        mean = float(np.sum(data) / n)
        if n < 2:
            return mean, None
        if not math.isfinite(mean):
            return mean, math.nan
        np.subtract(data, mean, out=data)
        np.square(data, out=data)
        return mean, math.sqrt(float(np.sum(data)) / (n - 1))


def _profile_of(
    reference: drift.ReferenceProfile | None, feature: str, type_: str
) -> drift.FeatureProfile | None:
    """The feature's profile in ``reference``, if it was made for the same type."""
    if reference is None:
        return None
    found = reference.features.get(feature)
    return found if found is not None and found.type == type_ else None


def _bin_counts(c: str, profile: drift.FeatureProfile | None, *, last: bool = False) -> list[str]:
    """Counts of a column's values per bin of ``profile``; for a categorical one, all
    bins but "other" (the caller knows the total), unless ``last``."""
    if profile is None:
        return []
    if profile.kind == "categorical":
        text = f"CAST({c} AS VARCHAR)"
        return [f"count(*) FILTER (WHERE {text} = {_literal(v)})" for v in profile.values]
    number = f"CAST({c} AS DOUBLE)"
    bounds = [_double(e) for e in profile.edges]
    out = []
    for index in range(len(bounds) + 1):
        conditions = []
        if index > 0:
            conditions.append(f"{number} > {bounds[index - 1]}")
        if index < len(bounds):
            conditions.append(f"{number} <= {bounds[index]}")
        else:
            conditions.append(f"NOT isnan({number})")
        out.append(f"count(*) FILTER (WHERE {' AND '.join(conditions)})")
    return out


def _top_values(
    connection: duckdb.DuckDBPyConnection, relation: str, columns: Sequence[Column]
) -> dict[str, list[tuple[str, int]]]:
    """Each categorical column's most frequent values, in one query."""
    parts = [
        f"SELECT {_literal(column)} AS col, CAST({_q(column)} AS VARCHAR) AS value, "
        f"count(*) AS n FROM {relation} WHERE {_q(column)} IS NOT NULL GROUP BY 2"
        for column, _, type_ in columns
        if stats.kind_of(type_) == "categorical"
    ]
    if not parts:
        return {}
    sql = (
        f"SELECT col, value, n FROM ({' UNION ALL '.join(parts)}) "
        f"QUALIFY row_number() OVER (PARTITION BY col ORDER BY n DESC, value) "
        f"<= {stats.TOP_VALUES} ORDER BY col, n DESC, value"
    )
    out: dict[str, list[tuple[str, int]]] = {c: [] for c, _, t in columns if stats.kind_of(t)}
    for column, value, n in connection.execute(sql).fetchall():
        out[column].append((value, int(n)))
    return {column: stats.rank_top_values(dict(found)) for column, found in out.items()}


def _one_row(connection: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    # fetchall: the result finished, so the connection can take the next query.
    (row,) = connection.execute(sql).fetchall()
    return tuple(row)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _double(value: float) -> str:
    # From text: DuckDB parses a decimal literal as DECIMAL, whose conversion may round.
    return f"CAST({_literal(repr(float(value)))} AS DOUBLE)"
