"""Tiles: per-interval partial aggregates of a view's events, and how they combine into
the stepped aggregation rows; pure (numpy and pyarrow, no I/O).

A tile of size L ending at ``end`` (a multiple of L, from the Unix epoch) holds, per
entity, what the aggregations need of the events with ``end - L < E <= end`` — the
same half-open side as an aggregation window (docs/semantics.md, "Aggregations"), so
the window W at boundary t, ``(t - W, t]``, is exactly a set of whole tiles. Sizes
are the aggregation interval S and, when they are multiples of it, an hour and a day
(:func:`tile_sizes`); :func:`decompose` covers a window with the fewest of them, so a
30-day window at any boundary takes a few dozen tiles, not 4,320 intervals.

Per entity and aggregated column a tile keeps mergeable, exact partials:

- ``#n``: the non-null values (count);
- ``#moments``: the exact sum and sum of squares (:class:`~featurekube.materialize.
  moments.Moments`, in text), for sum, mean and stddev;
- ``#min``, ``#max``: the least and greatest value (a NaN makes them NaN);
- ``#last``, ``#last_event``, ``#last_created``: the last non-null value and its event
  and created times (among events equal in both, the greatest value);
- ``#distinct``: the distinct values, for ``count_distinct`` (exact sets);

and ``latest_event``, the entity's latest event in the tile, of any column. Merging
tiles gives the partials of their union whatever the grouping, so
:func:`combine` gives exactly the rows of :func:`featurekube.materialize.aggregate.
aggregate_entity` over the same events.

A marker row (``tile_marker`` true, keys null) says the tiles of one (size, end) are
stored for every entity: an entity without events there has no row, and the marker
tells that apart from a tile never computed.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurekube.materialize import aggregate, moments
from featurekube.materialize.plan import CREATED_MICROS, EVENT_MICROS, AggregationPlan

__all__ = [
    "LATEST",
    "MARKER",
    "TILE_END",
    "TILE_SIZE",
    "Resolution",
    "TileKey",
    "TileLayout",
    "build_coarse",
    "build_tiles",
    "children",
    "combine",
    "complete",
    "decompose",
    "layout_for",
    "merge_rows",
    "needed_tiles",
    "resolve",
    "runs",
    "select",
    "stale_ranges",
    "tile_sizes",
    "tiled_rows",
]

TILE_SIZE = "tile_size"
"""The tile's length, in microseconds (the table's partition column)."""
TILE_END = "tile_end"
"""The tile's end in microseconds: it holds the events with end - size < E <= end."""
MARKER = "tile_marker"
"""True on a marker row: the tiles of (size, end) are stored for every entity."""
LATEST = "latest_event"
"""The entity's latest event in the tile, of any column (microseconds)."""

TileKey = tuple[int, int]
"""(size, end) of a tile, in microseconds."""

_HOUR = 3_600_000_000
_DAY = 24 * _HOUR
_INT64 = 2**63


def tile_sizes(interval: int) -> tuple[int, ...]:
    """The tile sizes of a view with aggregation interval ``interval`` (µs), smallest
    first: the interval, then an hour and a day where each is a multiple of the last.

    >>> [s // 60_000_000 for s in tile_sizes(600_000_000)]
    [10, 60, 1440]
    >>> [s // 60_000_000 for s in tile_sizes(7 * 60_000_000)]
    [7]
    """
    sizes = [interval]
    for size in (_HOUR, _DAY):
        if size > sizes[-1] and size % sizes[-1] == 0:
            sizes.append(size)
    return tuple(sizes)


def decompose(lo: int, hi: int, sizes: Sequence[int]) -> list[TileKey]:
    """The tiles that make up ``(lo, hi]`` (both multiples of the smallest size):
    from ``lo``, always the largest tile that starts there and fits.

    >>> m = 60_000_000
    >>> [(s // m, e // m) for s, e in decompose(50 * m, 190 * m, (10 * m, 60 * m))]
    [(10, 60), (60, 120), (60, 180), (10, 190)]
    """
    out: list[TileKey] = []
    at = lo
    while at < hi:
        size = sizes[0]
        for candidate in reversed(sizes):
            if at % candidate == 0 and at + candidate <= hi:
                size = candidate
                break
        out.append((size, at + size))
        at += size
    return out


def children(key: TileKey, sizes: Sequence[int]) -> list[TileKey]:
    """The tiles of the next smaller size that make up a coarse tile."""
    size, end = key
    smaller = sizes[sizes.index(size) - 1]
    return [(smaller, end - size + smaller * (i + 1)) for i in range(size // smaller)]


def needed_tiles(plan: AggregationPlan, sizes: Sequence[int]) -> set[TileKey]:
    """Every tile :func:`combine` reads for the boundaries ``plan`` owns: the windows
    at each owned boundary and the one before it, the span the latest event is taken
    from, and the intervals whose events can change a value at an owned boundary."""
    first, last = plan.first_boundary, plan.last_boundary
    if first is None or last is None:
        return set()
    interval, longest = plan.interval, plan.longest_window
    keys: set[TileKey] = set()
    for w in (0, *plan.windows):
        keys.update((interval, k) for k in range(first - w, last - w + 1, interval))
    for p in range(first - interval, last + 1, interval):
        for w in plan.windows:
            keys.update(decompose(p - w, p, sizes))
        if p >= first:
            keys.update(decompose(p - interval - longest, p, sizes))
    return keys


def stale_ranges(first: int, last: int, sizes: Sequence[int]) -> list[tuple[int, int, int]]:
    """(size, first end, last end) of the coarse tiles that hold any interval ending in
    [first, last]: recomputing those intervals makes them stale."""
    return [(s, -(-first // s) * s, -(-last // s) * s) for s in sizes[1:]]


@dataclass(frozen=True)
class Resolution:
    """Where each needed tile comes from in one run."""

    from_source: list[int]
    """Ends of the intervals (smallest tiles) computed from the source, ascending."""
    stored: set[TileKey]
    """Tiles read from the store."""
    built: list[TileKey]
    """Coarse tiles built from their children, smaller sizes first."""


def resolve(
    needed: Iterable[TileKey],
    own: tuple[int, int],
    stored: set[TileKey],
    sizes: Sequence[int],
) -> Resolution:
    """How to get ``needed``: the window's own intervals (ends in ``own``, inclusive)
    always from the source, the ``stored`` ones (less those made stale by the own
    intervals) from the store, a missing coarse tile from its children, and a missing
    interval from the source."""
    first, last = own
    stale = stale_ranges(first, last, sizes)

    def present(key: TileKey) -> bool:
        size, end = key
        if any(size == s and lo <= end <= hi for s, lo, hi in stale):
            return False
        return key in stored

    from_source = set(range(first, last + 1, sizes[0]))
    read: set[TileKey] = set()
    built: set[TileKey] = set()
    pending = list(needed)
    seen: set[TileKey] = set()
    while pending:
        key = pending.pop()
        if key in seen:
            continue
        seen.add(key)
        size, end = key
        if size == sizes[0] and first <= end <= last:
            continue
        if present(key):
            read.add(key)
        elif size == sizes[0]:
            from_source.add(end)
        else:
            built.add(key)
            pending.extend(children(key, sizes))
    order = sorted(built)  # sizes ascending: children before parents
    return Resolution(sorted(from_source), read, order)


def runs(ends: Sequence[int], step: int) -> list[tuple[int, int]]:
    """Consecutive runs of ``ends`` (ascending, ``step`` apart) as (first, last)."""
    out: list[tuple[int, int]] = []
    for end in ends:
        if out and end == out[-1][1] + step:
            out[-1] = (out[-1][0], end)
        else:
            out.append((end, end))
    return out


# -- the layout ---------------------------------------------------------------------------

_VALUE_TYPES = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.int64(),
    "string": pa.string(),
}


@dataclass(frozen=True)
class Partials:
    """What a tile keeps of one aggregated column."""

    column: str
    kind: str
    """int, float, bool, timestamp (as µs), string, or other (counted only)."""
    moments: bool
    squares: bool
    """Whether ``moments`` carries the sum of squares (for stddev)."""
    minimum: bool
    maximum: bool
    last: bool
    distinct: bool

    def field(self, part: str) -> str:
        return f"{self.column}#{part}"


@dataclass(frozen=True)
class TileLayout:
    """The columns of a view version's tile table."""

    keys: tuple[tuple[str, pa.DataType], ...]
    partials: tuple[Partials, ...]
    sizes: tuple[int, ...]

    def schema(self) -> pa.Schema:
        fields = [pa.field(name, type_) for name, type_ in self.keys]
        fields += [
            pa.field(TILE_SIZE, pa.int64(), nullable=False),
            pa.field(TILE_END, pa.int64(), nullable=False),
            pa.field(MARKER, pa.bool_(), nullable=False),
            pa.field(LATEST, pa.int64()),
        ]
        for p in self.partials:
            fields.append(pa.field(p.field("n"), pa.int64()))
            value = _VALUE_TYPES.get(p.kind, pa.null())
            if p.moments:
                fields.append(pa.field(p.field("moments"), pa.string()))
            if p.minimum:
                fields.append(pa.field(p.field("min"), value))
            if p.maximum:
                fields.append(pa.field(p.field("max"), value))
            if p.last:
                fields.append(pa.field(p.field("last"), value))
                fields.append(pa.field(p.field("last_event"), pa.int64()))
                fields.append(pa.field(p.field("last_created"), pa.int64()))
            if p.distinct:
                fields.append(pa.field(p.field("distinct"), pa.list_(value)))
        return pa.schema(fields)


def _kind(type_: pa.DataType) -> str:
    if pa.types.is_integer(type_):
        return "int"
    if pa.types.is_floating(type_):
        return "float"
    if pa.types.is_boolean(type_):
        return "bool"
    if pa.types.is_timestamp(type_):
        return "timestamp"
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return "string"
    return "other"


def layout_for(plan: AggregationPlan, keys: Sequence[str], events: pa.Schema) -> TileLayout | None:
    """The tile layout of ``plan`` over events of schema ``events``; None when an
    aggregation cannot be tiled (a column of a type tiles do not keep, such as an
    array, under anything but ``count``): the job then computes from the events."""
    by_column: dict[str, set[str]] = {}
    for step in plan.steps:
        by_column.setdefault(step.column, set()).add(step.function)
    partials = []
    for column, functions in by_column.items():
        kind = _kind(events.field(column).type)
        wants_moments = bool(functions & {"sum", "mean", "stddev"})
        if kind == "other" and functions != {"count"}:
            return None
        if kind == "timestamp" and wants_moments:
            return None
        partials.append(
            Partials(
                column,
                kind,
                moments=wants_moments,
                squares="stddev" in functions,
                minimum="min" in functions,
                maximum="max" in functions,
                last="last" in functions,
                distinct="count_distinct" in functions,
            )
        )
    key_types = tuple((k, events.field(k).type) for k in keys)
    return TileLayout(key_types, tuple(partials), tile_sizes(plan.interval))


# -- building tiles -----------------------------------------------------------------------


def _int64s(column: pa.ChunkedArray | pa.Array) -> np.ndarray[Any, np.dtype[np.int64]]:
    return np.asarray(column.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _group_starts(table: pa.Table, columns: Sequence[str]) -> list[int]:
    rows = table.num_rows
    changed = np.zeros(rows, dtype=bool)
    if rows:
        changed[0] = True
    for name in columns:
        values = table.column(name).to_numpy(zero_copy_only=False)
        changed[1:] |= values[1:] != values[:-1]
    return [*np.flatnonzero(changed).tolist(), rows]


def _present(column: pa.ChunkedArray, kind: str) -> Any:
    """The non-null values: numpy for numbers, bools and times, else a list."""
    present = column.filter(column.is_valid())
    if kind == "timestamp":
        return _int64s(present)
    if kind in ("int", "float", "bool"):
        return present.to_numpy(zero_copy_only=False)
    return present.to_pylist()


def _unique(values: Any) -> list[Any]:
    if isinstance(values, np.ndarray):
        return [_python(v) for v in np.unique(values)]
    return sorted(set(values))


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _moments(part: Any, kind: str, squares: bool) -> moments.Moments:
    if kind == "int":
        return moments.of_ints(part.tolist(), squares=squares)
    return moments.of_floats(np.asarray(part, dtype=np.float64), squares=squares)


def build_tiles(events: pa.Table, layout: TileLayout, size: int | None = None) -> pa.Table:
    """The tiles of ``size`` (the smallest by default) of ``events`` (keys, aggregated
    columns, ``EVENT_MICROS`` and ``CREATED_MICROS``), one row per entity and tile."""
    schema = layout.schema()
    if events.num_rows == 0:
        return schema.empty_table()
    size = size or layout.sizes[0]
    keys = [k for k, _ in layout.keys]
    times = _int64s(events.column(EVENT_MICROS))
    events = events.append_column("__tile_end", pa.array(-(-times // size) * size))
    order = [(k, "ascending") for k in [*keys, "__tile_end", EVENT_MICROS, CREATED_MICROS]]
    events = events.sort_by(order)
    starts = np.asarray(_group_starts(events, [*keys, "__tile_end"]), dtype=np.int64)
    heads = pa.array(starts[:-1], pa.int64())
    times = _int64s(events.column(EVENT_MICROS))
    created = _int64s(events.column(CREATED_MICROS))
    groups = len(starts) - 1
    columns: dict[str, Any] = {k: events.column(k).take(heads) for k in keys}
    columns[TILE_SIZE] = pa.repeat(pa.scalar(size, pa.int64()), groups)
    columns[TILE_END] = events.column("__tile_end").take(heads)
    columns[MARKER] = pa.repeat(pa.scalar(False), groups)
    columns[LATEST] = pa.array(times[starts[1:] - 1])
    for p in layout.partials:
        column = events.column(p.column)
        valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        # Where each group starts among the non-null values, and the groups with any.
        cuts = np.concatenate(([0], np.cumsum(valid)))[starts]
        counts = np.diff(cuts)
        columns[p.field("n")] = pa.array(counts, pa.int64())
        if p.kind == "other":
            continue
        values = _present(column, p.kind)
        some = np.flatnonzero(counts > 0)
        firsts, lasts = cuts[:-1][some], cuts[1:][some] - 1
        if p.moments:
            texts: list[str | None] = [None] * groups
            for g, text in zip(some.tolist(), _moment_texts(values, p, firsts, lasts), strict=True):
                texts[g] = text
            columns[p.field("moments")] = pa.array(texts, pa.string())
        if p.minimum:
            columns[p.field("min")] = _spread(_reduced(values, firsts, lasts, min), some, groups, p)
        if p.maximum:
            columns[p.field("max")] = _spread(_reduced(values, firsts, lasts, max), some, groups, p)
        if p.last:
            v_times, v_created = times[valid], created[valid]
            # The last value is the greatest among the final run of events equal in
            # event and created time (nearly always a run of one).
            same = np.concatenate(
                ([False], (v_times[1:] == v_times[:-1]) & (v_created[1:] == v_created[:-1]))
            )
            run_start = np.maximum.accumulate(np.where(same, 0, np.arange(v_times.size)))
            begins = np.maximum(run_start[lasts] if lasts.size else lasts, firsts)
            chosen = _reduced(values, begins, lasts, max)
            columns[p.field("last")] = _spread(chosen, some, groups, p)
            for part, stamps in (("last_event", v_times), ("last_created", v_created)):
                out = np.zeros(groups, dtype=np.int64)
                out[some] = stamps[lasts]
                mask = np.ones(groups, dtype=bool)
                mask[some] = False
                columns[p.field(part)] = pa.array(out, pa.int64(), mask=mask)
        if p.distinct:
            columns[p.field("distinct")] = pa.array(
                [_unique(values[cuts[g] : cuts[g + 1]]) for g in range(groups)],
                pa.list_(_VALUE_TYPES[p.kind]),
            )
    return pa.Table.from_pydict({f.name: columns.get(f.name) for f in schema}, schema=schema)


def _reduced(values: Any, firsts: Any, lasts: Any, which: Any) -> list[Any]:
    """min or max of ``values[first:last + 1]`` for each pair, as the direct
    computation takes it: numpy's for arrays (a NaN wins), Python's for lists.

    Where the pairs cover ``values`` end to end (each group's values, in order), one
    ``reduceat`` does them all."""
    if not len(firsts):
        return []
    contiguous = (
        isinstance(values, np.ndarray)
        and firsts[0] == 0
        and lasts[-1] == len(values) - 1
        and bool(np.all(firsts[1:] == lasts[:-1] + 1))
    )
    if contiguous:
        ufunc = np.minimum if which is min else np.maximum
        return list(ufunc.reduceat(values, firsts).tolist())
    if isinstance(values, np.ndarray):
        single = firsts == lasts
        out = list(values[lasts].tolist())
        for i in np.flatnonzero(~single).tolist():
            part = values[firsts[i] : lasts[i] + 1]
            out[i] = _python(part.min() if which is min else part.max())
        return out
    pairs = zip(firsts.tolist(), lasts.tolist(), strict=True)
    return [which(values[first : last + 1]) for first, last in pairs]


def _spread(values: list[Any], some: Any, groups: int, p: Partials) -> pa.Array:
    out: list[Any] = [None] * groups
    for g, value in zip(some.tolist(), values, strict=True):
        out[g] = value
    return _array(out, p.kind)


_SAFE_SHIFT = 9  # a 53-bit mantissa shifted by up to 9 bits stays within int64


def _moment_texts(values: Any, p: Partials, firsts: Any, lasts: Any) -> list[str]:
    """The moments (:class:`~featurekube.materialize.moments.Moments`, as text) of
    ``values[first:last + 1]`` for each pair, exact."""
    bounds = list(zip(firsts.tolist(), (lasts + 1).tolist(), strict=True))
    if p.kind == "int":
        ints = values.tolist()
        out = []
        for lo, hi in bounds:
            part = ints[lo:hi]
            squares = sum(v * v for v in part) if p.squares else 0
            out.append(f"0 {sum(part)} {squares}")
        return out
    floats = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(floats) & (floats != 0)
    mantissas, exponents = np.frexp(np.where(finite, floats, 1.0))
    ints = np.where(finite, (mantissas * float(1 << 53)).astype(np.int64), 0)
    powers = np.where(finite, exponents.astype(np.int64) - 53, np.iinfo(np.int64).max)
    # Each group's least power: the scale of its sums (the groups cover the values
    # end to end, so one reduceat finds them all).
    base = np.minimum.reduceat(powers, firsts)
    group_of = np.repeat(np.arange(len(firsts)), lasts + 1 - firsts)
    shifts = powers - base[group_of]
    small = finite & (shifts >= 0) & (shifts <= _SAFE_SHIFT)
    scaled = np.where(small, ints << np.where(small, shifts, 0), 0).tolist()
    for i in np.flatnonzero(finite & ~small).tolist():
        scaled[i] = int(ints[i]) << int(shifts[i])
    # Which groups hold a NaN or an infinity, one reduceat each.
    flags: list[str] = [""] * len(bounds)
    special = ~np.isfinite(floats)
    if special.any():
        marks = [
            ("n", np.isnan(floats)),
            ("+", floats == np.inf),
            ("-", floats == -np.inf),
        ]
        for g in np.flatnonzero(np.logical_or.reduceat(special, firsts)).tolist():
            lo, hi = bounds[g]
            flags[g] = " " + "".join(m for m, where in marks if where[lo:hi].any())
    sentinel = int(np.iinfo(np.int64).max)
    out = []
    for (lo, hi), e, flag in zip(bounds, base.tolist(), flags, strict=True):
        part = scaled[lo:hi]
        squares = sum(v * v for v in part) if p.squares else 0
        out.append(f"{0 if e == sentinel else e} {sum(part)} {squares}{flag}")
    return out


def _array(values: list[Any], kind: str) -> pa.Array:
    return pa.array(values, _VALUE_TYPES[kind])


# -- merging tiles ------------------------------------------------------------------------


class _Tiles:
    """One entity's tiles, by (size, end), as Python values."""

    def __init__(self, table: pa.Table, layout: TileLayout) -> None:
        sizes = table.column(TILE_SIZE).to_pylist()
        ends = table.column(TILE_END).to_pylist()
        self.at: dict[TileKey, int] = {
            key: i for i, key in enumerate(zip(sizes, ends, strict=True))
        }
        self.latest: list[int] = table.column(LATEST).to_pylist()
        self.values: dict[str, list[Any]] = {}
        for p in layout.partials:
            for part in (
                "n",
                "moments",
                "min",
                "max",
                "last",
                "last_event",
                "last_created",
                "distinct",
            ):
                name = p.field(part)
                if name in table.column_names:
                    self.values[name] = table.column(name).to_pylist()
        self._moments: dict[tuple[str, int], moments.Moments] = {}

    def moments(self, name: str, row: int) -> moments.Moments:
        cached = self._moments.get((name, row))
        if cached is None:
            cached = moments.Moments.from_text(self.values[name][row])
            self._moments[(name, row)] = cached
        return cached


def _merge(tiles: _Tiles, p: Partials, rows: list[int]) -> dict[str, Any]:
    """The partials of column ``p`` over the tiles at ``rows`` (each with values)."""
    n_values = tiles.values[p.field("n")]
    rows = [r for r in rows if n_values[r]]
    merged: dict[str, Any] = {"n": sum(n_values[r] for r in rows)}
    if not rows or p.kind == "other":
        return merged
    if p.moments:
        name = p.field("moments")
        merged["moments"] = moments.Moments.merge_all([tiles.moments(name, r) for r in rows])
    for part, which in (("min", min), ("max", max)):
        name = p.field(part)
        if name in tiles.values:
            values = [tiles.values[name][r] for r in rows]
            if p.kind == "float" and any(math.isnan(v) for v in values):
                merged[part] = math.nan
            else:
                merged[part] = which(values)
    if p.last:
        events, created = tiles.values[p.field("last_event")], tiles.values[p.field("last_created")]
        best = max(rows, key=lambda r: (events[r], created[r]))
        merged["last"] = tiles.values[p.field("last")][best]
        merged["last_event"] = events[best]
        merged["last_created"] = created[best]
    if p.distinct:
        lists = [tiles.values[p.field("distinct")][r] for r in rows]
        if p.kind in ("int", "float", "bool", "timestamp"):
            merged["distinct"] = _unique(np.concatenate([np.asarray(v) for v in lists]))
        else:
            merged["distinct"] = sorted({v for values in lists for v in values})
    return merged


def build_coarse(tiles: pa.Table, keys: Sequence[TileKey], layout: TileLayout) -> pa.Table:
    """The coarse tiles ``keys`` from ``tiles``, which hold all their children."""
    schema = layout.schema()
    names = [k for k, _ in layout.keys]
    rows: list[dict[str, Any]] = []
    wanted = {child: key for key in keys for child in children(key, layout.sizes)}
    if not wanted or tiles.num_rows == 0:
        return schema.empty_table()
    tiles = tiles.filter(~pc.field(MARKER))
    for _, entity in _by_entity(tiles, names):
        found = _Tiles(entity, layout)
        by_parent: dict[TileKey, list[int]] = {}
        for child, row in found.at.items():
            parent = wanted.get(child)
            if parent is not None:
                by_parent.setdefault(parent, []).append(row)
        for (size, end), members in by_parent.items():
            out: dict[str, Any] = {k: entity.column(k)[0].as_py() for k in names}
            out |= {TILE_SIZE: size, TILE_END: end, MARKER: False}
            out[LATEST] = max(found.latest[r] for r in members)
            for p in layout.partials:
                merged = _merge(found, p, members)
                out[p.field("n")] = merged["n"]
                for part, value in merged.items():
                    if part == "moments":
                        value = value.to_text()
                    if part != "n":
                        out[p.field(part)] = value
            rows.append(out)
    return pa.Table.from_pylist(rows, schema=schema)


def merge_rows(table: pa.Table, layout: TileLayout) -> pa.Table:
    """``table``'s tiles with the rows of one entity, size and end merged into one:
    the partials of the union of their events (a stream's micro-batch merges its
    events' tiles into the stored ones). Marker rows are dropped."""
    schema = layout.schema()
    table = table.filter(~pc.field(MARKER)).select(schema.names).cast(schema)
    if table.num_rows == 0:
        return table
    names = [k for k, _ in layout.keys]
    group = [*names, TILE_SIZE, TILE_END]
    counts = table.group_by(group).aggregate([(TILE_END, "count")])
    twice = counts.filter(pc.greater(counts.column(f"{TILE_END}_count"), 1)).select(group)
    if twice.num_rows == 0:
        return table
    # Joined by the group's columns and row numbers alone: a join carries no lists.
    marked = table.select(group).append_column("__row", pa.array(np.arange(table.num_rows)))
    repeated = marked.join(twice, group, join_type="inner").column("__row")
    single = np.ones(table.num_rows, dtype=bool)
    single[np.asarray(repeated.to_numpy(zero_copy_only=False), dtype=np.int64)] = False
    rows: list[dict[str, Any]] = []
    for _, entity in _by_entity(table.filter(pa.array(~single)), names):
        found = _Tiles(entity, layout)
        by_key: dict[TileKey, list[int]] = {}
        sizes = entity.column(TILE_SIZE).to_pylist()
        ends = entity.column(TILE_END).to_pylist()
        for row, key in enumerate(zip(sizes, ends, strict=True)):
            by_key.setdefault(key, []).append(row)
        for (size, end), members in by_key.items():
            out: dict[str, Any] = {k: entity.column(k)[0].as_py() for k in names}
            out |= {TILE_SIZE: size, TILE_END: end, MARKER: False}
            out[LATEST] = max(found.latest[r] for r in members)
            for p in layout.partials:
                merged = _merge(found, p, members)
                if p.last and merged["n"]:
                    merged.update(_last_of(found, p, members))
                out[p.field("n")] = merged["n"]
                for part, value in merged.items():
                    if part != "n":
                        out[p.field(part)] = value.to_text() if part == "moments" else value
            rows.append(out)
    merged_rows = pa.Table.from_pylist(rows, schema=schema)
    return pa.concat_tables([table.filter(pa.array(single)), merged_rows])


def _last_of(tiles: _Tiles, p: Partials, rows: list[int]) -> dict[str, Any]:
    """The last value over ``rows``: the greatest (event, created) time, and among
    rows equal in both (events of two micro-batches) the greatest value."""
    events, created = tiles.values[p.field("last_event")], tiles.values[p.field("last_created")]
    values = tiles.values[p.field("last")]
    kept = [r for r in rows if tiles.values[p.field("n")][r]]
    top = max((events[r], created[r]) for r in kept)
    tied = [r for r in kept if (events[r], created[r]) == top]
    best = max(tied, key=lambda r: (values[r] is not None, values[r]))
    return {"last": values[best], "last_event": top[0], "last_created": top[1]}


def complete(
    events: pa.Table,
    from_source: Sequence[int],
    stored: pa.Table,
    built: Sequence[TileKey],
    layout: TileLayout,
) -> tuple[pa.Table, pa.Table]:
    """Every tile a run combines, and the new ones alone, for storing: the intervals
    ``from_source`` (their ends) from ``events``; the coarse tiles ``built`` from
    ``events`` too where those cover them, else from their parts (``stored``, or built
    first, smaller sizes first)."""
    schema = layout.schema()
    interval = layout.sizes[0]
    covered = set(from_source)

    def in_events(key: TileKey) -> bool:
        size, end = key
        return all(e in covered for e in range(end - size + interval, end + 1, interval))

    made = [build_tiles(events, layout)]
    for size in layout.sizes[1:]:
        keys = pa.array(sorted(end for s, end in built if s == size and in_events((s, end))))
        if len(keys):
            coarse = build_tiles(events, layout, size)
            made.append(coarse.filter(pc.is_in(coarse.column(TILE_END), keys.cast(pa.int64()))))
    everything = pa.concat_tables([*made, stored.cast(schema)])
    for size in layout.sizes[1:]:
        rest = [k for k in built if k[0] == size and not in_events(k)]
        if rest:
            coarse = build_coarse(everything, rest, layout)
            made.append(coarse)
            everything = pa.concat_tables([everything, coarse])
    return everything, pa.concat_tables(made)


def tiled_rows(
    events: pa.Table,
    stored: pa.Table,
    resolution: Resolution,
    needed: Iterable[TileKey],
    plan: AggregationPlan,
    layout: TileLayout,
) -> tuple[pa.Table, pa.Table]:
    """The aggregation rows of a run (:func:`combine`) and the tiles it made, for
    storing (:func:`complete`), from ``events`` (of the intervals
    ``resolution.from_source``) and the ``stored`` tiles ``resolution.stored`` of the
    same entities: any set of whole entities gives exactly their rows, so an engine
    may compute its entities in parts."""
    everything, made = complete(events, resolution.from_source, stored, resolution.built, layout)
    return combine(select(everything, needed), plan, layout), made


def select(table: pa.Table, keys: Iterable[TileKey], markers: bool = False) -> pa.Table:
    """The rows of ``table`` at ``keys``: its tiles, or with ``markers`` its markers."""
    by_size: dict[int, list[int]] = {}
    for size, end in keys:
        by_size.setdefault(size, []).append(end)
    mask = pa.array(np.zeros(table.num_rows, dtype=bool))
    for size, ends in by_size.items():
        here = pc.and_(
            pc.equal(table.column(TILE_SIZE), size),
            pc.is_in(table.column(TILE_END), pa.array(ends, pa.int64())),
        )
        mask = pc.or_(mask, here)
    kind = table.column(MARKER) if markers else pc.invert(table.column(MARKER))
    return table.filter(pc.and_(mask, kind))


def _by_entity(table: pa.Table, keys: Sequence[str]) -> Iterable[tuple[int, pa.Table]]:
    if table.num_rows == 0:
        return
    table = table.sort_by([(k, "ascending") for k in keys])
    starts = _group_starts(table, keys)
    for begin, stop in itertools.pairwise(starts):
        yield begin, table.slice(begin, stop - begin)


# -- combining tiles into rows -------------------------------------------------------------


def combine(
    tiles: pa.Table,
    plan: AggregationPlan,
    layout: TileLayout,
    *,
    repeat_until: int | None = None,
) -> pa.Table:
    """The aggregation rows at the boundaries ``plan`` owns, per entity: its keys, then
    the columns of :func:`~featurekube.materialize.aggregate.output_schema`, exactly as
    :func:`~featurekube.materialize.aggregate.aggregate_entity` gives them over the
    events the tiles were built from. ``tiles`` holds every tile of
    :func:`needed_tiles` (an entity without events in one has no row there); marker
    rows are ignored."""
    names = [k for k, _ in layout.keys]
    out_schema = aggregate.output_schema(plan)
    schema = pa.schema([pa.field(n, t) for n, t in layout.keys] + list(out_schema))
    first, last = plan.first_boundary, plan.last_boundary
    if first is None or last is None or tiles.num_rows == 0:
        return schema.empty_table()
    tiles = tiles.filter(~pc.field(MARKER)).sort_by([(k, "ascending") for k in names])
    starts = _group_starts(tiles, names)
    # Only entities with an interval whose events enter or leave a window at an owned
    # boundary can change there: the others are skipped without a look at their tiles.
    entering = np.concatenate(([0], np.cumsum(_entering(tiles, plan))))[starts]
    pieces = []
    # Every entity covers a window with the same tiles: decomposed once.
    spans = functools.lru_cache(maxsize=None)(functools.partial(_decompose, sizes=layout.sizes))
    for g, (begin, stop) in enumerate(itertools.pairwise(starts)):
        if entering[g + 1] == entering[g]:
            continue
        entity = tiles.slice(begin, stop - begin)
        rows = _combine_entity(_Tiles(entity, layout), plan, layout, spans, repeat_until)
        if not rows:
            continue
        table = pa.Table.from_pylist(rows, schema=_row_schema(out_schema))
        columns = [pa.repeat(entity.column(k)[0], table.num_rows) for k in names]
        columns += [_output(table.column(f.name), f.type) for f in out_schema]
        pieces.append(pa.Table.from_arrays(columns, schema=schema))
    return pa.concat_tables(pieces) if pieces else schema.empty_table()


def _row_schema(out_schema: pa.Schema) -> pa.Schema:
    # Times as µs, converted with the other columns below.
    return pa.schema(
        [
            pa.field(f.name, pa.int64() if pa.types.is_timestamp(f.type) else f.type)
            for f in out_schema
        ]
    )


def _output(column: pa.ChunkedArray, type_: pa.DataType) -> pa.ChunkedArray:
    return column if column.type == type_ else column.cast(type_)


def _entering(tiles: pa.Table, plan: AggregationPlan) -> Any:
    """Per tile, whether it is an interval ending at an owned boundary less a window
    (or less nothing)."""
    assert plan.first_boundary is not None and plan.last_boundary is not None
    ends = sorted(
        {
            k
            for w in (0, *plan.windows)
            for k in range(plan.first_boundary - w, plan.last_boundary - w + 1, plan.interval)
        }
    )
    mask = pc.and_(
        pc.equal(tiles.column(TILE_SIZE), plan.interval),
        pc.is_in(tiles.column(TILE_END), pa.array(ends, pa.int64())),
    )
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=np.int64)


def _decompose(lo: int, hi: int, sizes: Sequence[int]) -> tuple[TileKey, ...]:
    return tuple(decompose(lo, hi, sizes))


def _combine_entity(
    tiles: _Tiles,
    plan: AggregationPlan,
    layout: TileLayout,
    spans: Callable[[int, int], Sequence[TileKey]],
    repeat_until: int | None = None,
) -> list[dict[str, Any]]:
    assert plan.first_boundary is not None and plan.last_boundary is not None
    first, last, interval = plan.first_boundary, plan.last_boundary, plan.interval
    fine = sorted(end for size, end in tiles.at if size == interval)
    candidates = sorted({k + w for k in fine for w in (0, *plan.windows) if first <= k + w <= last})
    by_column = {p.column: p for p in layout.partials}
    merged: dict[tuple[str, int, int], dict[str, Any]] = {}

    def partials(column: str, window: int, probe: int) -> dict[str, Any]:
        key = (column, window, probe)
        found = merged.get(key)
        if found is None:
            rows = [tiles.at[k] for k in spans(probe - window, probe) if k in tiles.at]
            found = _merge(tiles, by_column[column], rows)
            merged[key] = found
        return found

    def values(probe: int) -> list[Any]:
        out = []
        for step in plan.steps:
            p = by_column[step.column]
            out.append(_finish(step.function, p.kind, partials(step.column, step.window, probe)))
        return out

    rows = []
    for t in candidates:
        now = values(t)
        moved = (interval, t) in tiles.at  # an event in (t - S, t]: the latest event moved
        repeated = repeat_until is not None and t <= repeat_until
        if (
            not moved
            and not repeated
            and all(aggregate._same(a, b) for a, b in zip(now, values(t - interval), strict=True))
        ):
            continue
        span = spans(t - interval - plan.longest_window, t)
        latest = max(tiles.latest[tiles.at[k]] for k in span if k in tiles.at)
        row: dict[str, Any] = {"event_timestamp": t, aggregate.LATEST_EVENT: latest}
        row |= {step.name: value for step, value in zip(plan.steps, now, strict=True)}
        rows.append(row)
    return rows


def _finish(function: str, kind: str, merged: Mapping[str, Any]) -> Any:
    """A function's value from the merged partials, by the rules of
    :mod:`featurekube.materialize.aggregate`."""
    n = merged["n"]
    if function == "count":
        return n
    if function == "count_distinct":
        return len(merged.get("distinct", ()))
    if n == 0:
        return None
    if function in ("min", "max", "last"):
        return merged[function]
    total: moments.Moments = merged["moments"]
    if function == "stddev":
        return total.sample_stddev(n)
    if kind == "int":
        exact = total.int_sum()
        if function == "sum":
            return (exact + _INT64) % (2 * _INT64) - _INT64  # int64, as numpy sums
        return float(exact / n)
    value = total.float_sum()
    return value if function == "sum" else value / n
