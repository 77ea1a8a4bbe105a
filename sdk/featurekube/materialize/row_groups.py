"""A dataset read one parquet row group at a time, when its consumer asks; does I/O.

The python engine reads a window's source through :func:`read` rather than pyarrow's
scanner, which decodes ahead of a slower consumer even with a readahead of one batch and
one file: reading 10M rows behind a consumer that took 20 batches a second, the scanner
held up to 262 MB of Arrow memory (a peak RSS of 658 MB), this reader 105 MB (503 MB).
Here one row group is decoded at a time, in the order of the files and of their row
groups, and a row group whose statistics rule out ``filter`` is not read.

Which row groups to read is known only from each file's footer, so every file of the
source costs a request per window, whatever its rows' times. The footers are fetched
:data:`FOOTER_FETCHES` at a time, ahead of the reading, rather than one after another:
a window of a source holding a few thousand files waits for a few hundred round trips,
not for a few thousand.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import pyarrow as pa

__all__ = ["FOOTER_FETCHES", "fetch_footers", "read"]

T = TypeVar("T")
R = TypeVar("R")

FOOTER_FETCHES = 16
"""Files whose footers are fetched at once: small requests (2 KB for the benchmarks'
files of 8 columns), which pyarrow makes without holding the interpreter."""


def read(
    dataset: Any, columns: Sequence[str], filter: Any, batch_size: int
) -> pa.RecordBatchReader:
    """The rows of ``dataset`` (a ``pyarrow.dataset.Dataset``) matching ``filter`` (a
    pyarrow expression, or None), its ``columns`` only, at most ``batch_size`` rows a
    batch."""
    schema = pa.schema([dataset.schema.field(name) for name in columns])
    return pa.RecordBatchReader.from_batches(
        schema, _batches(dataset, list(columns), filter, batch_size)
    )


def fetch_footers(dataset: Any, filter: Any = None) -> None:
    """Fetch the footers of the files of ``dataset`` (those ``filter`` may match, by
    their partitions), :data:`FOOTER_FETCHES` at a time; the dataset's fragments keep
    them, so that what reads or counts it next (``count_rows``, which fetches them one
    after another) has them."""
    for _ in _footed_fragments(dataset, filter):
        pass


def _footed_fragments(dataset: Any, filter: Any) -> Iterator[Any]:
    """The fragments of ``dataset`` that ``filter`` may match, in the files' order,
    each once its footer is in; the footers of the next files arrive meanwhile."""
    with concurrent.futures.ThreadPoolExecutor(FOOTER_FETCHES) as pool:
        yield from _ahead(pool, _footed, dataset.get_fragments(filter=filter), FOOTER_FETCHES * 4)


def _footed(fragment: Any) -> Any:
    """``fragment``, its footer fetched if it is a parquet file's."""
    import pyarrow.dataset as pads

    if isinstance(fragment, pads.ParquetFileFragment):
        fragment.ensure_complete_metadata()  # kept by the fragment: fetched once
    return fragment


def _batches(
    dataset: Any, columns: list[str], filter: Any, batch_size: int
) -> Iterator[pa.RecordBatch]:
    for fragment in _footed_fragments(dataset, filter):
        yield from _row_groups(fragment, dataset, columns, filter, batch_size)


def _row_groups(
    fragment: Any, dataset: Any, columns: list[str], filter: Any, batch_size: int
) -> Iterator[pa.RecordBatch]:
    import pyarrow.dataset as pads

    parts = (
        fragment.split_by_row_group(filter, schema=dataset.schema)
        if isinstance(fragment, pads.ParquetFileFragment)
        else [fragment]
    )
    for part in parts:
        yield from part.to_batches(
            schema=dataset.schema,
            columns=columns,
            filter=filter,
            batch_size=batch_size,
            batch_readahead=0,
            fragment_readahead=0,
            use_threads=False,
        )


def _ahead(
    pool: concurrent.futures.Executor,
    task: Callable[[T], R],
    items: Iterable[T],
    window: int,
) -> Generator[R, None, None]:
    """``task(item)`` of each of ``items``, in their order, run in ``pool`` at most
    ``window`` items ahead of the one taken; the rest cancelled when left early."""
    pending: collections.deque[concurrent.futures.Future[R]] = collections.deque()
    left = iter(items)
    try:
        for item in itertools.islice(left, window):
            pending.append(pool.submit(task, item))
        while pending:
            done = pending.popleft().result()
            for item in itertools.islice(left, 1):
                pending.append(pool.submit(task, item))
            yield done
    finally:
        for future in pending:
            future.cancel()
