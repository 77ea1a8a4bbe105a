"""Which rows of a window may tie on (keys, event time), found while the rows stream
past, in constant memory; pure (numpy).

Ties are rare, and finding that there are none by grouping every row on (keys, event
time) costs a hash table of every row. Instead, as the python engine reads a window
once, each row's 64-bit hash of (keys, event time) goes through a :class:`TieFilter`:
a table of one byte a slot, marking the slots of the hashes seen. A hash whose slot
was marked already — by the same (keys, event time), or by another that shares the
slot — is a *suspect*. Only rows whose hash is a
suspect can tie, so the exact check afterwards groups those rows alone; a row that
ties always has its hash among the suspects (its second occurrence finds the bit
marked), so nothing is missed.

    ties = TieFilter()
    for hashes in batches_of_hashes:      # numpy uint64 arrays
        ties.add(hashes)
    suspects = ties.suspects()            # None: too many, check every row
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DEFAULT_SLOTS", "MAX_SUSPECTS", "TieFilter"]

DEFAULT_SLOTS = 1 << 25
"""Slots of the table (32 MiB; a byte each, as numpy sets bytes many times faster
than bits): at 10M rows, about 1.5M suspects by chance."""
MAX_SUSPECTS = 4_000_000
"""Suspects kept at most (32 MiB); beyond, :meth:`TieFilter.suspects` gives up."""


class TieFilter:
    """Hashes of (keys, event time) seen, and those that may repeat; see the module
    docstring."""

    def __init__(self, slots: int = DEFAULT_SLOTS, max_suspects: int = MAX_SUSPECTS) -> None:
        if slots < 1 or slots & (slots - 1):
            raise ValueError(f"a tie filter's slots must be a power of two, not {slots}")
        self._marked = np.zeros(slots, np.bool_)
        self._mask = np.uint64(slots - 1)
        self._max_suspects = max_suspects
        self._suspects: list[Any] = []
        self._count = 0
        self._overflowed = False

    def add(self, hashes: Any) -> None:
        """Take the hashes (a numpy uint64 array) of a batch of rows."""
        if self._overflowed or not len(hashes):
            return
        hashes = np.asarray(hashes, np.uint64)
        slot = (hashes & self._mask).astype(np.intp)
        seen = self._marked[slot]
        # Within this batch: of two rows sharing a slot, the later in slot order (the
        # same hash as the other's, if they tie).
        order = np.argsort(slot)
        ordered = slot[order]
        seen[order[1:][ordered[1:] == ordered[:-1]]] = True
        self._marked[slot] = True
        found = hashes[seen]
        if not found.size:
            return
        self._count += found.size
        if self._count > self._max_suspects:
            self._overflowed = True
            self._suspects = []
        else:
            self._suspects.append(found)

    def suspects(self) -> Any | None:
        """The hashes of the rows that may tie (a numpy uint64 array, maybe empty: no
        row ties; a hash may repeat); None when there were too many to keep, and every row must
        be checked."""
        if self._overflowed:
            return None
        if not self._suspects:
            return np.zeros(0, np.uint64)
        return np.concatenate(self._suspects)
