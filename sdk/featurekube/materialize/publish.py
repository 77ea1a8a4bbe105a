"""The order in which a window's rows reach the stores, so that no reader sees a window
that is not complete in both (docs/semantics.md, "Materialization windows"); does I/O
through :mod:`featurekube.writer`. Shared by both engines.

1. Before computing, the window is recorded as pending in its online table
   (:meth:`~featurekube.writer.online.OnlineWriter.open_window`): the feature server
   hides items with event times in the window from then on.
2. Its online values are written (idempotent: only newer values replace stored ones,
   so a retry is safe).
3. Its offline rows are committed, in one Delta commit: the publish point. An offline
   reader sees the window from here, never before its online write succeeded.
4. The pending record is removed: the feature server serves the window's values.

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
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from featurekube.writer import online as online_writer

__all__ = ["Publication"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Publication:
    """One run's publication of the window [start, end); see the module docstring.

    ``online`` None: the run writes no online table, and the offline commit alone
    publishes the window.
    """

    def __init__(
        self, online: online_writer.OnlineWriter | None, start: dt.datetime, end: dt.datetime
    ) -> None:
        self.online = online
        self.start = start
        self.end = end
        self.pending: online_writer.PendingWindow | None = None
        """This run's pending record of the window (None without an online writer)."""
        self._opened_at = 0.0
        self._written = False
        if online is not None:
            self.pending = online.open_window(start, end)
            self._opened_at = time.monotonic()

    @contextlib.contextmanager
    def before_writing(self) -> Iterator[None]:
        """The part of the run before any write: if it fails, nothing of the window
        was written, and the pending record is put back as it was (as far as the store
        answers; a record left behind only hides the window until it is run again)."""
        try:
            yield
        except BaseException:
            if self.online is not None and self.pending is not None and not self._written:
                try:
                    self.online.withdraw_window(self.pending)
                except Exception as exc:
                    log.warning("%s: the window stays pending: %s", self.online.label, exc)
            raise

    def write_online(self, write: Callable[[], T]) -> T:
        """Run ``write`` (the online write), once the pending record has stood for the
        writer's ``settle_seconds``."""
        assert self.online is not None, "write_online needs an online writer"
        wait = self.online.settings.settle_seconds - (time.monotonic() - self._opened_at)
        if wait > 0:
            time.sleep(wait)
        self._written = True
        return write()

    def commit_offline(self, commit: Callable[[], T]) -> T:
        """Run ``commit`` (the offline commit, after the online write succeeded)."""
        self._written = True
        return commit()

    def complete(self) -> None:
        """Remove the pending record: the window is complete in both stores."""
        if self.online is None or self.pending is None:
            return
        if not self.online.close_window(self.pending):
            log.info(
                "%s: another run of [%s, %s) began since this one; it publishes the window",
                self.online.label,
                self.start.isoformat(),
                self.end.isoformat(),
            )
