"""A view version's per-window statistics, read from its ``<offline_uri>/_stats`` table;
does I/O (S3).

The table is written by :mod:`featurekube.monitoring.stats_store` as windows are
materialized; this module only reads it, through that module's
``read_statistics``, imported when first needed. A view without an offline table, a
version whose table does not exist yet, or an installation without that module all
give "no statistics yet"; any other failure is said on the page, not raised.
:func:`rows_from_records` (pure) turns the table's rows into page rows.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Iterable, Mapping
from typing import Any

from featurekube import errors, s3_prefixes
from featurekube.catalog import model
from featurekube.spec import v1alpha1

__all__ = ["MAX_WINDOWS", "NO_STATISTICS", "READ_SPAN", "read", "rows_from_records"]

MAX_WINDOWS = 48
"""The most recent windows shown per view."""
NO_STATISTICS = "no statistics yet"
READ_SPAN = dt.timedelta(days=92)
"""How far before the view's last materialized window statistics are read: enough for
MAX_WINDOWS of a daily schedule, and a bound on what an hourly one reads."""
_STATS_MODULE = "featurekube.monitoring.stats_store"
_MEDIAN = 10
"""Index of p50 among the 21 quantiles p0, p5, ..., p100."""


def read(
    view: v1alpha1.FeatureView, storage_options: Mapping[str, str] | None = None
) -> model.Statistics:
    """The statistics of ``view``'s current version (its ``status.offlineUri``)."""
    uri = view.status.offline_uri if view.status else None
    if not uri:
        return model.Statistics(missing=f"{NO_STATISTICS}: the view has no offline table yet")
    try:
        store = importlib.import_module(_STATS_MODULE)
    except ImportError:
        return model.Statistics(missing=NO_STATISTICS)
    import deltalake.exceptions

    window = view.status.last_materialized_window if view.status else None
    latest = window.end if window is not None else dt.datetime.now(dt.UTC)
    try:
        table = store.read_statistics(
            s3_prefixes.normalize(uri),
            storage_options=dict(storage_options or {}),
            since=latest - READ_SPAN,
        )
    except deltalake.exceptions.TableNotFoundError:
        return model.Statistics(missing=NO_STATISTICS)
    except (errors.FeaturekubeError, deltalake.exceptions.DeltaError, OSError) as exc:
        if "not found" in str(exc).lower() or "no files" in str(exc).lower():
            return model.Statistics(missing=NO_STATISTICS)
        first = str(exc).split("\n", 1)[0]
        return model.Statistics(missing=f"statistics unavailable: {first}")
    if table is None or table.num_rows == 0:
        return model.Statistics(missing=NO_STATISTICS)
    return model.Statistics(rows=rows_from_records(table.to_pylist()))


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
    return dt.datetime.fromtimestamp(0, dt.UTC)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def rows_from_records(
    records: Iterable[Mapping[str, Any]], max_windows: int = MAX_WINDOWS
) -> tuple[model.StatisticsRow, ...]:
    """Page rows from the table's records (columns of the ``_stats`` schema), those of
    the latest ``max_windows`` windows, oldest first; a window written twice counts once,
    its latest write.

    >>> import datetime as dt
    >>> start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> record = {"window_start": start, "window_end": start, "feature": "rating",
    ...     "type": "float64", "count": 10, "nulls": 1, "min": 1.0, "max": 5.0, "mean": 4.2,
    ...     "stddev": 0.3, "quantiles": [float(i) for i in range(21)], "top_values": None,
    ...     "psi": 0.05, "written_at": start}
    >>> rows_from_records([record])[0].median
    10.0
    """
    latest: dict[tuple[dt.datetime, str], Mapping[str, Any]] = {}
    for record in records:
        key = (_utc(record.get("window_start")), str(record.get("feature")))
        kept = latest.get(key)
        if kept is None or _utc(record.get("written_at")) >= _utc(kept.get("written_at")):
            latest[key] = record
    windows = sorted({start for start, _ in latest})[-max_windows:]
    chosen = set(windows)
    rows = []
    for (start, feature), record in sorted(latest.items()):
        if start not in chosen:
            continue
        quantiles = record.get("quantiles") or []
        top = record.get("top_values") or []
        rows.append(
            model.StatisticsRow(
                window_start=start,
                window_end=_utc(record.get("window_end")),
                feature=feature,
                type=str(record.get("type") or ""),
                count=int(record.get("count") or 0),
                nulls=int(record.get("nulls") or 0),
                min=_float(record.get("min")),
                max=_float(record.get("max")),
                mean=_float(record.get("mean")),
                stddev=_float(record.get("stddev")),
                median=_float(quantiles[_MEDIAN]) if len(quantiles) > _MEDIAN else None,
                top_values=tuple(
                    (str(t.get("value")), int(t.get("count") or 0))
                    for t in top[:10]
                    if isinstance(t, Mapping)
                ),
                psi=_float(record.get("psi")),
            )
        )
    return tuple(rows)
