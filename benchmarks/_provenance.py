"""What a reader needs to trust a benchmark's figures: the commit measured, the
versions of featurekube and of the packages its peers run on, the machine, and the
load around the run.

I/O: runs ``git`` and ``java -version``, reads ``/proc`` and installed packages'
metadata. The functions that decide things (``parse_*``, :func:`is_loaded`,
:func:`describe_load`) are pure.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "PACKAGES",
    "LoadWatch",
    "collect",
    "describe_load",
    "git_state",
    "is_loaded",
    "machine",
    "parse_meminfo_mib",
    "parse_porcelain",
    "versions",
]

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (
    "featurekube",
    "duckdb",
    "deltalake",
    "pyarrow",
    "pandas",
    "numpy",
    "pyspark",
    "delta-spark",
    "grpcio",
    "protobuf",
    "aiobotocore",
    "boto3",
    "moto",
    "kopf",
    "kubernetes",
)
"""Packages of the project's virtualenv whose versions every report records: featurekube
and what it, the hand-written peers and the benchmarks' moto stand on."""
DIRTY_PATHS_KEPT = 20
"""At most this many uncommitted paths are listed (all are counted)."""
LOAD_INTERVAL_SECONDS = 10.0
"""How often :class:`LoadWatch` reads the load average during a run."""


# --- pure -------------------------------------------------------------------------


def parse_porcelain(text: str) -> list[str]:
    """The paths ``git status --porcelain`` lists (changed, staged or untracked).

    >>> parse_porcelain(" M benchmarks/_harness.py\\n?? new.py\\n")
    ['benchmarks/_harness.py', 'new.py']
    """
    return [line[3:] for line in text.splitlines() if len(line) > 3]


def parse_meminfo_mib(text: str) -> int:
    """``MemTotal`` of a ``/proc/meminfo`` text, in MiB.

    >>> parse_meminfo_mib("MemTotal:       24683520 kB\\nMemFree: 1 kB\\n")
    24105
    """
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == "MemTotal":
            return int(value.split()[0]) // 1024
    raise ValueError("no MemTotal line in /proc/meminfo")


def is_loaded(loads: Iterable[float], cores: int) -> bool:
    """Whether any of the 1-minute load averages read around a run is above the
    machine's core count: more runnable work than cores, so timings are stretched
    by others' work.

    >>> is_loaded([1.2, 2.5], cores=2)
    True
    """
    return any(load > cores for load in loads)


def describe_load(load: dict[str, Any], cores: int) -> str:
    """One line for the printed table: the 1-minute load before, at its highest during,
    and after the run, and whether the machine was loaded.

    >>> describe_load({"before": [0.5, 0, 0], "peak": 3.1, "after": [2.0, 0, 0]}, 2)
    'LOADED MACHINE: 1-minute load 0.50 before, 3.10 at most during, 2.00 after, on 2 cores'
    """
    text = (
        f"1-minute load {load['before'][0]:.2f} before, {load['peak']:.2f} at most during, "
        f"{load['after'][0]:.2f} after, on {cores} cores"
    )
    loads = (load["before"][0], load["peak"], load["after"][0])
    return f"LOADED MACHINE: {text}" if is_loaded(loads, cores) else text


# --- reading the machine ----------------------------------------------------------


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """The commit checked out in ``repo``, and whether (and where) the tree differs
    from it. Read before a run: what was measured is the tree as it was then."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60
        )
        return done.stdout if done.returncode == 0 else ""

    dirty = parse_porcelain(git("status", "--porcelain", "--untracked-files=normal"))
    return {
        "commit": git("rev-parse", "HEAD").strip() or None,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD").strip() or None,
        "dirty": bool(dirty),
        "dirty_paths": dirty[:DIRTY_PATHS_KEPT],
        "dirty_path_count": len(dirty),
    }


def versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` in this interpreter's environment (None: not
    installed)."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _java() -> str | None:
    """``java -version``'s first line: the JVM local Spark runs on."""
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stderr or done.stdout).splitlines()
    return lines[0].strip() if lines else None


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name":
            return value.strip()
    return None


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model, kernel and Python of this machine."""
    try:
        memory: int | None = parse_meminfo_mib(Path("/proc/meminfo").read_text())
    except (OSError, ValueError):
        memory = None
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_mib": memory,
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


@dataclass
class LoadWatch:
    """The load average before a run, the highest 1-minute load read during it (every
    :data:`LOAD_INTERVAL_SECONDS`), and the load after it; use as a ``with`` block
    around the run."""

    before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    peak: float = 0.0
    started: float = 0.0
    seconds: float = 0.0
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __enter__(self) -> LoadWatch:
        self.before = os.getloadavg()
        self.peak = self.before[0]
        self.started = time.time()
        self._thread = threading.Thread(target=self._loop, name="load", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        self.after = os.getloadavg()
        self.peak = max(self.peak, self.after[0])
        self.seconds = time.time() - self.started

    def _loop(self) -> None:
        while not self._done.wait(LOAD_INTERVAL_SECONDS):
            self.peak = max(self.peak, os.getloadavg()[0])

    def as_dict(self) -> dict[str, Any]:
        """Load averages (1, 5 and 15 minutes) before and after; the highest 1-minute
        load seen; the run's start (Unix seconds) and length."""
        return {
            "before": list(self.before),
            "after": list(self.after),
            "peak": self.peak,
            "started_unix": self.started,
            "seconds": self.seconds,
        }


def collect(
    git: dict[str, Any], load: LoadWatch, peers: dict[str, dict[str, str]] | None = None
) -> dict[str, Any]:
    """A report's provenance: ``git`` (from :func:`git_state`, read before the run),
    the versions of this environment and of each peer's (``peers``: a peer's
    environment -> package -> version), the machine, and ``load``."""
    about = machine()
    loads = load.as_dict()
    cores = about["cpus"] or 1
    return {
        "git": git,
        "versions": {"project": versions(), "java": _java(), "peers": peers or {}},
        "machine": about,
        "load": {
            **loads,
            "loaded": is_loaded((loads["before"][0], loads["peak"], loads["after"][0]), cores),
        },
    }
