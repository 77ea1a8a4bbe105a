"""Reference profiles and the population stability index (PSI); pure.

A **reference profile** holds, per feature, the bins a window's values are counted
into and the share of the reference's values in each:

- numeric (int64, float64): up to :data:`BINS` bins cut at the reference's deciles
  p10, ..., p90 (nearest-rank, :mod:`featurekube.monitoring.stats`; equal cut points
  merge): ``(-inf, e1], (e1, e2], ..., (em, +inf)``; NaN is left out like null;
- categorical (string, bool): one bin per value among the reference's
  :data:`~featurekube.monitoring.stats.TOP_VALUES` most frequent, and one for every
  other value.

With ``r_i`` the reference's share of bin i and ``a_i`` the window's (of its non-null
values),

    PSI = Σ_i (a_i - r_i) · ln(a_i / r_i)

where a share below :data:`EPSILON` counts as ``EPSILON``, so an empty bin adds a large
but finite term. PSI is 0 for identical shares; by custom, under 0.1 is no significant
shift, 0.1 to 0.2 a moderate one, above 0.2 a large one. A window without non-null
values, or a feature the reference has no values of, has no PSI.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from featurekube.monitoring import stats
from featurekube.spec import v1alpha1

__all__ = [
    "BINS",
    "DECILE_LEVELS",
    "EPSILON",
    "FeatureProfile",
    "ReferenceProfile",
    "cut_points",
    "describe_reference",
    "fingerprint",
    "numeric_bin",
    "psi",
    "reference_key",
]

BINS = 10
"""Bins of a numeric feature (fewer when the reference's deciles repeat)."""
DECILE_LEVELS = tuple(p / 100 - 1e-12 for p in range(10, 100, 10))
"""What to ask an engine's discrete percentile for, to get p10 ... p90 exactly (see
:data:`featurekube.monitoring.stats.PROBE_LEVELS`)."""
EPSILON = 1e-4
"""The least share a bin counts with in the PSI."""
PROFILE_FORMAT = 1
"""Changes when the binning changes, so that stored profiles are computed again."""


@dataclass(frozen=True)
class FeatureProfile:
    """One feature's bins in a reference and the reference's share of each."""

    feature: str
    type: str
    kind: stats.Kind
    count: int
    """The reference's values counted (non-null, not NaN)."""
    fractions: tuple[float, ...]
    """Each bin's share of the reference's values: ``len(edges) + 1`` numeric bins,
    or ``len(values) + 1`` categorical ones (the last: every other value)."""
    edges: tuple[float, ...] = ()
    """Numeric: the cut points, ascending, distinct."""
    values: tuple[str, ...] = ()
    """Categorical: the values with a bin of their own."""

    def __post_init__(self) -> None:
        bins = len(self.edges if self.kind == "numeric" else self.values) + 1
        if len(self.fractions) != bins:
            raise ValueError(
                f"the profile of {self.feature} has {len(self.fractions)} fractions for {bins} bins"
            )


@dataclass(frozen=True)
class ReferenceProfile:
    """A reference's profile of a view's features."""

    key: str
    """What the reference is (:func:`reference_key`): ``period:<start>/<end>`` or
    ``trainingPull:<name>``."""
    fingerprint: str
    """Of what the profile was computed from and how (:func:`fingerprint`)."""
    description: str
    """For people: where the data came from."""
    computed_at: dt.datetime
    features: Mapping[str, FeatureProfile] = field(default_factory=dict)


def cut_points(deciles: Sequence[float | None]) -> tuple[float, ...]:
    """The distinct cut points of a numeric feature from its reference's deciles
    (NaN and null left out), ascending.

    >>> cut_points([1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0, 9.0])
    (1.0, 2.0, 3.0, 4.0, 5.0, 9.0)
    """
    found = {float(d) for d in deciles if d is not None and not math.isnan(float(d))}
    return tuple(sorted(found))


def numeric_bin(value: float, edges: Sequence[float]) -> int | None:
    """The bin of ``value`` among the bins of ``edges``: the first i with
    ``value <= edges[i]``, else ``len(edges)``; None for NaN.

    >>> [numeric_bin(v, (1.0, 2.0)) for v in (0.5, 1.0, 1.5, 2.0, 7.0)]
    [0, 0, 1, 1, 2]
    """
    if math.isnan(value):
        return None
    for index, edge in enumerate(edges):
        if value <= edge:
            return index
    return len(edges)


def psi(reference: Sequence[float], counts: Sequence[int]) -> float | None:
    """The PSI of a window whose values fell ``counts`` into the bins whose reference
    shares are ``reference``; None when the window has no values.

    >>> psi([0.5, 0.5], [10, 10])
    0.0
    >>> round(psi([0.5, 0.5], [18, 2]), 4)
    0.8789
    """
    if len(reference) != len(counts):
        raise ValueError(f"{len(counts)} counts for {len(reference)} reference bins")
    total = sum(counts)
    if total <= 0:
        return None
    result = 0.0
    for share, count in zip(reference, counts, strict=True):
        r = max(share, EPSILON)
        a = max(count / total, EPSILON)
        result += (a - r) * math.log(a / r)
    return max(result, 0.0)


def reference_key(reference: v1alpha1.DriftReference) -> str:
    """What a reference is, as its stored profile is keyed.

    >>> ref = v1alpha1.DriftReference(trainingPull="eta-2026-01")
    >>> reference_key(ref)
    'trainingPull:eta-2026-01'
    """
    if reference.period is not None:
        return f"period:{_iso(reference.period.start)}/{_iso(reference.period.end)}"
    assert reference.training_pull is not None
    return f"trainingPull:{reference.training_pull}"


def describe_reference(reference: v1alpha1.DriftReference) -> str:
    """The reference in words, for messages."""
    if reference.period is not None:
        return (
            f"the period [{_iso(reference.period.start)}, {_iso(reference.period.end)}) "
            "of the view's offline rows"
        )
    return f"the training pull saved as {reference.training_pull!r}"


def fingerprint(key: str, feature_types: Mapping[str, str]) -> str:
    """A short digest of a reference's key, the features profiled with their types,
    and the profile's format: a stored profile whose fingerprint differs is stale.

    >>> key = "trainingPull:a"
    >>> fingerprint(key, {"x": "int64"}) == fingerprint(key, {"x": "int64"})
    True
    >>> fingerprint(key, {"x": "int64"}) == fingerprint(key, {"x": "float64"})
    False
    """
    body = json.dumps(
        {"key": key, "features": dict(sorted(feature_types.items())), "format": PROFILE_FORMAT},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _iso(moment: dt.datetime) -> str:
    utc = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return utc.isoformat().replace("+00:00", "Z")
