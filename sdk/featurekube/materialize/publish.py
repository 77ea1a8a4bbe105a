"""The order in which a window's rows reach the stores, so that no reader sees a window
that is not complete in both (docs/semantics.md, "Materialization windows"); does I/O
through :mod:`featurekube.writer`. Shared by both engines.

1. Before anything is written, the window is recorded as pending in its online table
   (:meth:`~featurekube.writer.online.OnlineWriter.open_window`): the feature server
   hides items with event times in the window from then on. The operator writes the
   record before it starts the job, which takes it over (``recorded``), in a thread
   of its own while it reads its source (:meth:`Publication.opening`).
2. Its online values are written (idempotent: only newer values replace stored ones,
   so a retry is safe).
3. Its offline rows are committed, in one Delta commit: the publish point. An offline
   reader sees the window from here, never before its online write succeeded.
4. The pending record is removed: the feature server serves the window's values.

The offline files may be written before step 2 is done, so long as the commit waits
for it: :meth:`Publication.prepare_offline` starts the offline write beside the online
one with the end of its rows held back, and releases it once the online write
succeeded (a Delta commit follows the last row); if the online write fails, the rows
end in an error instead, and nothing is committed.

A job killed at any instant leaves the window either unpublished offline and hidden
online, or published offline and still hidden online until a run of the window
completes; never visible with values missing. A run that fails before it writes
(a failed expectation, a source error) puts the record back as it found it: removed,
or a dead earlier run's again, whose writes stay hidden.

    publication = Publication(online_writer, start, end)   # records the window
    with publication.before_writing():                     # failures here undo that
        rows = compute()
    publication.write_online(lambda: online_writer.write_bulk(newest))
    publication.commit_offline(lambda: offline_writer.replace_window(rows, start, end))
    publication.complete()

or, writing the offline files while the online write runs, and letting the online
write prepare (lease, watermark, items) while the record settles::

    offline = publication.prepare_offline(
        lambda gate: offline_writer.replace_window(lambda: gate(batches()), start, end))
    with offline:                                          # the offline write starts
        publication.write_online_settling(
            lambda settle: online_writer.write_bulk(newest, before_first_item=settle))
        offline.commit()                                   # its commit follows
    publication.complete()
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from featurekube import errors
from featurekube.writer import online as online_writer

__all__ = ["OfflineWrite", "Publication"]

log = logging.getLogger(__name__)

T = TypeVar("T")
B = TypeVar("B")

Gate = Callable[[Iterable[B]], Iterator[B]]
"""What :meth:`Publication.prepare_offline` hands the offline write: wraps its rows so
that they end only once the online write succeeded."""


class Publication:
    """One run's publication of the window [start, end); see the module docstring.

    ``online`` None: the run writes no online table, and the offline commit alone
    publishes the window.
    """

    def __init__(
        self,
        online: online_writer.OnlineWriter | None,
        start: dt.datetime,
        end: dt.datetime,
        *,
        recorded: online_writer.PendingWindow | None = None,
        started_at: float | None = None,
    ) -> None:
        self.start = start
        self.end = end
        self.table = None if online is None else online.table
        """The online table the run writes (None: none)."""
        self._written = False
        self.settle_waited = 0.0
        """Seconds the online write waited for the pending record to settle: what the
        run's preparation did not cover."""
        self.completed_at: float | None = None
        """When :meth:`complete` published the window, on the monotonic clock."""
        self._opened: concurrent.futures.Future[_Opened] = concurrent.futures.Future()
        self._opened.set_result(_Opened.record(online, start, end, recorded, started_at))

    @classmethod
    def open(
        cls,
        view: Any,
        online_table: str | None,
        start: dt.datetime,
        end: dt.datetime,
        *,
        client: Any | None = None,
        settings: online_writer.OnlineWriteSettings | None = None,
        label: str | None = None,
        recorded: online_writer.PendingWindow | None = None,
        started_at: float | None = None,
        background: bool = False,
    ) -> Publication:
        """The window's publication, through a writer of ``online_table`` (None: the
        run writes no online table). ``recorded``: the pending record as the run's
        launcher wrote it, before ``started_at`` (this process's start, on the
        monotonic clock); see :meth:`~featurekube.writer.online.OnlineWriter.open_window`.
        ``background``: the writer made and the record written as :meth:`opening` does."""
        if online_table is None:
            return cls(None, start, end)

        def writer() -> online_writer.OnlineWriter:
            return online_writer.OnlineWriter(
                online_table, view, client, settings=settings, label=label
            )

        if background:
            return cls.opening(
                online_table, writer, start, end, recorded=recorded, started_at=started_at
            )
        return cls(writer(), start, end, recorded=recorded, started_at=started_at)

    @classmethod
    def opening(
        cls,
        table: str,
        writer: Callable[[], online_writer.OnlineWriter],
        start: dt.datetime,
        end: dt.datetime,
        *,
        recorded: online_writer.PendingWindow | None = None,
        started_at: float | None = None,
    ) -> Publication:
        """The publication of [start, end) through ``table``, whose writer ``writer()``
        makes (a client's making takes a while) and whose pending record it writes in a
        thread of their own, while the run reads its source. Every write waits for the
        record first (and raises what writing it raised); a failure before writing
        withdraws it once written."""
        publication = cls(None, start, end)
        publication.table = table
        publication._opened = _in_thread(
            lambda: _Opened.record(writer(), start, end, recorded, started_at)
        )
        return publication

    @property
    def online(self) -> online_writer.OnlineWriter | None:
        """The run's online writer (None: no online table), once the window's pending
        record is written: waits for it, and raises what writing it raised."""
        return self._opened.result().writer

    @property
    def pending(self) -> online_writer.PendingWindow | None:
        """This run's pending record of the window (None without an online writer);
        waits as :attr:`online` does."""
        return self._opened.result().pending

    def check(
        self, online_table: str | None, start: dt.datetime, end: dt.datetime, label: str
    ) -> None:
        """Raise ValueError unless this is the publication of [start, end) through
        ``online_table``: a run given one opened by its caller writes through it."""
        if self.table != online_table or (self.start, self.end) != (start, end):
            raise ValueError(f"{label}: the publication given is of another window or online table")

    @contextlib.contextmanager
    def before_writing(self) -> Iterator[None]:
        """The part of the run before any write: if it fails, nothing of the window
        was written, and the pending record is put back as it was (as far as the store
        answers; a record left behind only hides the window until it is run again)."""
        try:
            yield
        except BaseException:
            if not self._written:
                self._withdraw()
            raise

    def _withdraw(self) -> None:
        try:
            opened = self._opened.result()  # a record being written is waited for
        except Exception:
            return  # not written: nothing to put back
        online, pending = opened.writer, opened.pending
        if online is not None and pending is not None:
            try:
                online.withdraw_window(pending)
            except Exception as exc:
                log.warning("%s: the window stays pending: %s", online.label, exc)

    def write_online(self, write: Callable[[], T]) -> T:
        """Run ``write`` (the online write), once the pending record has stood for the
        writer's ``settle_seconds``."""
        self._settle()
        self._written = True
        return write()

    def write_online_settling(self, write: Callable[[Callable[[], None]], T]) -> T:
        """Run ``write(settle)`` (the online write) at once: it may prepare what precedes
        its first item (a lease, the watermark, items built) and must call ``settle()``
        before sending it, which waits out the rest of the writer's ``settle_seconds``;
        so the wait passes while the write prepares rather than before it starts."""
        self._recorded()  # before the write's preparation (its lease, the watermark)
        self._written = True
        return write(self._settle)

    def _recorded(self) -> tuple[online_writer.OnlineWriter, float]:
        """The online writer, and since when the pending record has stood, once it is
        written: waits for it, and raises what writing it raised (a plain wait, not an
        assert: ``python -O`` would drop that)."""
        opened = self._opened.result()
        if opened.writer is None:
            raise ValueError("an online write of a publication without an online table")
        return opened.writer, opened.at

    def _settle(self) -> None:
        writer, since = self._recorded()
        wait = writer.settings.settle_seconds - (time.monotonic() - since)
        if wait > 0:
            time.sleep(wait)
            self.settle_waited += wait

    def commit_offline(self, commit: Callable[[], T]) -> T:
        """Run ``commit`` (the offline commit, after the online write succeeded)."""
        self._written = True
        return commit()

    def prepare_offline(self, write: Callable[[Gate[B]], T]) -> OfflineWrite[B, T]:
        """The offline write ``write(gate)``, to be run (in a thread of its own) while
        the online write runs: ``write`` must pass its rows through ``gate``, which
        holds back their end until :meth:`OfflineWrite.commit`. See the module
        docstring."""
        return OfflineWrite(self, write)

    def complete(self) -> None:
        """Remove the pending record: the window is complete in both stores."""
        online, pending = self.online, self.pending
        if online is not None and pending is not None and not online.close_window(pending):
            log.info(
                "%s: another run of [%s, %s) began since this one; it publishes the window",
                online.label,
                self.start.isoformat(),
                self.end.isoformat(),
            )
        self.completed_at = time.monotonic()


@dataclass(frozen=True)
class _Opened:
    """A publication's online side, once its pending record is written."""

    writer: online_writer.OnlineWriter | None
    pending: online_writer.PendingWindow | None
    at: float
    """Since when the record has stood, on the monotonic clock: when it was written,
    or (one its launcher wrote, still standing) when the run's process began."""

    @classmethod
    def record(
        cls,
        writer: online_writer.OnlineWriter | None,
        start: dt.datetime,
        end: dt.datetime,
        recorded: online_writer.PendingWindow | None,
        started_at: float | None,
    ) -> _Opened:
        """Record [start, end) as pending through ``writer`` (None: nothing to record)."""
        if writer is None:
            return cls(None, None, time.monotonic())
        pending = writer.open_window(start, end, recorded=recorded)
        launched = started_at if pending.launched and started_at is not None else None
        return cls(writer, pending, time.monotonic() if launched is None else launched)


def _in_thread(task: Callable[[], T]) -> concurrent.futures.Future[T]:
    """``task()`` run in a thread of its own. A daemon: a run that fails without
    waiting for it (before it could write anything) does not wait for the store."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(task())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="pending-record", daemon=True).start()
    return future


class OfflineWrite(Generic[B, T]):
    """An offline write running beside the online write, its rows' end (and so its
    commit) held back until :meth:`commit`; from :meth:`Publication.prepare_offline`.

    Entering starts it in a thread; :meth:`commit` (after the online write succeeded)
    releases the rows and returns what the write returns, or raises what it raised.
    Leaving without :meth:`commit` ends the rows in an error, so that nothing is
    committed, and waits for the write to stop."""

    def __init__(self, publication: Publication, write: Callable[[Gate[B]], T]) -> None:
        self._publication = publication
        self._write = write
        self._released = threading.Event()
        self._succeeded = False
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._future: concurrent.futures.Future[T] | None = None
        self.seconds = 0.0
        """How long the write ran, from its start to its commit."""

    def __enter__(self) -> OfflineWrite[B, T]:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="offline")
        self._future = self._pool.submit(self._run)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._released.set()  # without commit(): the rows end in an OfflineWriteError
        assert self._pool is not None and self._future is not None
        try:
            self._future.exception()  # waits; an error here is one commit() raises
        finally:
            self._pool.shutdown()

    def commit(self) -> T:
        """Release the rows' end, the online write having succeeded, and wait for the
        commit."""
        assert self._future is not None, "commit() inside the with block"
        self._publication._written = True
        self._succeeded = True
        self._released.set()
        return self._future.result()

    def _run(self) -> T:
        began = time.perf_counter()
        try:
            return self._write(self._gate)
        finally:
            self.seconds = time.perf_counter() - began

    def _gate(self, rows: Iterable[B]) -> Iterator[B]:
        for row in rows:
            if self._released.is_set() and not self._succeeded:
                break  # no need to write the rest
            yield row
        self._released.wait()
        if not self._succeeded:
            raise errors.OfflineWriteError(
                "the online write did not succeed: the offline write stops, committing nothing"
            )
