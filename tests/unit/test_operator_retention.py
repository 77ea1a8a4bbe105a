"""Which versions retire, and when their data goes: the pure decision."""

from __future__ import annotations

import datetime as dt

from featurekube_operator import retention
from featurekube_operator.retention import Retired

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
WEEK = 7 * DAY


def _decide(
    versions: list[int],
    in_use: set[int],
    before: list[Retired],
    now: dt.datetime,
    delete: bool = True,
    period: dt.timedelta = WEEK,
) -> retention.Retention:
    return retention.decide(versions, in_use, before, now=now, period=period, delete=delete)


def test_a_version_nothing_uses_is_recorded_from_now_and_nothing_is_deleted() -> None:
    decided = _decide([1, 2], {2}, [], T0)

    assert decided.retired == (Retired(1, T0),)
    assert decided.delete == ()


def test_the_record_keeps_when_the_version_first_stopped_being_used() -> None:
    decided = _decide([1, 2], {2}, [Retired(1, T0)], T0 + 3 * DAY)

    assert decided.retired == (Retired(1, T0),)
    assert decided.delete == ()


def test_a_version_retired_for_the_period_is_deleted_once() -> None:
    first = _decide([1, 2], {2}, [Retired(1, T0)], T0 + WEEK)
    again = _decide([1, 2], {2}, list(first.retired), T0 + WEEK + DAY)

    assert first.delete == (1,)
    assert first.retired == (Retired(1, T0, deleted=True),)
    assert again.delete == ()
    assert again.retired == first.retired


def test_retain_records_but_never_deletes() -> None:
    decided = _decide([1, 2], {2}, [Retired(1, T0)], T0 + 52 * WEEK, delete=False)

    assert decided.delete == ()
    assert decided.retired == (Retired(1, T0),)


def test_a_version_in_use_is_never_deleted_whatever_its_record_says() -> None:
    # Version 1 was retired long ago, then pinned again.
    decided = _decide([1, 2, 3], {1, 3}, [Retired(1, T0), Retired(2, T0)], T0 + 52 * WEEK)

    assert decided.delete == (2,)
    assert [r.version for r in decided.retired] == [2]


def test_a_version_used_again_then_dropped_again_starts_its_period_over() -> None:
    used_again = _decide([1, 2], {1, 2}, [Retired(1, T0)], T0 + DAY)
    dropped = _decide([1, 2], {2}, list(used_again.retired), T0 + 2 * DAY)

    assert used_again.retired == ()
    assert dropped.retired == (Retired(1, T0 + 2 * DAY),)
    assert _decide([1, 2], {2}, list(dropped.retired), T0 + WEEK).delete == ()


def test_a_short_period_deletes_on_the_first_reconcile_past_it() -> None:
    decided = _decide([1, 2], {2}, [], T0, period=dt.timedelta(0))

    assert decided.delete == (1,)


def test_the_record_is_bounded_and_forgets_deleted_versions_first() -> None:
    versions = list(range(1, retention.MAX_RECORDS + 12))
    before = [Retired(v, T0, deleted=v <= 20) for v in versions]
    latest = versions[-1]

    decided = _decide(versions, {latest}, before, T0 + DAY)

    assert len(decided.retired) == retention.MAX_RECORDS
    kept = {r.version for r in decided.retired}
    assert all(v in kept for v in range(21, latest))
    assert 1 not in kept and 20 in kept


def test_the_record_reads_back_what_it_writes() -> None:
    records = [Retired(1, T0, deleted=True), Retired(3, T0 + DAY)]
    status = {"retiredVersions": retention.retired_to_status(records)}

    assert retention.retired_from_status(status) == records
    assert status["retiredVersions"][1] == {"version": 3, "since": "2026-01-02T00:00:00Z"}


def test_an_unreadable_entry_is_skipped() -> None:
    status = {"retiredVersions": [{"version": 1}, {"version": 2, "since": "2026-01-01T00:00:00Z"}]}

    assert retention.retired_from_status(status) == [Retired(2, T0)]
