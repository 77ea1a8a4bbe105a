"""A view version's statistics and reference tables, read and written with delta-rs;
does I/O.

Both are Delta tables under the version's offline table (:mod:`featurekube.offline.layout`),
so they go with the version, and a Delta reader of the offline table never sees them:

- ``_stats`` (:func:`~featurekube.offline.layout.stats_uri`): one row per
  (``window_start``, ``feature``), in :data:`featurekube.monitoring.stats.STATS_SCHEMA`.
  A window's rows are replaced in one commit, so a re-run leaves no duplicates.
- ``_references`` (:func:`~featurekube.offline.layout.references_uri`): one row per
  (``reference``, ``feature``) of :data:`REFERENCES_SCHEMA`, the profiles drift is
  measured against (:mod:`featurekube.monitoring.drift`); a reference's rows are
  replaced in one commit.

Commits that conflict with a concurrent one (two windows of a backfill) are retried,
as the tile table's are (:mod:`featurekube.materialize.tile_store`). S3 is reached with
the standard AWS settings of the environment, plus ``storage_options``.

:func:`read_statistics` is the public reader (the catalog's, and anyone's)::

    from featurekube.monitoring import stats_store
    table = stats_store.read_statistics(
        "s3://lake/offline/rides/driver-profile/v3",
        since=datetime(2026, 1, 1, tzinfo=UTC), features=["rating"],
    )
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featurekube import errors, s3_prefixes
from featurekube.monitoring import drift, stats
from featurekube.offline import layout
from featurekube.writer import offline as offline_writer
from featurekube.writer.errors import OfflineWriteError

__all__ = [
    "MAX_READ_FEATURES",
    "REFERENCES_SCHEMA",
    "ReferenceStore",
    "StatsStore",
    "read_statistics",
]

log = logging.getLogger(__name__)

MAX_READ_FEATURES = 256
"""Features :func:`read_statistics` may be asked for at once (a view's most)."""
_CONFLICTS = ("CommitFailedError", "ConcurrentAppend", "ConcurrentDelete", "conflict")
_TIMESTAMP = pa.timestamp("us", tz="UTC")

REFERENCES_SCHEMA = pa.schema(
    [
        pa.field("reference", pa.string(), nullable=False),
        pa.field("fingerprint", pa.string(), nullable=False),
        pa.field("description", pa.string()),
        pa.field("computed_at", _TIMESTAMP, nullable=False),
        pa.field("feature", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("edges", pa.list_(pa.float64())),
        pa.field("values", pa.list_(pa.string())),
        pa.field("fractions", pa.list_(pa.float64()), nullable=False),
    ]
)
"""The columns of a version's reference table: one row per (reference, feature)."""


class StatsStore:
    """One view version's statistics table."""

    def __init__(
        self,
        offline_uri: str,
        storage_options: Mapping[str, str] | None = None,
        *,
        label: str = "statistics",
        max_commit_attempts: int = 6,
    ) -> None:
        self.uri = s3_prefixes.normalize(layout.stats_uri(offline_uri))
        self.label = label
        self.max_commit_attempts = max_commit_attempts
        self._options = offline_writer.storage_options_for(self.uri, storage_options)

    def replace_window(self, rows: pa.Table, window_start: dt.datetime) -> None:
        """Replace the window's rows by ``rows`` (in :data:`~stats.STATS_SCHEMA`), in
        one commit. Raises :class:`~featurekube.writer.errors.OfflineWriteError`."""
        predicate = f"window_start = '{_iso(window_start)}'"
        _replace(
            self.uri,
            rows.cast(stats.STATS_SCHEMA),
            predicate,
            self._options,
            what=f"{self.label}: writing the statistics table",
            attempts=self.max_commit_attempts,
        )


class ReferenceStore:
    """One view version's reference profiles."""

    def __init__(
        self,
        offline_uri: str,
        storage_options: Mapping[str, str] | None = None,
        *,
        label: str = "references",
        max_commit_attempts: int = 6,
    ) -> None:
        self.uri = s3_prefixes.normalize(layout.references_uri(offline_uri))
        self.label = label
        self.max_commit_attempts = max_commit_attempts
        self._options = offline_writer.storage_options_for(self.uri, storage_options)

    def load(self, key: str) -> drift.ReferenceProfile | None:
        """The profile stored under ``key`` (:func:`drift.reference_key`), or None."""
        table = _open(self.uri, self._options)
        if table is None:
            return None
        rows = table.to_pyarrow_dataset().to_table(filter=pc.field("reference") == key)
        if rows.num_rows == 0:
            return None
        return _profile_of(rows.to_pylist())

    def save(self, profile: drift.ReferenceProfile) -> None:
        """Store ``profile``, replacing whatever was stored under its key, in one
        commit. Raises :class:`~featurekube.writer.errors.OfflineWriteError`."""
        rows = [
            {
                "reference": profile.key,
                "fingerprint": profile.fingerprint,
                "description": profile.description,
                "computed_at": profile.computed_at,
                "feature": f.feature,
                "type": f.type,
                "kind": f.kind,
                "count": f.count,
                "edges": list(f.edges) if f.kind == "numeric" else None,
                "values": list(f.values) if f.kind == "categorical" else None,
                "fractions": list(f.fractions),
            }
            for f in profile.features.values()
        ]
        if not rows:
            # A marker row, so that a reference without values is not computed again.
            rows.append(_empty_marker(profile))
        _replace(
            self.uri,
            pa.Table.from_pylist(rows, schema=REFERENCES_SCHEMA),
            f"reference = {_sql_text(profile.key)}",
            self._options,
            what=f"{self.label}: writing the reference table",
            attempts=self.max_commit_attempts,
        )


def read_statistics(
    offline_uri: str,
    *,
    storage_options: Mapping[str, str] | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    features: Sequence[str] | None = None,
) -> pa.Table:
    """The statistics of a view version's windows: the rows of its ``_stats`` table
    (columns of :data:`featurekube.monitoring.stats.STATS_SCHEMA`) whose
    ``window_start`` is in [``since``, ``until``) (either unbounded when None; a naive
    datetime is UTC), of ``features`` (None: all), ordered by window start then
    feature. ``offline_uri`` is the version's offline table (``status.offlineUri``).
    An empty table when nothing was written yet.

    Raises :class:`~featurekube.errors.OfflineStoreError` when the table cannot be
    read, ``ValueError`` for more than :data:`MAX_READ_FEATURES` features.
    """
    if features is not None and len(features) > MAX_READ_FEATURES:
        raise ValueError(
            f"read_statistics: {len(features)} features asked for; at most "
            f"{MAX_READ_FEATURES} at once"
        )
    uri = s3_prefixes.normalize(layout.stats_uri(offline_uri))
    try:
        table = _open(uri, offline_writer.storage_options_for(uri, storage_options))
        if table is None:
            return stats.STATS_SCHEMA.empty_table()
        condition = None
        if since is not None:
            condition = pc.field("window_start") >= pa.scalar(_utc(since), _TIMESTAMP)
        if until is not None:
            term = pc.field("window_start") < pa.scalar(_utc(until), _TIMESTAMP)
            condition = term if condition is None else condition & term
        if features is not None:
            term = pc.field("feature").isin(pa.array(list(features), pa.string()))
            condition = term if condition is None else condition & term
        rows = table.to_pyarrow_dataset().to_table(filter=condition)
    except (OSError, pa.ArrowException) as exc:
        raise errors.OfflineStoreError(
            f"the statistics table {uri} could not be read: {exc}. Check the URI (a view "
            "version's status.offlineUri) and that S3 is reachable"
        ) from exc
    rows = rows.select(stats.STATS_SCHEMA.names).cast(stats.STATS_SCHEMA)
    return rows.sort_by([("window_start", "ascending"), ("feature", "ascending")])


def _open(uri: str, options: Mapping[str, str]) -> Any:
    """The Delta table at ``uri``, or None when there is none."""
    import deltalake
    from deltalake.exceptions import TableNotFoundError

    try:
        return deltalake.DeltaTable(uri, storage_options=dict(options))
    except TableNotFoundError:
        return None


def _replace(
    uri: str,
    data: pa.Table,
    predicate: str,
    options: Mapping[str, str],
    *,
    what: str,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Delete the rows ``predicate`` selects and add ``data``, in one commit (the
    first write creates the table); retried when it conflicts with another commit."""
    import deltalake

    for attempt in range(1, attempts + 1):
        target = _open(uri, options)
        try:
            if target is None:
                deltalake.write_deltalake(uri, data, mode="append", storage_options=dict(options))
            else:
                deltalake.write_deltalake(
                    target,
                    data,
                    mode="overwrite",
                    predicate=predicate,
                    storage_options=dict(options),
                )
            return
        except Exception as exc:
            text = f"{type(exc).__name__} {exc}"
            if not any(name in text for name in _CONFLICTS) or attempt == attempts:
                raise OfflineWriteError(
                    f"{what} {uri} failed: {type(exc).__name__}: {str(exc).strip()[:2000]}"
                ) from exc
            log.info("%s: commit to %s conflicted, retrying: %s", what, uri, exc)
            sleep(random.uniform(0.1, 0.5 * attempt))


def _profile_of(rows: list[dict[str, Any]]) -> drift.ReferenceProfile:
    first = rows[0]
    features = {
        row["feature"]: drift.FeatureProfile(
            feature=row["feature"],
            type=row["type"],
            kind=row["kind"],
            count=int(row["count"]),
            fractions=tuple(row["fractions"]),
            edges=tuple(row["edges"] or ()),
            values=tuple(row["values"] or ()),
        )
        for row in rows
        if row["kind"] in ("numeric", "categorical")
    }
    return drift.ReferenceProfile(
        key=first["reference"],
        fingerprint=first["fingerprint"],
        description=first["description"] or "",
        computed_at=first["computed_at"],
        features=features,
    )


def _empty_marker(profile: drift.ReferenceProfile) -> dict[str, Any]:
    return {
        "reference": profile.key,
        "fingerprint": profile.fingerprint,
        "description": profile.description,
        "computed_at": profile.computed_at,
        "feature": "",
        "type": "",
        "kind": "none",
        "count": 0,
        "edges": None,
        "values": None,
        "fractions": [],
    }


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
