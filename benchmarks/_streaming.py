"""The streaming benchmark's arithmetic: probe latencies and whether consumer lag is
bounded. Pure; benchmarks/bench_stream.py does the I/O.

A *probe* is an event of one of a few reserved entities whose event time is its send
time. A reader polls those entities' items; a probe is *visible* at the first poll that
finds its entity's event time at or after the probe's (a newer value of the entity
counts: a reader then gets a value at least as new), and its latency is that poll's
time minus its send time.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["LagVerdict", "Probes", "judge_lag", "render_event"]

GROWTH_LIMIT = 0.10
"""Lag is unbounded when, over a step's measured interval, it grows by more than this
share of the producer's rate (records per second)."""
BEHIND_LIMIT_SECONDS = 60.0
"""... or ends more than this many seconds of the rate behind: it fell behind without
bound before the interval began (how fresh values are shows in the latencies)."""


@dataclass
class Probes:
    """Sent probes not yet visible, and the latencies of those that became visible."""

    pending: dict[int, deque[float]] = field(default_factory=dict)
    """Entity -> send times (seconds since the epoch) in send order."""
    seen: list[tuple[float, float]] = field(default_factory=list)
    """(send time, latency in seconds) of each visible probe."""

    def sent(self, entity: int, at: float) -> None:
        """Probe of ``entity`` sent at ``at`` (also its event time)."""
        self.pending.setdefault(entity, deque()).append(at)

    def observed(self, entity: int, event_time: float | None, at: float) -> None:
        """A poll at ``at`` found ``entity``'s item with ``event_time`` (None: no item)."""
        waiting = self.pending.get(entity)
        if event_time is None or not waiting:
            return
        # The sent and stored times are the same microseconds; allow for float rounding.
        while waiting and waiting[0] <= event_time + 1e-6:
            sent = waiting.popleft()
            self.seen.append((sent, max(0.0, at - sent)))

    def latencies(self, start: float, end: float, now: float | None = None) -> list[float]:
        """Latencies of the probes sent in [start, end) that became visible; with
        ``now``, those still unseen too, as their age at ``now`` (a lower bound).

        >>> probes = Probes()
        >>> probes.sent(1, 10.0); probes.sent(1, 11.0); probes.sent(2, 12.0)
        >>> probes.observed(1, 11.0, 13.5)
        >>> probes.latencies(0, 20), probes.latencies(0, 20, now=20.0)
        ([3.5, 2.5], [3.5, 2.5, 8.0])
        """
        found = [latency for sent, latency in self.seen if start <= sent < end]
        if now is not None:
            found += [now - t for w in self.pending.values() for t in w if start <= t < end]
        return found

    def unseen(self, start: float, end: float) -> int:
        """Probes sent in [start, end) still not visible."""
        return sum(1 for w in self.pending.values() for sent in w if start <= sent < end)


@dataclass(frozen=True)
class LagVerdict:
    """How the consumer lag went over one step."""

    bounded: bool
    growth_per_second: float | None
    """The lag's growth (records/s) between the first and last third of the interval,
    taken at each third's lowest point: the lag saws up between micro-batches and down
    at each, so its troughs show whether the consumer keeps up. None: a third of the
    interval had no trough."""
    final_lag: int


def judge_lag(samples: Sequence[tuple[float, int]], rate: float) -> LagVerdict:
    """Whether lag stayed bounded, from (time, lag) ``samples`` over a step's measured
    interval at ``rate`` records/s: it did unless its troughs rose faster than
    :data:`GROWTH_LIMIT` of the rate, or it ended :data:`BEHIND_LIMIT_SECONDS` behind,
    or it never fell in the first or the last third (no micro-batch finished there).

    >>> judge_lag([(t, 0 if t % 2 else 900) for t in range(30)], 1000).bounded
    True
    >>> judge_lag([(t, 500 * t + (0 if t % 2 else 900)) for t in range(30)], 1000)
    LagVerdict(bounded=False, growth_per_second=500.0, final_lag=14500)
    >>> judge_lag([(t, 500 * t) for t in range(30)], 1000).growth_per_second is None
    True
    """
    if len(samples) < 3:
        raise ValueError(f"judging lag needs 3 samples or more, got {len(samples)}")
    ordered = sorted(samples)
    first, last = ordered[0][0], ordered[-1][0]
    span = last - first
    if span <= 0:
        raise ValueError("the lag samples all have the same time")
    early = [s for s in ordered if s[0] <= first + span / 3]
    late = [s for s in ordered if s[0] >= last - span / 3]
    if not (_falls(early) and _falls(late)):
        # No micro-batch finished within a third of the interval: no trough to read.
        return LagVerdict(False, None, ordered[-1][1])
    low_early, low_late = min(early, key=lambda s: s[1]), min(late, key=lambda s: s[1])
    apart = low_late[0] - low_early[0]
    growth = (low_late[1] - low_early[1]) / apart if apart > 0 else 0.0
    final = ordered[-1][1]
    bounded = growth <= GROWTH_LIMIT * rate and final <= BEHIND_LIMIT_SECONDS * rate
    return LagVerdict(bounded, round(growth, 3), final)


def _falls(samples: Sequence[tuple[float, int]]) -> bool:
    return any(b[1] < a[1] for a, b in itertools.pairwise(samples))


def render_event(entity: int, seq: int, sent_micros: int) -> bytes:
    """One event as JSON: its entity, a fare, a running count, and its send time as
    event time (ISO 8601, microseconds, UTC).

    >>> render_event(7, 3, 1_767_225_600_000_001)
    b'{"driver_id":7,"fare":25.0,"trips":3,"event_timestamp":"2026-01-01T00:00:00.000001Z"}'
    """
    seconds, micros = divmod(sent_micros, 1_000_000)
    stamp = _utc_text(seconds)
    fare = 5.0 + (seq * 11 + entity) % 100 / 2
    return (
        f'{{"driver_id":{entity},"fare":{fare},"trips":{seq},'
        f'"event_timestamp":"{stamp}.{micros:06d}Z"}}'
    ).encode()


def _utc_text(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
