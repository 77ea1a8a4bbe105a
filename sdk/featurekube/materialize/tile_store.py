"""A view version's tile table: reading and replacing tiles with delta-rs; does I/O.

The table (:func:`featurekube.offline.layout.tiles_uri`, beside the offline table)
holds the rows of :mod:`featurekube.materialize.tiles` — per entity, tile size and
tile end, the partial aggregates — and a marker row per (size, end) whose tiles are
stored, partitioned by ``tile_size``. A run replaces the ranges it computed in one
commit (delta-rs' ``write_deltalake(mode="overwrite", predicate=...)``), so re-running a
window replaces its tiles with the same ones, and a reader sees a range's tiles and
its marker together or neither. A table whose columns no longer match the view's
(the source's column types changed) is replaced whole by the next write.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featurekube.materialize import tiles
from featurekube.writer import offline as offline_writer
from featurekube.writer.errors import OfflineWriteError

__all__ = ["TileStore", "clear_span"]

log = logging.getLogger(__name__)

_CONFLICTS = ("CommitFailedError", "ConcurrentAppend", "ConcurrentDelete", "conflict")
_ROW_GROUP = 8192


@dataclass
class TileStore:
    """One view version's tile table."""

    uri: str
    storage_options: Mapping[str, str] | None = None
    label: str = "tiles"
    max_commit_attempts: int = 6
    _options: dict[str, str] = field(init=False, repr=False)
    _schema: pa.Schema | None = field(init=False, default=None, repr=False)
    _table: Any = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.uri.startswith("s3a://"):
            self.uri = "s3://" + self.uri.removeprefix("s3a://")
        self._options = offline_writer.storage_options_for(self.uri, self.storage_options)

    def _open(self) -> Any:
        """The table, or None when there is none."""
        import deltalake
        from deltalake.exceptions import TableNotFoundError

        try:
            return deltalake.DeltaTable(self.uri, storage_options=self._options)
        except TableNotFoundError:
            return None

    def load(
        self, keys: Iterable[tiles.TileKey], where: pc.Expression | None = None
    ) -> pa.Table | None:
        """The rows (tiles and markers) of ``keys``; None when there is no table.
        ``where``: only the rows it holds for (a stream reads its affected entities')."""
        keys = list(keys)  # read twice below
        table = self._open()
        self._table = table
        if table is None:
            return None
        ranges = _merged((size, end, end) for size, end in keys)
        if not ranges:
            return table.schema().to_arrow().empty_table()
        # The log's statistics skip the files without any of the ranges; the filter
        # then keeps exactly the keys.
        dataset = table.to_pyarrow_dataset(file_pruning_predicate=_predicate(ranges))
        self._schema = dataset.schema
        by_size: dict[int, list[int]] = {}
        for size, end in keys:
            by_size.setdefault(size, []).append(end)
        condition = None
        for size, ends in sorted(by_size.items()):
            term = (pc.field(tiles.TILE_SIZE) == size) & pc.field(tiles.TILE_END).isin(
                pa.array(sorted(ends), pa.int64())
            )
            condition = term if condition is None else condition | term
        if where is not None and condition is not None:
            condition = condition & where
        return dataset.to_table(filter=condition)

    def markers(self, keys: Iterable[tiles.TileKey]) -> set[tiles.TileKey] | None:
        """Which of ``keys`` have their tiles stored (a marker row), reading only the
        markers' columns; None when there is no table. For an engine that reads the
        tiles themselves elsewhere (Spark), so they never pass through this process."""
        keys = list(keys)
        table = self._open()
        self._table = table
        if table is None:
            return None
        ranges = _merged((size, end, end) for size, end in keys)
        pruning = _predicate(ranges) if ranges else None
        dataset = table.to_pyarrow_dataset(file_pruning_predicate=pruning)
        self._schema = dataset.schema
        if not ranges:
            return set()
        found = dataset.to_table(
            columns=[tiles.TILE_SIZE, tiles.TILE_END], filter=pc.field(tiles.MARKER)
        )
        stored = zip(
            found.column(tiles.TILE_SIZE).to_pylist(),
            found.column(tiles.TILE_END).to_pylist(),
            strict=True,
        )
        wanted = set(keys)
        return {key for key in stored if key in wanted}

    def matches(self, layout: tiles.TileLayout) -> bool:
        """Whether the table (as last loaded) has ``layout``'s columns."""
        return self._schema is None or _same_columns(self._schema, layout.schema())

    def replace(
        self,
        rows: pa.Table,
        layout: tiles.TileLayout,
        *,
        computed: Sequence[tiles.TileKey],
        cleared: Sequence[tuple[int, int, int]],
        transaction: tuple[str, int] | None = None,
    ) -> bool:
        """In one commit: delete every tile and marker in ``cleared`` (size, first end,
        last end) and in ``computed``, then add ``rows`` and a marker for each
        ``computed`` key. ``transaction``: (app id, version), a Delta app transaction
        the commit carries; when that version or a later one is committed already, the
        commit is skipped and False returned (a stream's micro-batch run again)."""
        schema = layout.schema()
        data = pa.concat_tables([rows.cast(schema), _markers(computed, schema)])
        # Sorted, in small row groups: a later read of a few ends skips the rest.
        data = data.sort_by([(tiles.TILE_SIZE, "ascending"), (tiles.TILE_END, "ascending")])
        return self._commit(lambda: data, layout, computed, cleared, transaction)

    def transaction_version(self, app_id: str) -> int | None:
        """The latest version of the app transaction ``app_id`` committed; None: none."""
        table = self._open()
        if table is None:
            return None
        version: int | None = table.transaction_version(app_id)
        return version

    def replace_batches(
        self,
        batches: Callable[[], Iterable[pa.RecordBatch]],
        layout: tiles.TileLayout,
        *,
        computed: Sequence[tiles.TileKey],
        cleared: Sequence[tuple[int, int, int]],
    ) -> None:
        """:meth:`replace` with the rows as a stream: ``batches()`` gives them (again
        for each attempt at the commit), each batch sorted as it comes, so this
        process holds one batch at a time however many tiles are written."""
        schema = layout.schema()

        def stream() -> pa.RecordBatchReader:
            def each() -> Iterator[pa.RecordBatch]:
                for batch in batches():
                    if batch.num_rows:
                        table = pa.Table.from_batches([batch]).cast(schema)
                        order = [(tiles.TILE_SIZE, "ascending"), (tiles.TILE_END, "ascending")]
                        yield from table.sort_by(order).to_batches()
                yield from _markers(computed, schema).to_batches()

            return pa.RecordBatchReader.from_batches(schema, each())

        self._commit(stream, layout, computed, cleared)

    def _commit(
        self,
        data: Callable[[], Any],
        layout: tiles.TileLayout,
        computed: Sequence[tiles.TileKey],
        cleared: Sequence[tuple[int, int, int]],
        transaction: tuple[str, int] | None = None,
    ) -> bool:
        import deltalake

        schema = layout.schema()
        ranges = list(cleared) + [(size, end, end) for size, end in computed]
        predicate = _predicate(_merged(ranges))
        options: dict[str, Any] = {
            "partition_by": [tiles.TILE_SIZE],
            "storage_options": self._options,
            "writer_properties": deltalake.WriterProperties(max_row_group_size=_ROW_GROUP),
        }
        if transaction is not None:
            options["commit_properties"] = deltalake.CommitProperties(
                app_transactions=[
                    deltalake.Transaction(app_id=transaction[0], version=transaction[1])
                ]
            )
        for attempt in range(1, self.max_commit_attempts + 1):
            target = self._table if self._table is not None else self._open()
            if transaction is not None and target is not None:
                done = target.transaction_version(transaction[0])
                if done is not None and done >= transaction[1]:
                    return False
            try:
                if target is None:
                    deltalake.write_deltalake(self.uri, data(), mode="append", **options)
                elif not self.matches(layout):
                    deltalake.write_deltalake(
                        target, data(), mode="overwrite", schema_mode="overwrite", **options
                    )
                    self._schema = schema
                elif predicate:
                    deltalake.write_deltalake(
                        target, data(), mode="overwrite", predicate=predicate, **options
                    )
                return True
            except Exception as exc:
                text = f"{type(exc).__name__} {exc}"
                if (
                    not any(name in text for name in _CONFLICTS)
                    or attempt == self.max_commit_attempts
                ):
                    raise OfflineWriteError(
                        f"{self.label}: writing the tile table {self.uri} failed: "
                        f"{type(exc).__name__}: {str(exc).strip()[:2000]}"
                    ) from exc
                log.info(
                    "%s: tile commit to %s conflicted, retrying: %s", self.label, self.uri, exc
                )
                self._table = None  # read the log again
                time.sleep(random.uniform(0.1, 0.5 * attempt))
        raise AssertionError("unreachable")


def clear_span(
    uri: str,
    interval: int,
    first: int,
    last: int,
    storage_options: Mapping[str, str] | None = None,
) -> None:
    """Delete the tiles a window computing the boundaries ``first`` to ``last`` makes
    stale — its intervals and the coarse tiles holding them — for an engine that does
    not write tiles: the next window that needs them computes them again."""

    table = TileStore(uri, storage_options)._open()
    if table is None:
        return
    sizes = tiles.tile_sizes(interval)
    table.delete(_predicate([(interval, first, last), *tiles.stale_ranges(first, last, sizes)]))


def _predicate(ranges: Iterable[tuple[int, int, int]]) -> str:
    size, end = tiles.TILE_SIZE, tiles.TILE_END
    return " OR ".join(
        f"({size} = {s} AND {end} >= {lo} AND {end} <= {hi})" for s, lo, hi in ranges
    )


def _markers(keys: Sequence[tiles.TileKey], schema: pa.Schema) -> pa.Table:
    columns = {
        tiles.TILE_SIZE: pa.array([k[0] for k in keys], pa.int64()),
        tiles.TILE_END: pa.array([k[1] for k in keys], pa.int64()),
        tiles.MARKER: pa.array([True] * len(keys), pa.bool_()),
    }
    return pa.table(
        {f.name: columns.get(f.name, pa.nulls(len(keys), f.type)) for f in schema},
        schema=schema,
    )


def _merged(ranges: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Ranges of one size that touch or overlap joined, so the predicate stays short."""
    out: list[tuple[int, int, int]] = []
    for size, lo, hi in sorted(ranges):
        if out and out[-1][0] == size and lo <= out[-1][2] + size:
            out[-1] = (size, out[-1][1], max(hi, out[-1][2]))
        else:
            out.append((size, lo, hi))
    return out


def _same_columns(found: pa.Schema, wanted: pa.Schema) -> bool:
    have = {f.name: f.type for f in found}
    return len(have) == len(wanted) and all(have.get(f.name) == f.type for f in wanted)
