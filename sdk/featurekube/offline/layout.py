"""The columns of a view's offline Delta table; pure.

Join keys and features under their own names, then:

- ``event_timestamp``: when the values held (for aggregations, the step boundary t);
- ``created_timestamp``: the tie-break among rows with equal event times — the source's
  created-timestamp column when the view names one, else the ingestion time;
- ``latest_event_timestamp`` (aggregation views only): the entity's latest event at or
  before ``event_timestamp``, which the view's TTL counts from (docs/semantics.md);
- ``ingestion_timestamp``: when featurekube wrote the row;
- ``event_date``: the UTC date of ``event_timestamp``, the partition column.

Timestamps are microsecond precision, UTC (Arrow ``timestamp('us', tz='UTC')``).

An aggregation view's version also keeps its tiles — per-interval partial aggregates,
see :mod:`featurekube.materialize.tiles` — in a Delta table of their own under the
offline table's directory (:func:`tiles_uri`): a Delta reader of the offline table
never sees them (it reads only the files its log names), and they go with the version.
So do its per-window statistics (:func:`stats_uri`) and the drift reference profiles
its windows are compared with (:func:`references_uri`), see
:mod:`featurekube.monitoring`, and a streaming version's checkpoint and progress
(:func:`stream_uri`) and dead letters (:func:`dead_letters_uri`), see
:mod:`featurekube.materialize.stream_plan`.
"""

from __future__ import annotations

__all__ = [
    "CREATED_TIMESTAMP",
    "DEAD_LETTERS_DIRECTORY",
    "EVENT_DATE",
    "EVENT_TIMESTAMP",
    "INGESTION_TIMESTAMP",
    "LATEST_EVENT_TIMESTAMP",
    "REFERENCES_DIRECTORY",
    "RESERVED",
    "STATS_DIRECTORY",
    "STREAM_DIRECTORY",
    "TILES_DIRECTORY",
    "dead_letters_uri",
    "references_uri",
    "stats_uri",
    "stream_uri",
    "table_uri",
    "tiles_uri",
    "view_directory",
]

EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"
INGESTION_TIMESTAMP = "ingestion_timestamp"
LATEST_EVENT_TIMESTAMP = "latest_event_timestamp"
EVENT_DATE = "event_date"
RESERVED = frozenset(
    {EVENT_TIMESTAMP, CREATED_TIMESTAMP, INGESTION_TIMESTAMP, LATEST_EVENT_TIMESTAMP, EVENT_DATE}
)
"""Column names no join key or feature may take."""
TILES_DIRECTORY = "_tiles"
"""Where a version's tiles live, under its offline table."""
STATS_DIRECTORY = "_stats"
"""Where a version's per-window statistics live, under its offline table."""
REFERENCES_DIRECTORY = "_references"
"""Where a version's drift reference profiles live, under its offline table."""
STREAM_DIRECTORY = "_stream"
"""Where a version's stream keeps its checkpoint and progress, under its offline table."""
DEAD_LETTERS_DIRECTORY = "_dead_letters"
"""Where a version's dead letters live, under its offline table (a Delta table)."""


def view_directory(root: str, namespace: str, view: str) -> str:
    """``<root>/<namespace>/<view>``: where every version of a view's table lives."""
    return f"{root.rstrip('/')}/{namespace}/{view}"


def table_uri(root: str, namespace: str, view: str, version: int) -> str:
    """``<root>/<namespace>/<view>/v<version>``: one version's Delta table.

    >>> table_uri("s3://lake/offline/", "rides", "driver-trip-stats", 2)
    's3://lake/offline/rides/driver-trip-stats/v2'
    """
    return f"{view_directory(root, namespace, view)}/v{version}"


def tiles_uri(offline_uri: str) -> str:
    """The tile table of the view version whose offline table is ``offline_uri``.

    >>> tiles_uri("s3://lake/offline/rides/driver-trip-stats/v2")
    's3://lake/offline/rides/driver-trip-stats/v2/_tiles'
    """
    return f"{offline_uri.rstrip('/')}/{TILES_DIRECTORY}"


def stats_uri(offline_uri: str) -> str:
    """The statistics table of the view version whose offline table is ``offline_uri``.

    >>> stats_uri("s3://lake/offline/rides/driver-trip-stats/v2/")
    's3://lake/offline/rides/driver-trip-stats/v2/_stats'
    """
    return f"{offline_uri.rstrip('/')}/{STATS_DIRECTORY}"


def references_uri(offline_uri: str) -> str:
    """The drift reference profiles of the view version whose offline table is
    ``offline_uri``.

    >>> references_uri("s3://lake/offline/rides/driver-trip-stats/v2")
    's3://lake/offline/rides/driver-trip-stats/v2/_references'
    """
    return f"{offline_uri.rstrip('/')}/{REFERENCES_DIRECTORY}"


def stream_uri(offline_uri: str) -> str:
    """The directory of the stream of the view version whose offline table is
    ``offline_uri``: its checkpoint and its progress.

    >>> stream_uri("s3://lake/offline/rides/driver-trips/v2")
    's3://lake/offline/rides/driver-trips/v2/_stream'
    """
    return f"{offline_uri.rstrip('/')}/{STREAM_DIRECTORY}"


def dead_letters_uri(offline_uri: str) -> str:
    """The dead-letter table of the view version whose offline table is ``offline_uri``.

    >>> dead_letters_uri("s3://lake/offline/rides/driver-trips/v2/")
    's3://lake/offline/rides/driver-trips/v2/_dead_letters'
    """
    return f"{offline_uri.rstrip('/')}/{DEAD_LETTERS_DIRECTORY}"
