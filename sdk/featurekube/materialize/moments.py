"""Exact sums of numbers, and sums of their squares, that merge without rounding; pure.

A sum, mean or sample deviation must not depend on how a period was cut into pieces
(docs/semantics.md, "Functions"): a float sum is the exactly rounded sum of the values,
and a deviation is the exact sample variance rounded once. :class:`Moments` holds what
that needs of a set of values — how many (kept by the caller), the sum and the sum of
squares as integers scaled by a power of two, and which non-finite floats were seen —
and two of them merge exactly, so a window's value is the same whether it is computed
from its events or from any split of them (tiles, see
:mod:`featurekube.materialize.tiles`).

A float ``v`` is ``M·2^E`` with integers M (53 bits) and E; ``Moments(e, s1, s2)``
means a sum of ``s1·2^e`` and a sum of squares of ``s2·2^(2e)``. Integers have e = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["Moments", "of_floats", "of_ints"]


@dataclass(frozen=True)
class Moments:
    """An exact sum and sum of squares; see the module docstring."""

    e: int = 0
    s1: int = 0
    s2: int = 0
    nan: bool = False
    """A NaN was among the values."""
    pos_inf: bool = False
    neg_inf: bool = False

    def merge(self, other: Moments) -> Moments:
        e = min(self.e, other.e)
        a, b = self.e - e, other.e - e
        return Moments(
            e,
            (self.s1 << a) + (other.s1 << b),
            (self.s2 << 2 * a) + (other.s2 << 2 * b),
            self.nan or other.nan,
            self.pos_inf or other.pos_inf,
            self.neg_inf or other.neg_inf,
        )

    @staticmethod
    def merge_all(parts: list[Moments]) -> Moments:
        """The merge of ``parts`` (at least one), in one pass."""
        if len(parts) == 1:
            return parts[0]
        e = min(p.e for p in parts)
        s1 = s2 = 0
        special = False
        for p in parts:
            shift = p.e - e
            if shift:
                s1 += p.s1 << shift
                s2 += p.s2 << 2 * shift
            else:
                s1 += p.s1
                s2 += p.s2
            special = special or p.nan or p.pos_inf or p.neg_inf
        if not special:
            return Moments(e, s1, s2)
        return Moments(
            e,
            s1,
            s2,
            any(p.nan for p in parts),
            any(p.pos_inf for p in parts),
            any(p.neg_inf for p in parts),
        )

    def int_sum(self) -> int:
        """The exact sum of integers (e = 0)."""
        return self.s1

    def float_sum(self) -> float:
        """The sum, exactly rounded, as ``math.fsum`` gives it (a NaN gives NaN, an
        infinity of each sign ``ValueError``)."""
        if self.nan:
            return math.nan
        if self.pos_inf and self.neg_inf:
            raise ValueError("-inf + inf in fsum")
        if self.pos_inf:
            return math.inf
        if self.neg_inf:
            return -math.inf
        # int / int is exactly rounded in Python.
        return float(self.s1 << self.e) if self.e >= 0 else self.s1 / (1 << -self.e)

    def sample_stddev(self, n: int) -> float | None:
        """The sample standard deviation of the ``n`` values: the exact variance,
        rounded once, then its square root; None below two values, NaN when a value is
        not finite."""
        if n < 2:
            return None
        if self.nan or self.pos_inf or self.neg_inf:
            return math.nan
        top = n * self.s2 - self.s1 * self.s1
        bottom = n * (n - 1)
        variance = (
            Fraction(top << 2 * self.e, bottom)
            if self.e >= 0
            else Fraction(top, bottom << -2 * self.e)
        )
        try:
            return math.sqrt(variance)
        except OverflowError:
            return math.inf

    def to_text(self) -> str:
        """A compact text form, for storing in a tile: ``e s1 s2`` and the flags."""
        flags = "".join(
            f for f, on in (("n", self.nan), ("+", self.pos_inf), ("-", self.neg_inf)) if on
        )
        return f"{self.e} {self.s1} {self.s2} {flags}".rstrip()

    @classmethod
    def from_text(cls, text: str) -> Moments:
        parts = text.split(" ")
        if len(parts) == 3:
            return cls(int(parts[0]), int(parts[1]), int(parts[2]))
        flags = parts[3]
        return cls(
            int(parts[0]), int(parts[1]), int(parts[2]), "n" in flags, "+" in flags, "-" in flags
        )


def of_ints(values: list[int], squares: bool = True) -> Moments:
    """The moments of Python integers (without the sum of squares, which is then 0,
    unless ``squares``)."""
    return Moments(0, sum(values), sum(v * v for v in values) if squares else 0)


def of_floats(values: Any, squares: bool = True) -> Moments:
    """The moments of a float64 numpy array, exactly (without the sum of squares,
    which is then 0, unless ``squares``)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    nan = bool(np.isnan(values).any())
    pos_inf = bool((values == np.inf).any())
    neg_inf = bool((values == -np.inf).any())
    values = values[finite]
    if values.size == 0:
        return Moments(0, 0, 0, nan, pos_inf, neg_inf)
    mantissas, exponents = np.frexp(values)
    ints = (mantissas * float(1 << 53)).astype(np.int64).tolist()
    powers = (exponents.astype(np.int64) - 53).tolist()
    e = min(powers)
    s1 = s2 = 0
    for m, p in zip(ints, powers, strict=True):
        shift = p - e
        s1 += m << shift
        if squares:
            s2 += (m * m) << 2 * shift
    return Moments(e, s1, s2, nan, pos_inf, neg_inf)
