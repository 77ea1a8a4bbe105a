"""The reference profile a view's drift is measured against: found, or computed once
and stored; does I/O.

``spec.monitoring.drift.reference`` names either

- a ``period``: the view's own offline rows with event times in [start, end). The
  first window that starts at or after the period's end computes its profile from
  the version's offline table and stores it in the version's reference table
  (:mod:`featurekube.monitoring.stats_store`) under the period's key and a
  fingerprint of what it covers; later windows read it back. A changed period, or
  changed features or types, gives another fingerprint, and the profile is computed
  again. Windows that start before the period ends get no drift.
- a ``trainingPull``: the profile a data scientist saved from a training pull under
  that name (:func:`save_training_reference`, through
  :meth:`featurekube.store.FeatureStore.save_reference`), in the reference table of
  each view version the pull read.

What cannot be found or computed is not an error: :func:`resolve` returns why, for
the window's report, and the window is published without drift.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from featurekube import errors, s3_prefixes
from featurekube.monitoring import drift, profiling, stats, stats_store
from featurekube.offline import layout
from featurekube.spec import v1alpha1
from featurekube.spec.v1alpha1 import monitoring as spec_monitoring

__all__ = [
    "MAX_REFERENCE_ROWS",
    "REFERENCE_NAME",
    "Resolution",
    "resolve",
    "save_training_reference",
]

MAX_REFERENCE_ROWS = 20_000_000
"""Rows a reference may hold: a longer period, or a larger training pull, is refused
(its quantiles are exact, so the values of a numeric feature are held in memory)."""
REFERENCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
"""A training pull's reference name: a DNS label (at most 63 characters), as
``spec.monitoring.drift.reference.trainingPull`` takes it."""


@dataclass(frozen=True)
class Resolution:
    """The profile a window is compared with, or why there is none."""

    profile: drift.ReferenceProfile | None = None
    note: str | None = None
    """Why drift is not computed, for the report; None when it is, or not asked for."""


def resolve(
    spec: v1alpha1.FeatureViewSpec,
    offline_uri: str | None,
    window_start: dt.datetime,
    *,
    storage_options: Mapping[str, str] | None = None,
    label: str = "view",
    now: dt.datetime | None = None,
) -> Resolution:
    """The reference profile of ``spec.monitoring.drift`` for a window starting at
    ``window_start``: stored, or (a period) computed and stored now. Raises only
    for I/O failures (:class:`~featurekube.errors.FeaturekubeError`, ``OSError``);
    the caller reports them and publishes the window anyway."""
    settings = spec.monitoring.drift
    if settings is None:
        return Resolution()
    reference = settings.reference
    words = drift.describe_reference(reference)
    if offline_uri is None:
        return Resolution(note=f"drift not computed: {words} needs the offline table")
    key = drift.reference_key(reference)
    store = stats_store.ReferenceStore(offline_uri, storage_options, label=label)
    stored = store.load(key)
    if reference.training_pull is not None:
        if stored is None:
            return Resolution(
                note=f"drift not computed: no training pull was saved as "
                f"{reference.training_pull!r} for this view version; save it with "
                f"FeatureStore.save_reference({reference.training_pull!r}, training)"
            )
        return Resolution(stored)
    period = reference.period
    assert period is not None
    types = _profiled_types(spec)
    fingerprint = drift.fingerprint(key, types)
    if stored is not None and stored.fingerprint == fingerprint:
        return Resolution(stored)
    if _utc(window_start) < _utc(period.end):
        return Resolution(
            note=f"drift not computed: the window starts before the end of {words}; "
            "windows from its end on are compared with it"
        )
    profile = _profile_period(
        offline_uri, storage_options, period, types, key, fingerprint, words, now
    )
    if isinstance(profile, str):
        return Resolution(note=profile)
    store.save(profile)
    return Resolution(profile)


def save_training_reference(
    name: str,
    table: pa.Table,
    columns: Sequence[profiling.Column],
    offline_uri: str,
    *,
    storage_options: Mapping[str, str] | None = None,
    view_label: str = "view",
    now: dt.datetime | None = None,
) -> drift.ReferenceProfile:
    """Profile ``columns`` of a training pull's ``table`` (each: column, the view's
    feature, its type) and store the profile as the training-pull reference ``name``
    of the view version whose offline table is ``offline_uri``, replacing one saved
    under that name before. Raises :class:`~featurekube.errors.DefinitionsError` for a
    bad name or too many rows, :class:`~featurekube.writer.errors.OfflineWriteError`
    when it cannot be stored."""
    if not REFERENCE_NAME.match(name) or len(name) > 63:
        raise errors.DefinitionsError(
            f"reference name {name!r} for {view_label}: expected a DNS label (lowercase "
            "letters, digits and '-', at most 63 characters), as "
            "spec.monitoring.drift.reference.trainingPull takes it"
        )
    if table.num_rows > MAX_REFERENCE_ROWS:
        raise errors.DefinitionsError(
            f"reference {name!r} for {view_label}: the training frame has {table.num_rows} "
            f"rows, more than {MAX_REFERENCE_ROWS}; save the reference of a sample of it"
        )
    key = f"trainingPull:{name}"
    types = {feature: type_ for _, feature, type_ in columns}
    import duckdb

    connection = duckdb.connect(config={"threads": 2})
    try:
        connection.register("__reference", table.select([c for c, _, _ in columns]))
        profile = profiling.profile(
            connection,
            "__reference",
            columns,
            key=key,
            fingerprint=drift.fingerprint(key, types),
            description=f"training pull {name!r}: {table.num_rows} rows",
            computed_at=_utc(now or dt.datetime.now(dt.UTC)),
        )
    finally:
        connection.close()
    stats_store.ReferenceStore(offline_uri, storage_options, label=view_label).save(profile)
    return profile


def _profiled_types(spec: v1alpha1.FeatureViewSpec) -> dict[str, str]:
    return {name: t for name, t in spec.feature_types().items() if stats.kind_of(t)}


def _profile_period(
    offline_uri: str,
    storage_options: Mapping[str, str] | None,
    period: spec_monitoring.ReferencePeriod,
    types: Mapping[str, str],
    key: str,
    fingerprint: str,
    words: str,
    now: dt.datetime | None,
) -> drift.ReferenceProfile | str:
    """The profile of the period's offline rows, or why there is none."""
    import deltalake
    import duckdb
    from deltalake.exceptions import TableNotFoundError

    uri = s3_prefixes.normalize(offline_uri)
    from featurekube.writer import offline as offline_writer

    try:
        table = deltalake.DeltaTable(
            uri, storage_options=offline_writer.storage_options_for(uri, storage_options)
        )
    except TableNotFoundError:
        return f"drift not computed: {words} has no offline rows yet"
    dataset = table.to_pyarrow_dataset()
    columns = [(name, name, t) for name, t in types.items() if name in dataset.schema.names]
    start = _utc(period.start).strftime("%Y-%m-%d %H:%M:%S.%f")
    end = _utc(period.end).strftime("%Y-%m-%d %H:%M:%S.%f")
    connection = duckdb.connect(config={"threads": 2})
    try:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("__offline", dataset)
        selected = ", ".join(_q(c) for c, _, _ in columns) or "1 AS one"
        connection.execute(
            f"CREATE TEMP VIEW __period AS SELECT {selected} FROM __offline "
            f"WHERE {layout.EVENT_TIMESTAMP} >= TIMESTAMPTZ '{start}+00' "
            f"AND {layout.EVENT_TIMESTAMP} < TIMESTAMPTZ '{end}+00'"
        )
        row = connection.execute("SELECT count(*) FROM __period").fetchone()
        rows = int(row[0]) if row else 0
        if rows == 0:
            return f"drift not computed: {words} has no offline rows yet"
        if rows > MAX_REFERENCE_ROWS:
            return (
                f"drift not computed: {words} holds {rows} rows, more than "
                f"{MAX_REFERENCE_ROWS}: choose a shorter period"
            )
        return profiling.profile(
            connection,
            "__period",
            columns,
            key=key,
            fingerprint=fingerprint,
            description=f"{words}: {rows} rows",
            computed_at=_utc(now or dt.datetime.now(dt.UTC)),
        )
    finally:
        connection.close()


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
