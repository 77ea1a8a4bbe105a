"""The parity check's decisions: which served entities to compare, which to leave out
because a race could make them differ, whether two values are equal, and the summary
written into a FeatureService's ``status.parity``; pure, no I/O.

The check (run by the operator, see docs/monitoring.md) samples entities from the
online tables of a service's views, asks the feature server for their values, pulls
the same entities point-in-time from the offline store at the moment of the request,
and compares the two value by value. docs/semantics.md promises they are equal once
materialization has reached that moment; the check leaves out the entities whose
values may lawfully differ at that moment:

- ``changed``: the entity's online item was replaced while the check ran (a window
  or a Push wrote it);
- ``pending``: its event time lies in a window recorded as pending, which the feature
  server hides while the offline table may or may not hold it yet;
- ``recent``: its values were written (created time) or happened (event time) less
  than the settle time before the request: a Push commits its offline rows after its
  online write, and the server's clock may differ from the checker's;
- ``ttl``: its value's age crosses the view's TTL around the request, so the server's
  instant and the pull's may fall on either side;
- ``moved``: it differed, but the view's offline table or its pending windows moved
  during the check, twice running.

Values are equal when they are the same value of the feature's type: integers,
strings, booleans and timestamps (to the microsecond) exactly; floats exactly too,
with no tolerance — both stores keep every bit — where NaN equals NaN and -0.0
equals 0.0 (DynamoDB numbers have no negative zero); float arrays element by element.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import random
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from featurekube.online import layout

__all__ = [
    "EXAMPLES",
    "Comparison",
    "Item",
    "Mismatch",
    "SkipReason",
    "choose_sample",
    "compare_entity",
    "decode_entity_key",
    "due_at",
    "item_from_attributes",
    "skip_reason",
    "summarize",
    "values_equal",
]

EXAMPLES = 8
"""Mismatches kept in ``status.parity.examples``."""
_TEXT_LIMIT = 256
"""Longest rendering of a value in an example (the status field's bound)."""
_ENTITY_LIMIT = 1024

SkipReason = Literal["changed", "pending", "recent", "ttl", "moved"]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Item:
    """What the check needs of one online item: its key and the times that order and
    age it, in microseconds since the epoch."""

    key: str
    """The encoded entity key."""
    event_time: int
    created_time: int | None = None
    latest_event_time: int | None = None
    """Aggregation views: the entity's latest event, which the TTL counts from."""

    @property
    def stamp(self) -> tuple[int, int | None]:
        """What changes whenever a writer replaces the item."""
        return (self.event_time, self.created_time)

    @property
    def ttl_from(self) -> int:
        """The time the view's TTL counts from."""
        return self.latest_event_time if self.latest_event_time is not None else self.event_time


def _number(attributes: Mapping[str, Any], name: str) -> int | None:
    value = attributes.get(name)
    return int(value["N"]) if isinstance(value, Mapping) and "N" in value else None


def item_from_attributes(attributes: Mapping[str, Any]) -> Item | None:
    """The :class:`Item` of a DynamoDB item as read; None for the reserved windows
    item, and for anything that is not an entity's item (no key or event time).

    >>> item_from_attributes({"entity_key": {"S": "driver_id:i:7"}, "event_time": {"N": "5"}})
    Item(key='driver_id:i:7', event_time=5, created_time=None, latest_event_time=None)
    >>> item_from_attributes({"entity_key": {"S": "#windows"}}) is None
    True
    """
    key = (attributes.get(layout.ENTITY_KEY) or {}).get("S")
    event = _number(attributes, layout.EVENT_TIME)
    if not isinstance(key, str) or key.startswith("#") or event is None:
        return None
    return Item(
        key,
        event,
        _number(attributes, layout.CREATED_TIME),
        _number(attributes, layout.LATEST_EVENT_TIME),
    )


def decode_entity_key(types: Mapping[str, str], encoded: str) -> dict[str, int | str]:
    """The join key values an online key encodes (the inverse of
    :func:`featurekube.online.keys.encode_entity_key`).

    >>> decode_entity_key({"zone": "string", "driver_id": "int64"}, "driver_id:i:7/zone:s:SF%2FN")
    {'driver_id': 7, 'zone': 'SF/N'}

    Raises ValueError for a key that does not hold exactly ``types``' keys.
    """
    values: dict[str, int | str] = {}
    for part in encoded.split("/"):
        name, tag, raw = [*part.split(":", 2), "", ""][:3]
        expected = types.get(name)
        if tag == "i" and expected == "int64":
            values[name] = int(raw)
        elif tag == "s" and expected == "string":
            values[name] = urllib.parse.unquote(raw)
        else:
            raise ValueError(
                f"online key {encoded!r}: part {part!r} is not one of the join keys "
                f"{', '.join(f'{k} ({t})' for k, t in sorted(types.items()))}"
            )
    if set(values) != set(types):
        raise ValueError(
            f"online key {encoded!r} lacks join key(s) {sorted(set(types) - set(values))}"
        )
    return values


def choose_sample(keys: Iterable[str], size: int, seed: int | str) -> list[str]:
    """At most ``size`` distinct keys of ``keys``, chosen at random (the same for the
    same seed), in a stable order.

    >>> choose_sample(["a", "b", "c", "a"], 2, seed=1) == choose_sample(["c", "b", "a"], 2, seed=1)
    True
    """
    distinct = sorted(set(keys))
    if len(distinct) <= size:
        return distinct
    return sorted(random.Random(str(seed)).sample(distinct, size))


def skip_reason(
    before: Item,
    after: Item | None,
    pending: Sequence[tuple[int, int]],
    *,
    asked_from: int,
    asked_to: int,
    ttl: int | None,
    settle: int,
) -> SkipReason | None:
    """Why an entity cannot be compared, or None when it can.

    ``before`` is its item as sampled, ``after`` as read again once both stores were
    read (None: gone); ``pending`` the window ranges recorded as pending before or
    after; ``asked_from`` and ``asked_to`` bound the moment the feature server
    answered (the offline pull is made at ``asked_to``); ``ttl`` is the view's TTL;
    ``settle`` how long a write takes to reach both stores, with the clocks' skew.
    All in microseconds.

    >>> item = Item("k", event_time=1_000, created_time=1_000)
    >>> skip_reason(item, item, (), asked_from=90_000, asked_to=91_000, ttl=None, settle=10)
    >>> skip_reason(item, item, ((0, 2_000),), asked_from=90_000, asked_to=91_000,
    ...             ttl=None, settle=10)
    'pending'
    """
    if after is None or after.stamp != before.stamp:
        return "changed"
    if any(start <= before.event_time < end for start, end in pending):
        return "pending"
    newest = max(before.event_time, before.created_time or before.event_time)
    if newest > asked_from - settle:
        return "recent"
    if ttl is not None:
        expires = before.ttl_from + ttl
        if asked_from - settle <= expires <= asked_to + settle:
            return "ttl"
    return None


def _micros(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # naive timestamps are UTC
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _float_equal(a: Any, b: Any) -> bool:
    a, b = float(a), float(b)
    return a == b or (math.isnan(a) and math.isnan(b))


def values_equal(value_type: str, online: Any, offline: Any) -> bool:
    """Whether two values of a feature of ``value_type`` are the same (None: null).

    >>> values_equal("float64", 0.1 + 0.2, 0.3), values_equal("float64", float("nan"), float("nan"))
    (False, True)
    >>> values_equal("float64_array", [1.0, -0.0], [1.0, 0.0]), values_equal("int64", 1, True)
    (True, False)
    """
    if online is None or offline is None:
        return online is None and offline is None
    if value_type == "float64":
        return _float_equal(online, offline)
    if value_type == "float64_array":
        return len(online) == len(offline) and all(
            _float_equal(a, b) for a, b in zip(online, offline, strict=True)
        )
    if value_type == "timestamp":
        return _micros(online) == _micros(offline)
    if type(online) is not type(offline):
        return False
    return bool(online == offline)


def _json(value: Any, limit: int = _TEXT_LIMIT) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    elif isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    elif isinstance(value, list):
        value = [x if not isinstance(x, float) or math.isfinite(x) else str(x) for x in value]
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Mismatch:
    """One value the stores disagree on, rendered for ``status.parity.examples``."""

    feature: str
    entity: str
    online: str | None
    offline: str | None

    def to_status(self) -> dict[str, str]:
        found = {"feature": self.feature, "entity": self.entity}
        found.update({k: v for k, v in (("online", self.online), ("offline", self.offline)) if v})
        return found


def compare_entity(
    entity: Mapping[str, Any],
    types: Mapping[str, str],
    online: Mapping[str, Any],
    offline: Mapping[str, Any],
) -> list[Mismatch]:
    """The features (named in ``types``, with their value types) whose ``online`` and
    ``offline`` values for ``entity`` (its join keys) differ."""
    found = []
    for feature, value_type in types.items():
        left, right = online.get(feature), offline.get(feature)
        if not values_equal(value_type, left, right):
            found.append(
                Mismatch(
                    feature,
                    _json(dict(entity), _ENTITY_LIMIT) or "{}",
                    _json(left),
                    _json(right),
                )
            )
    return found


@dataclass
class Comparison:
    """What one check compared, found and left out; summed over a service's views."""

    entities: int = 0
    values: int = 0
    mismatches: int = 0
    skipped: int = 0
    examples: list[Mismatch] | None = None

    def add(self, values: int, mismatches: Sequence[Mismatch]) -> None:
        """One entity compared: ``values`` values, of which ``mismatches`` differed."""
        self.entities += 1
        self.values += values
        self.mismatches += len(mismatches)
        kept = self.examples if self.examples is not None else []
        kept.extend(mismatches[: max(0, EXAMPLES - len(kept))])
        self.examples = kept


def summarize(comparison: Comparison, checked_at: dt.datetime) -> dict[str, Any]:
    """``status.parity`` (ParityStatus, as the API spells it) of a check.

    >>> summarize(Comparison(entities=2, values=4, mismatches=1),
    ...           dt.datetime(2026, 1, 1, tzinfo=dt.UTC))["mismatchRate"]
    0.25
    """
    status: dict[str, Any] = {
        "checkedAt": checked_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "entities": comparison.entities,
        "values": comparison.values,
        "mismatches": comparison.mismatches,
        "mismatchRate": comparison.mismatches / comparison.values if comparison.values else 0.0,
    }
    if comparison.examples:
        status["examples"] = [m.to_status() for m in comparison.examples[:EXAMPLES]]
    return status


def due_at(
    last: dt.datetime | None, created: dt.datetime, interval: dt.timedelta, seed: str
) -> dt.datetime:
    """When the next check of a service is due: ``interval`` after the ``last`` one
    (the service's creation when it was never checked), plus a jitter of up to a
    tenth of the interval fixed per ``seed`` (the service), so that services created
    together do not all check at once.

    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> hour = dt.timedelta(hours=1)
    >>> t + hour <= due_at(t, t, hour, "rides/eta") <= t + hour + hour / 10
    True
    """
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    jitter = interval * ((digest % 1000) / 10_000)
    if last is None:
        return created + jitter
    return last + interval + jitter
