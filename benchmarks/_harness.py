"""Running benchmarks and reporting them: JSON under bench-results/, a table on stdout.

:func:`document` and :func:`render` are pure; :func:`write` does the I/O.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import _provenance

if TYPE_CHECKING:
    from featurekube._platform.platform import Endpoints

RESULTS = Path(os.environ.get("FEATUREKUBE_BENCH_RESULTS", "bench-results"))


@dataclass
class Measurement:
    """One subject (featurekube, or a peer) measured on one metric."""

    subject: str
    metric: str
    unit: str
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Report:
    """What one benchmark found; ``baseline`` names the peer ratios are taken against."""

    name: str
    description: str
    measurements: list[Measurement] = field(default_factory=list)
    baseline: str | None = None
    notes: dict[str, str] = field(default_factory=dict)
    peers: dict[str, dict[str, str]] = field(default_factory=dict)
    """Versions of the packages in each peer's own environment (e.g. Feast's
    virtualenv), by environment: filled by the benchmark that ran the peer."""

    def add(self, subject: str, metric: str, unit: str, samples: list[float]) -> None:
        self.measurements.append(Measurement(subject, metric, unit, samples))

    def ratio(self, m: Measurement) -> float | None:
        if self.baseline is None or m.subject == self.baseline:
            return None
        for peer in self.measurements:
            if peer.subject == self.baseline and peer.metric == m.metric and peer.median:
                return m.median / peer.median
        return None


def percentile(samples: Sequence[float], q: float) -> float:
    """The sample at quantile ``q`` (0..1) by rank, without interpolation."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def scratch_platform(**settings: Any) -> Iterator[tuple[Endpoints, Path]]:
    """A local platform of the benchmark's own in a temporary directory, with
    featurekube's CRDs and no local runtime (nothing should run the jobs the benchmark
    makes), stopped with the block; yields its endpoints and the directory."""
    from featurekube._platform import platform

    crds = Path(__file__).resolve().parents[1] / "crds"
    with tempfile.TemporaryDirectory() as tmp:
        local = platform.LocalPlatform(
            platform.PlatformSettings(
                state_dir=Path(tmp) / "platform", crd_dirs=(crds,), runtime=False, **settings
            )
        )
        endpoints = local.start()
        try:
            yield endpoints, Path(tmp)
        finally:
            local.stop()


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall seconds of ``repeat`` calls of ``fn``."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def document(report: Report, provenance: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON document of ``report``, with the ``provenance`` of its run."""
    return {
        "name": report.name,
        "description": report.description,
        "baseline": report.baseline,
        "provenance": provenance,
        "notes": report.notes,
        "measurements": [
            {**asdict(m), "median": m.median, "ratio_to_baseline": report.ratio(m)}
            for m in report.measurements
        ],
    }


def render(report: Report, provenance: dict[str, Any] | None) -> str:
    """The table printed for ``report``: its figures, then the commit and the load it
    ran under, marked when the machine was loaded."""
    lines = [f"{report.name}: {report.description}"]
    lines.append(f"  {'subject':<28} {'metric':<28} {'median':>12}  {'ratio':>7}")
    for m in report.measurements:
        ratio = report.ratio(m)
        shown = f"{ratio:7.2f}" if ratio is not None else "      -"
        lines.append(f"  {m.subject:<28} {m.metric:<28} {m.median:>10.3f} {m.unit:<2} {shown}")
    if provenance:
        git = provenance["git"]
        commit = (git["commit"] or "unknown")[:12]
        dirty = f", {git['dirty_path_count']} paths uncommitted" if git["dirty"] else ""
        lines.append(f"  commit {commit}{dirty}")
        cores = provenance["machine"]["cpus"] or 1
        lines.append(f"  {_provenance.describe_load(provenance['load'], cores)}")
    return "\n".join(lines)


def write(report: Report, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``report`` as JSON under bench-results/ and print it as a table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{report.name}.json"
    path.write_text(json.dumps(document(report, provenance), indent=2) + "\n")
    print(f"\n{render(report, provenance)}")
    print(f"  -> {path}")
    return path
