"""A window's rows read once and handed on twice, for the python engine; does I/O
(a local file).

The python engine reads a plain view's window in one pass: each record batch the
source query yields is appended to a local parquet file (the *spill*), which DuckDB
reads afterwards as often as it likes (duplicates, each entity's newest row,
statistics, a retried commit), and handed through a :class:`Feed` to the offline
write running in a thread of its own, which uploads the rows while the source is still
being read. Neither the reader nor the writer holds more than a few batches; the
rows rest on disk.

    feed = Feed()
    # in the offline write's thread:  for batch in feed: ...
    with Spill(path, schema) as spill:
        for batch in batches:
            spill.write(batch)
            feed.put(batch)
    feed.close()
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["DEFAULT_DEPTH", "Feed", "Spill", "read"]

DEFAULT_DEPTH = 4
"""Batches a :class:`Feed` holds at most: what the reader may run ahead of the writer."""

_END = object()
_WAIT_SECONDS = 0.1


class Feed:
    """Record batches passed from one thread to another, at most ``depth`` waiting.

    Iterated once, by the consumer; :meth:`put` blocks while the feed is full, and
    drops the batch once the consumer has stopped (its write failed or was abandoned:
    what it raised is reported where its result is awaited)."""

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        if depth < 1:
            raise ValueError(f"a feed's depth must be at least 1, not {depth}")
        self._queue: queue.Queue[object] = queue.Queue(depth)
        self._stopped = threading.Event()
        self._taken = False
        self._lock = threading.Lock()

    @property
    def taken(self) -> bool:
        """Whether the consumer has begun iterating (a feed is iterated only once)."""
        return self._taken

    def put(self, batch: pa.RecordBatch) -> bool:
        """Hand ``batch`` on; False when the consumer has stopped and it was dropped."""
        return self._put(batch)

    def close(self) -> None:
        """End the batches: the consumer's iteration ends after the last one."""
        self._put(_END)

    def _put(self, item: object) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=_WAIT_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Generator[pa.RecordBatch, None, None]:
        with self._lock:
            if self._taken:
                raise RuntimeError("a feed is iterated only once")
            self._taken = True
        try:
            while (item := self._queue.get()) is not _END:
                assert isinstance(item, pa.RecordBatch)
                yield item
        finally:
            self._stopped.set()


class Spill:
    """A local parquet file of record batches of one ``schema``, appended to in order;
    closed (and complete) when the ``with`` block ends without an error."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.rows = 0
        """Rows written so far."""
        # Uncompressed: the file lives for one run on local disk, and is read back at
        # once; encoding time is what counts.
        self._writer = pq.ParquetWriter(
            str(path), schema, compression="none", use_dictionary=False, write_statistics=False
        )

    def write(self, batch: pa.RecordBatch) -> None:
        """Append ``batch`` (of the spill's schema) as one row group."""
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def __enter__(self) -> Spill:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._writer.close()


def read(path: Path, batch_size: int) -> Iterator[pa.RecordBatch]:
    """The batches of the complete spill file at ``path``, at most ``batch_size`` rows
    each, read as they are taken."""
    with pq.ParquetFile(str(path)) as spilled:
        yield from spilled.iter_batches(batch_size=batch_size)
