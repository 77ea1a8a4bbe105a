"""The order of a window's writes (featurekube.materialize.publish), over a recording
stand-in for the online writer: what happens when, and what a failure leaves."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from featurekube import errors
from featurekube.materialize import publish
from featurekube.writer import OnlineWriteSettings, PendingWindow

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
END = START + dt.timedelta(hours=1)


class _Writer:
    """Records the calls the publication makes of an OnlineWriter."""

    label = "FeatureView rides/speed"
    table = "featurekube.rides.speed.v1"

    def __init__(
        self,
        settle_seconds: float = 0.0,
        holds: str | None = None,
        opens: threading.Event | None = None,
        refuses: bool = False,
    ) -> None:
        self.settings = OnlineWriteSettings(settle_seconds=settle_seconds)
        self.calls: list[str] = []
        self.holds = holds
        """The run id the store's record holds before the run opens it."""
        self.opens = opens
        """Set when the store answers the record's write (None: at once)."""
        self.refuses = refuses
        """Whether the store refuses the record."""

    def open_window(
        self,
        start: dt.datetime,
        end: dt.datetime,
        *,
        recorded: PendingWindow | None = None,
    ) -> PendingWindow:
        if self.opens is not None:
            assert self.opens.wait(10)
        if self.refuses:
            raise errors.OnlineWriteError("DynamoDB is unavailable")
        self.calls.append("open")
        if recorded is not None and recorded.run == self.holds:
            return PendingWindow(start, end, recorded.run, recorded.superseded, launched=True)
        run = recorded.run if recorded is not None else "run-2"
        return PendingWindow(start, end, run, self.holds or "run-1")

    def close_window(self, window: PendingWindow) -> bool:
        self.calls.append(f"close {window.run}")
        return True

    def withdraw_window(self, window: PendingWindow) -> bool:
        self.calls.append(f"withdraw {window.run}")
        return True


def _publication(writer: _Writer) -> publish.Publication:
    online: Any = writer
    return publish.Publication(online, START, END)


def test_a_window_is_recorded_then_written_online_then_committed_then_completed() -> None:
    writer = _Writer()
    publication = _publication(writer)
    with publication.before_writing():
        writer.calls.append("compute")
    assert publication.write_online(lambda: writer.calls.append("online") or 3) == 3
    publication.commit_offline(lambda: writer.calls.append("offline"))
    assert publication.completed_at is None
    before = time.monotonic()
    publication.complete()

    assert writer.calls == ["open", "compute", "online", "offline", "close run-2"]
    # When it was published, for the job's report (timingsSeconds.published).
    assert publication.completed_at is not None
    assert before <= publication.completed_at <= time.monotonic()


def test_a_failure_before_writing_withdraws_the_record_and_one_after_leaves_it() -> None:
    writer = _Writer()
    publication = _publication(writer)
    with pytest.raises(ValueError, match="expectation"), publication.before_writing():
        raise ValueError("an expectation failed")
    assert writer.calls == ["open", "withdraw run-2"]

    writer.calls.clear()
    publication = _publication(writer)

    def fail() -> None:
        raise OSError("DynamoDB refused")

    with pytest.raises(OSError, match="refused"):
        publication.write_online(fail)
    assert writer.calls == ["open"]  # pending: what may have been written stays hidden


def test_the_first_online_write_waits_until_the_record_has_stood_settle_seconds() -> None:
    writer = _Writer(settle_seconds=0.3)
    publication = _publication(writer)
    opened = time.monotonic()
    publication.write_online(lambda: None)
    assert time.monotonic() - opened >= 0.3

    publication = _publication(writer)
    time.sleep(0.3)  # a computation as long as the settling time: no wait after it
    began = time.monotonic()
    publication.write_online(lambda: None)
    assert time.monotonic() - began < 0.1


def test_a_settling_write_prepares_at_once_and_waits_only_before_its_first_item() -> None:
    writer = _Writer(settle_seconds=0.3)
    publication = _publication(writer)
    opened = time.monotonic()
    moments: dict[str, float] = {}

    def write(settle: Any) -> int:
        moments["prepared"] = time.monotonic() - opened  # lease, watermark, items
        settle()
        moments["first item"] = time.monotonic() - opened
        return 7

    assert publication.write_online_settling(write) == 7
    assert moments["prepared"] < 0.2 <= 0.3 <= moments["first item"]

    publication = _publication(writer)
    time.sleep(0.3)  # settled while computing: no wait at all
    began = time.monotonic()
    publication.write_online_settling(lambda settle: settle())
    assert time.monotonic() - began < 0.1


def test_a_record_the_launcher_wrote_has_settled_by_the_time_the_job_is_ready() -> None:
    # The operator wrote it before creating the job: it has stood since before the
    # process began, and the settle counts from then.
    started = time.monotonic() - 0.3
    writer = _Writer(settle_seconds=0.3, holds="a" * 32)
    online: Any = writer
    publication = publish.Publication(
        online,
        START,
        END,
        recorded=PendingWindow(START, END, "a" * 32, "b" * 32),
        started_at=started,
    )
    began = time.monotonic()
    publication.write_online(lambda: None)
    assert time.monotonic() - began < 0.1
    assert publication.pending == PendingWindow(START, END, "a" * 32, "b" * 32, launched=True)

    # Withdrawn since (the store holds another run's id, or none): written again now,
    # and it must stand the whole settle time from now.
    online = _Writer(settle_seconds=0.3, holds="c" * 32)
    publication = publish.Publication(
        online, START, END, recorded=PendingWindow(START, END, "a" * 32, None), started_at=started
    )
    opened = time.monotonic()
    publication.write_online(lambda: None)
    assert time.monotonic() - opened >= 0.3
    assert publication.pending == PendingWindow(START, END, "a" * 32, "c" * 32)


def test_without_an_online_table_the_offline_commit_alone_publishes() -> None:
    publication = publish.Publication(None, START, END)
    done: list[str] = []
    with publication.before_writing():
        pass
    publication.commit_offline(lambda: done.append("offline"))
    publication.complete()
    assert done == ["offline"] and publication.pending is None


def _offline_write(writer: _Writer, rows: list[int]) -> Any:
    """An offline write that records each row it takes, and its commit after the last."""

    def write(gate: Any) -> int:
        for row in gate(rows):
            writer.calls.append(f"row {row}")
        writer.calls.append("commit")
        return len(rows)

    return write


def test_offline_files_are_written_beside_the_online_write_and_committed_after_it() -> None:
    writer = _Writer()
    publication = _publication(writer)
    offline = publication.prepare_offline(_offline_write(writer, [1, 2]))
    with offline:
        deadline = time.monotonic() + 5
        while "row 2" not in writer.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # the write holds the end of its rows: no commit yet
        publication.write_online(lambda: writer.calls.append("online"))
        assert offline.commit() == 2
    publication.complete()

    assert writer.calls == ["open", "row 1", "row 2", "online", "commit", "close run-2"]


def test_a_failed_online_write_ends_the_offline_rows_in_an_error_and_commits_nothing() -> None:
    writer = _Writer()
    publication = _publication(writer)

    def fail() -> None:
        raise OSError("DynamoDB refused")

    offline = publication.prepare_offline(_offline_write(writer, [1]))
    with pytest.raises(OSError, match="refused"), offline:
        publication.write_online(fail)
    assert "commit" not in writer.calls and "row 1" in writer.calls
    with pytest.raises(errors.OfflineWriteError, match="online write did not succeed"):
        offline.commit()


def test_an_offline_write_that_fails_raises_at_its_commit() -> None:
    publication = publish.Publication(None, START, END)

    def write(gate: Any) -> None:
        raise OSError("S3 refused")

    offline = publication.prepare_offline(write)
    with offline, pytest.raises(OSError, match="S3 refused"):
        offline.commit()


def test_the_job_records_its_window_before_it_loads_arrow_duckdb_or_delta() -> None:
    # The record's settling time passes while they load (docs/semantics.md).
    code = (
        "import sys, featurekube.materialize.__main__, featurekube.materialize.publish\n"
        "heavy = {'pyarrow', 'numpy', 'duckdb', 'deltalake', 'pyspark', 'sqlglot'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert loaded.stdout.strip() == "[]"


def _opening(writer: _Writer, **kwargs: Any) -> publish.Publication:
    online: Any = writer
    return publish.Publication.opening(writer.table, lambda: online, START, END, **kwargs)


def test_a_record_written_in_the_background_comes_before_every_write() -> None:
    # The job reads its source while its client is made and the record written.
    opens = threading.Event()
    writer = _Writer(opens=opens)
    publication = _opening(writer)
    with publication.before_writing():
        writer.calls.append("compute")
        publication.check(writer.table, START, END, "view")
    offline = publication.prepare_offline(_offline_write(writer, [1]))
    with offline:
        deadline = time.monotonic() + 5  # the files need no record: they are not committed
        while "row 1" not in writer.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        # The online write waits for the record.
        threading.Timer(0.2, opens.set).start()
        publication.write_online(lambda: writer.calls.append("online"))
        offline.commit()
    publication.complete()

    assert writer.calls == ["compute", "row 1", "open", "online", "commit", "close run-2"]


def test_a_record_the_store_refused_in_the_background_stops_the_run_before_any_write() -> None:
    writer = _Writer(refuses=True)
    publication = _opening(writer)
    with publication.before_writing():
        writer.calls.append("compute")
    offline = publication.prepare_offline(_offline_write(writer, [1]))
    with pytest.raises(errors.OnlineWriteError, match="unavailable"), offline:
        publication.write_online(lambda: writer.calls.append("online"))
    assert writer.calls == ["compute", "row 1"]  # no online write, no commit

    # A settling write never starts its preparation (lease, watermark) either.
    publication = _opening(_Writer(refuses=True))
    with pytest.raises(errors.OnlineWriteError, match="unavailable"):
        publication.write_online_settling(lambda settle: writer.calls.append("prepared"))
    assert "prepared" not in writer.calls


def test_a_failure_before_writing_withdraws_a_record_still_being_written() -> None:
    opens = threading.Event()
    writer = _Writer(opens=opens)
    publication = _opening(writer)
    threading.Timer(0.2, opens.set).start()
    with pytest.raises(ValueError, match="source"), publication.before_writing():
        raise ValueError("the source is unreadable")
    assert writer.calls == ["open", "withdraw run-2"]

    # Refused: nothing to put back, and the run's own error is the one raised.
    publication = _opening(_Writer(refuses=True))
    with pytest.raises(ValueError, match="source"), publication.before_writing():
        raise ValueError("the source is unreadable")


def test_a_record_written_in_the_background_settles_from_when_it_was_written() -> None:
    opens = threading.Event()
    writer = _Writer(settle_seconds=0.3, opens=opens)
    publication = _opening(writer)
    time.sleep(0.2)
    opened = time.monotonic()
    opens.set()
    publication.write_online(lambda: None)
    assert time.monotonic() - opened >= 0.3

    # The launcher's, still standing: from the process's start, as when written at once.
    writer = _Writer(settle_seconds=0.3, holds="a" * 32)
    publication = _opening(
        writer,
        recorded=PendingWindow(START, END, "a" * 32, None),
        started_at=time.monotonic() - 0.3,
    )
    began = time.monotonic()
    publication.write_online(lambda: None)
    assert time.monotonic() - began < 0.1
    assert publication.pending == PendingWindow(START, END, "a" * 32, None, launched=True)
