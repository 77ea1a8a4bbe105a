"""Which versions of a view are used, which are retired, and when a retired version's
data goes; pure.

A version is in use while it is the view's latest (its spec's), its serving one, or
pinned by a FeatureService in any namespace. Once none of these holds, the view's
status records since when (``status.retiredVersions``), so that the retention period
counts from the first reconcile that saw it unused, across operator restarts. With
``deletionPolicy: Delete``, a version retired for at least the retention period has
its online table and offline Delta data deleted, once; with ``Retain`` it is only
recorded. A version used again (pinned anew) leaves the record, and is never deleted
while in use: the decision never names one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from featurekube_operator import runs

__all__ = [
    "MAX_RECORDS",
    "Retention",
    "Retired",
    "decide",
    "retired_from_status",
    "retired_to_status",
]

MAX_RECORDS = 64
"""Retired versions the status remembers; beyond it the oldest deleted ones are
forgotten (a forgotten one retires again, and its second deletion finds nothing)."""


@dataclass(frozen=True)
class Retired:
    """A version nothing uses: since when, and whether its data is gone."""

    version: int
    since: dt.datetime
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "version": self.version,
            "since": self.since.isoformat().replace("+00:00", "Z"),
        }
        if self.deleted:
            body["deleted"] = True
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Retired:
        since = runs.parse_time(body.get("since"))
        assert since is not None
        return cls(int(body["version"]), since, bool(body.get("deleted")))


def retired_from_status(status: Mapping[str, Any]) -> list[Retired]:
    """The retired versions a view's status records; unreadable entries are skipped
    (they retire again, from now)."""
    found = []
    for item in status.get("retiredVersions") or ():
        try:
            found.append(Retired.from_json(item))
        except (KeyError, TypeError, ValueError, AssertionError):
            continue
    return found


def retired_to_status(records: Iterable[Retired]) -> list[dict[str, Any]]:
    """``status.retiredVersions`` holding ``records``, by version."""
    return [r.to_json() for r in sorted(records, key=lambda r: r.version)]


@dataclass(frozen=True)
class Retention:
    """The record to write, and the versions whose data to delete now."""

    retired: tuple[Retired, ...]
    delete: tuple[int, ...] = ()


def decide(
    versions: Iterable[int],
    in_use: Set[int],
    before: Sequence[Retired],
    *,
    now: dt.datetime,
    period: dt.timedelta,
    delete: bool,
) -> Retention:
    """What to record of, and delete from, the ``versions`` a view has made.

    ``in_use`` holds the versions that must stay (latest, serving, pinned); ``before``
    is the record as the status holds it; ``delete`` is whether the view's
    deletionPolicy is Delete. The versions named for deletion are recorded as deleted:
    write the record only once their deletion succeeded.
    """
    known = {r.version: r for r in before}
    records: list[Retired] = []
    doomed: list[int] = []
    for version in sorted(set(versions)):
        if version in in_use:
            continue
        record = known.get(version) or Retired(version, now)
        if delete and not record.deleted and now - record.since >= period:
            doomed.append(version)
            record = Retired(version, record.since, deleted=True)
        records.append(record)
    # Forget the oldest deleted versions first, then the oldest of the others.
    records.sort(key=lambda r: (not r.deleted, r.version), reverse=True)
    kept = sorted(records[:MAX_RECORDS], key=lambda r: r.version)
    assert not set(doomed) & set(in_use)
    return Retention(tuple(kept), tuple(doomed))
