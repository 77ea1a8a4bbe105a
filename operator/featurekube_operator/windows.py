"""Which materialization windows a view needs, from its schedule; pure.

Windows are half-open, [start, end), and follow one another without gaps. Their
boundaries are ticks of the view's cron schedule (UTC), starting at
``materialization.startTime`` (or the first tick after the view was created). A
backfill merges consecutive ticks into windows of at most ``max_span``, so a year of
hourly history is a few hundred jobs, not thousands; once caught up, each tick gets a
window of its own.

The sequence depends only on where the last planned window ended, never on when the
operator happens to run, so a restarted operator continues exactly where it stopped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from croniter import croniter

__all__ = ["Window", "first_start", "next_tick", "plan_windows"]


@dataclass(frozen=True, order=True)
class Window:
    """A half-open interval [start, end) of event time, in UTC."""

    start: dt.datetime
    end: dt.datetime


def next_tick(schedule: str, after: dt.datetime) -> dt.datetime:
    """The first tick of ``schedule`` strictly after ``after``."""
    tick: dt.datetime = croniter(schedule, after.astimezone(dt.UTC)).get_next(dt.datetime)
    return tick.astimezone(dt.UTC)


def first_start(schedule: str, start_time: dt.datetime | None, created: dt.datetime) -> dt.datetime:
    """Where a view's first window starts: its startTime, else its first tick."""
    if start_time is not None:
        return start_time.astimezone(dt.UTC)
    return next_tick(schedule, created - dt.timedelta(microseconds=1))


def plan_windows(
    schedule: str,
    begin: dt.datetime,
    now: dt.datetime,
    max_span: dt.timedelta,
    limit: int,
) -> list[Window]:
    """Up to ``limit`` windows from ``begin`` whose ends are ticks no later than ``now``.

    >>> utc = dt.UTC
    >>> plan_windows("@hourly", dt.datetime(2026, 1, 1, tzinfo=utc),
    ...              dt.datetime(2026, 1, 1, 3, 30, tzinfo=utc), dt.timedelta(hours=2), 5)
    ... # doctest: +NORMALIZE_WHITESPACE
    [Window(start=datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc),
            end=datetime.datetime(2026, 1, 1, 2, 0, tzinfo=datetime.timezone.utc)),
     Window(start=datetime.datetime(2026, 1, 1, 2, 0, tzinfo=datetime.timezone.utc),
            end=datetime.datetime(2026, 1, 1, 3, 0, tzinfo=datetime.timezone.utc))]
    """
    windows: list[Window] = []
    start = begin.astimezone(dt.UTC)
    while len(windows) < limit:
        end = next_tick(schedule, start)
        if end > now:
            break
        # Merge further ticks while they are due and the window stays within max_span.
        while True:
            later = next_tick(schedule, end)
            if later > now or later - start > max_span:
                break
            end = later
        windows.append(Window(start, end))
        start = end
    return windows
