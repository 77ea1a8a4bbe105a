"""The ``featurekube.dev/backfill`` annotation: windows of a FeatureView to run again;
pure.

Its value is one or more ISO 8601 intervals ``<start>/<end>`` (half-open, UTC when no
zone is given) separated by commas, optionally followed by ``#`` and a note::

    featurekube.dev/backfill: "2026-03-01T00:00:00Z/2026-03-08T00:00:00Z # late trips"

The operator acts on each distinct value once: applying the same value again (Argo CD
syncing, say) re-runs nothing, and a new value (another range, or the same range with
another note) is a new request. ``featurekube backfill`` writes it with the time of the
request as its note, so every command is a new request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

__all__ = ["ANNOTATION", "BackfillRequest", "format_request", "parse_request", "parse_time"]

ANNOTATION = "featurekube.dev/backfill"
MAX_LENGTH = 1024
"""Characters of an annotation value the operator accepts."""


@dataclass(frozen=True)
class BackfillRequest:
    """A parsed request: the spans to run again, and the request's id."""

    spans: tuple[tuple[dt.datetime, dt.datetime], ...]
    id: str
    """A short hash of the whole value: runs of this request carry it."""


def parse_time(text: str, where: str = "time") -> dt.datetime:
    """An ISO 8601 instant or date in UTC (naive: UTC); ValueError naming ``where``."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{where}: {text.strip()!r} is not an ISO 8601 time, e.g. 2026-03-01T00:00:00Z"
        ) from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def parse_request(text: str) -> BackfillRequest:
    """The spans of an annotation value; ValueError saying what is wrong otherwise.

    >>> parse_request("2026-01-01/2026-01-02 # again").spans[0][1].isoformat()
    '2026-01-02T00:00:00+00:00'
    """
    where = f"annotation {ANNOTATION}"
    if len(text) > MAX_LENGTH:
        raise ValueError(f"{where}: longer than {MAX_LENGTH} characters")
    intervals = text.split("#", 1)[0].strip()
    if not intervals:
        raise ValueError(f"{where}: no interval; write <start>/<end>, e.g. 2026-03-01/2026-03-08")
    spans = []
    for interval in intervals.split(","):
        if interval.count("/") != 1:
            raise ValueError(
                f"{where}: {interval.strip()!r} is not an interval <start>/<end>, "
                "e.g. 2026-03-01T00:00:00Z/2026-03-08T00:00:00Z"
            )
        start_text, end_text = interval.split("/")
        start, end = parse_time(start_text, where), parse_time(end_text, where)
        if end <= start:
            raise ValueError(f"{where}: {interval.strip()!r} ends before it starts")
        spans.append((start, end))
    return BackfillRequest(tuple(spans), hashlib.sha256(text.encode()).hexdigest()[:8])


def format_request(start: dt.datetime, end: dt.datetime, note: str = "") -> str:
    """The annotation value asking to run [start, end) again.

    >>> format_request(dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    ...                dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "2026-01-05T10:00:00Z")
    '2026-01-01T00:00:00Z/2026-01-02T00:00:00Z # 2026-01-05T10:00:00Z'
    """

    def iso(moment: dt.datetime) -> str:
        utc = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
        return utc.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")

    value = f"{iso(start)}/{iso(end)}"
    return f"{value} # {note}" if note else value
