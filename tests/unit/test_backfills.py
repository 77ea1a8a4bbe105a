from __future__ import annotations

import datetime as dt

import pytest

from featurekube import backfills

UTC = dt.UTC


def test_a_request_holds_every_interval_and_naive_times_are_utc() -> None:
    request = backfills.parse_request("2026-01-01T00:00:00Z/2026-01-02, 2026-02-01/2026-02-03")

    assert request.spans == (
        (dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 2, tzinfo=UTC)),
        (dt.datetime(2026, 2, 1, tzinfo=UTC), dt.datetime(2026, 2, 3, tzinfo=UTC)),
    )


def test_the_same_text_is_the_same_request_and_a_note_makes_a_new_one() -> None:
    first = backfills.parse_request("2026-01-01/2026-01-02")

    assert backfills.parse_request("2026-01-01/2026-01-02").id == first.id
    again = backfills.parse_request("2026-01-01/2026-01-02 # again")
    assert again.id != first.id and again.spans == first.spans


def test_the_command_writes_what_the_operator_reads() -> None:
    start, end = dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 2, tzinfo=UTC)

    text = backfills.format_request(start, end, "2026-01-05T10:00:00Z")

    assert backfills.parse_request(text).spans == ((start, end),)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "no interval"),
        ("2026-01-01", "is not an interval"),
        ("2026-01-02/2026-01-01", "ends before it starts"),
        ("yesterday/2026-01-01", "is not an ISO 8601 time"),
    ],
)
def test_a_bad_request_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        backfills.parse_request(text)


def test_the_command_refuses_an_empty_window_before_it_connects(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from featurekube.cli import main

    status = main.main(["backfill", "v", "--start", "2026-01-02", "--end", "2026-01-01"])

    assert status == 1
    assert "--end 2026-01-01T00:00:00Z is not after --start" in capsys.readouterr().err
