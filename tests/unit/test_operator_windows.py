from __future__ import annotations

import datetime as dt

from featurekube_operator.windows import Window, first_start, next_tick, plan_windows

UTC = dt.UTC
H = dt.timedelta(hours=1)


def t(day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, minute, tzinfo=UTC)


def test_windows_follow_the_schedule_without_gaps_and_stop_at_now() -> None:
    windows = plan_windows("@hourly", t(1), t(1, 3, 30), max_span=H, limit=10)

    assert windows == [Window(t(1, 0), t(1, 1)), Window(t(1, 1), t(1, 2)), Window(t(1, 2), t(1, 3))]


def test_a_backfill_merges_ticks_up_to_the_span() -> None:
    windows = plan_windows("@hourly", t(1), t(3), max_span=dt.timedelta(days=1), limit=10)

    assert windows == [Window(t(1), t(2)), Window(t(2), t(3))]


def test_a_start_between_ticks_gets_a_short_first_window() -> None:
    windows = plan_windows("0 * * * *", t(1, 0, 20), t(1, 2, 5), max_span=H, limit=10)

    assert windows[0] == Window(t(1, 0, 20), t(1, 1))
    assert windows[1] == Window(t(1, 1), t(1, 2))


def test_the_limit_bounds_the_windows_and_the_rest_continue_from_the_last_end() -> None:
    first = plan_windows("*/10 * * * *", t(1), t(1, 1), max_span=dt.timedelta(minutes=10), limit=2)
    rest = plan_windows(
        "*/10 * * * *", first[-1].end, t(1, 1), max_span=dt.timedelta(minutes=10), limit=10
    )

    assert [w.end for w in first] == [t(1, 0, 10), t(1, 0, 20)]
    assert rest[0].start == t(1, 0, 20) and rest[-1].end == t(1, 1)
    assert len(first + rest) == 6


def test_nothing_is_due_before_the_first_tick() -> None:
    assert plan_windows("@daily", t(1, 5), t(1, 23), max_span=H, limit=10) == []


def test_without_a_start_time_the_first_window_starts_at_the_first_tick_after_creation() -> None:
    assert first_start("@hourly", None, t(1, 0, 30)) == t(1, 1)
    assert first_start("@hourly", None, t(1, 1)) == t(1, 1)
    assert first_start("@hourly", t(1, 0, 30), t(5)) == t(1, 0, 30)
    assert next_tick("@daily", t(1)) == t(2)
