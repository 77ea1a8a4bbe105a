"""Peak resident memory of a benchmark's subject, and of nothing else. Reads ``/proc``
(Linux only); no other I/O.

Every benchmark measures memory here, the same way:

- a subject's figure is the sum, over its process tree (the process a benchmark starts
  and every process it starts in turn: Spark's JVM, ``feast serve``'s gunicorn worker),
  of each process's own high-water mark, ``VmHWM`` of ``/proc/<pid>/status``, taken
  over the processes alive together: the largest such sum at any one read, so a
  helper that has exited before the main work starts (Spark's launcher JVM) is not
  added to it;
- :class:`TreeWatch` reads the tree every ``interval`` seconds while it runs. A mark
  only grows, so a peak between two reads is not missed; only growth in the last
  interval before a process exits is (its ``/proc`` entry loses its memory lines once
  it exits). A Python worker of our own closes that gap by printing
  :func:`own_peak_mib` just before it exits, which :meth:`TreeWatch.record` takes in.
- A descendant is read only once it is :data:`SETTLE_SECONDS` old. Between fork and
  exec a child shows its parent's memory as its own (a vforked child shares it, a
  forked one copies its page tables), and a JVM or a Python driver starting a helper
  would otherwise be counted twice. When a process execs, its figure is the new
  program's.

Why not ``getrusage``: on Linux a process's ``ru_maxrss`` survives ``exec`` and is
seeded from the process it was forked (or vforked) from, so a worker started by a
harness holding 1.4 GiB reports at least 1.4 GiB, whatever it does itself; the same
goes for ``RUSAGE_CHILDREN`` and ``wait4``. ``VmHWM`` belongs to the address space
``exec`` makes, so it starts from nothing.

What the sum is: an upper bound of the tree's peak. Processes peak at different times,
and pages shared between them (a forked worker's copy-on-write pages, shared
libraries) count once per process, as ``ps`` and ``top`` count them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "ProcessPeak",
    "TreeWatch",
    "describe",
    "own_peak_mib",
    "parse_stat",
    "parse_status",
    "peak_mib",
    "rss_mib",
    "sum_peaks",
]

KIB_PER_MIB = 1024
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
"""The unit of process start times in ``/proc/<pid>/stat``."""
SETTLE_SECONDS = 0.5
"""Age (seconds) below which a descendant is not read: long past any exec that follows
its fork. A helper that lives less than this (``chmod``, ``getconf``) is left out."""


@dataclass(frozen=True)
class ProcessPeak:
    """One process of a subject's tree and its high-water mark."""

    pid: int
    name: str
    """The executable's name as the kernel shows it (``java``, ``python3.11``)."""
    peak_mib: float
    """``VmHWM`` when last read, in MiB."""


def parse_status(text: str) -> dict[str, str]:
    """The fields of a ``/proc/<pid>/status`` text, by name; values stripped.

    >>> parse_status("Name:\\tjava\\nVmHWM:\\t  2048 kB\\n")["VmHWM"]
    '2048 kB'
    """
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name] = value.strip()
    return fields


def parse_stat(text: str) -> tuple[int, int]:
    """The parent pid and the start time (clock ticks since boot) in a
    ``/proc/<pid>/stat`` text. The command name, in parentheses, may hold spaces and
    parentheses itself, so fields are counted from the last ``)``.

    >>> parse_stat("42 (a) b) S 7 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9001 0 0")
    (7, 9001)
    """
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state, ppid, ... starttime is the 22nd field of the whole line.
    return int(fields[1]), int(fields[19])


def descendants(pid: int, parents: dict[int, int]) -> list[int]:
    """The pids below ``pid`` in a process table given as pid -> parent pid.

    >>> descendants(1, {2: 1, 3: 2, 4: 9})
    [2, 3]
    """
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, stack = [], [pid]
    while stack:
        for child in sorted(children.get(stack.pop(), [])):
            found.append(child)
            stack.append(child)
    return sorted(found)


def _seconds_since_boot() -> float:
    """Now, on the clock process start times are given in (``/proc/uptime``)."""
    return float(Path("/proc/uptime").read_text().split()[0])


def _process_table() -> dict[int, tuple[int, int]]:
    """Every process now: pid -> (parent pid, start time)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            table[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):  # gone since listed
            continue
    return table


def kib(value: str) -> int:
    """A ``/proc`` size such as ``'2048 kB'`` in KiB (the kernel's "kB" means KiB)."""
    number, _, unit = value.partition(" ")
    if unit not in ("kB", ""):
        raise ValueError(f"unexpected unit in /proc size {value!r}")
    return int(number)


def _status(pid: int | str) -> dict[str, str] | None:
    """``/proc/<pid>/status`` parsed; None when the process is gone, or is a zombie
    (whose address space, and so whose memory lines, are gone)."""
    try:
        fields = parse_status(Path(f"/proc/{pid}/status").read_text())
    except OSError:  # gone, or not ours to read
        return None
    return fields if "VmHWM" in fields else None


def _hwm_mib(fields: dict[str, str]) -> float:
    return kib(fields["VmHWM"]) / KIB_PER_MIB


def _started(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot); None when it is gone."""
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text())[1]
    except (OSError, ValueError, IndexError):
        return None


def peak_mib(pid: int) -> float | None:
    """The high-water mark of process ``pid`` alone, in MiB; None when it is gone."""
    fields = _status(pid)
    return _hwm_mib(fields) if fields else None


def rss_mib(pid: int) -> float | None:
    """The resident memory of process ``pid`` now, in MiB; None when it is gone."""
    fields = _status(pid)
    return kib(fields["VmRSS"]) / KIB_PER_MIB if fields else None


def own_peak_mib() -> float:
    """This process's own high-water mark, in MiB: what a worker prints just before
    it exits, never ``getrusage``'s inherited figure (see the module docstring)."""
    fields = _status("self")
    if fields is None:
        raise RuntimeError("/proc/self/status has no VmHWM: peak memory needs Linux's /proc")
    return _hwm_mib(fields)


def sum_peaks(
    peaks: list[ProcessPeak], kind: Callable[[ProcessPeak], str] | None = None
) -> dict[str, float]:
    """The summed peaks of ``peaks`` (MiB) under ``"total"``, and, with ``kind``, under
    each kind it names (e.g. JVM and Python processes apart).

    >>> sum_peaks([ProcessPeak(1, "python3", 100.0), ProcessPeak(2, "java", 900.0)])
    {'total': 1000.0}
    """
    sums = {"total": 0.0}
    for peak in peaks:
        sums["total"] += peak.peak_mib
        if kind is not None:
            name = kind(peak)
            sums[name] = sums.get(name, 0.0) + peak.peak_mib
    return sums


def describe(peaks: list[ProcessPeak]) -> str:
    """The processes behind a summed peak, largest first, for a report's notes.

    >>> describe([ProcessPeak(7, "python3.11", 431.04), ProcessPeak(9, "java", 1701.0)])
    'java 1701 MiB + python3.11 431 MiB'
    """
    ordered = sorted(peaks, key=lambda peak: peak.peak_mib, reverse=True)
    return " + ".join(f"{peak.name} {peak.peak_mib:.0f} MiB" for peak in ordered)


def jvm_or_python(peak: ProcessPeak) -> str:
    """``"JVM"`` for a Java process, ``"Python"`` for anything else: the split the
    materialization benchmark reports."""
    return "JVM" if peak.name == "java" else "Python"


class TreeWatch:
    """The high-water marks of a process and its descendants, read every ``interval``
    seconds from a thread of its own between :meth:`start` and :meth:`stop` (or in a
    ``with`` block)::

        child = subprocess.Popen(argv)
        with _memory.TreeWatch(child.pid) as memory:
            child.wait()
        peak = memory.total_mib()

    Processes are told apart by pid and start time, so a reused pid is a new process,
    and one that exits keeps its last figure. Made while ``pid`` runs.
    """

    # Each read is kept (a few processes every ``interval``: small), so sums are taken
    # over the processes alive at the same read.

    def __init__(self, pid: int, *, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self._root_started = _started(pid)
        self._reads: list[dict[tuple[int, int], ProcessPeak]] = []
        self._last: dict[tuple[int, int], ProcessPeak] = {}
        self._rss_mib = 0.0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"memory-{pid}", daemon=True)

    def start(self) -> TreeWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Read once more (the tree may still be alive) and stop the thread."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sample()

    def __enter__(self) -> TreeWatch:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    def sample(self) -> None:
        """Read every live process of the tree once."""
        table = _process_table()
        # Once the root has been reaped, its pid may be another process's.
        if self._root_started is None or table.get(self.pid, (0, -1))[1] != self._root_started:
            return
        parents = {pid: parent for pid, (parent, _) in table.items()}
        # Descendants too young to have exec'd yet: see SETTLE_SECONDS.
        settled = (_seconds_since_boot() - SETTLE_SECONDS) * TICKS_PER_SECOND
        rss = 0.0
        read = {}
        for pid in [self.pid, *descendants(self.pid, parents)]:
            if pid != self.pid and table[pid][1] > settled:
                continue
            fields = _status(pid)
            if fields is None:  # exited, or a zombie, since the table was read
                continue
            rss += kib(fields["VmRSS"]) / KIB_PER_MIB
            key, seen = (pid, table[pid][1]), ProcessPeak(pid, fields["Name"], _hwm_mib(fields))
            # The kernel updates the mark lazily, so a read may show a little less than
            # an earlier one: keep the highest of the program. After an exec (a new
            # name) the old program's mark is no longer the process's.
            held = self._last.get(key)
            if held is not None and held.name == seen.name and held.peak_mib > seen.peak_mib:
                seen = held
            read[key] = seen
        with self._lock:
            if read:
                self._reads.append(read)
                self._last.update(read)
            self._rss_mib = rss

    def record(self, pid: int, mib: float) -> None:
        """Take in a figure a process gave of itself just before exiting (see
        :func:`own_peak_mib`): it counts as that process's mark at the last read that
        saw it, or as a read of its own if none did."""
        with self._lock:
            for read in reversed(self._reads):
                for key, held in read.items():
                    if key[0] == pid:
                        read[key] = ProcessPeak(pid, held.name, max(held.peak_mib, mib))
                        self._last[key] = read[key]
                        return
            self._reads.append({(pid, -1): ProcessPeak(pid, "?", mib)})
            self._last.update(self._reads[-1])

    @property
    def peaks(self) -> list[ProcessPeak]:
        """Every process seen so far, with the high-water mark of the program it ran
        when last read."""
        with self._lock:
            return list(self._last.values())

    def at_peak(self) -> list[ProcessPeak]:
        """The processes of the read whose marks summed highest, with those marks: the
        tree at its peak, for a report's notes."""
        with self._lock:
            reads = [list(read.values()) for read in self._reads]
        return max(reads, key=lambda read: sum_peaks(read)["total"], default=[])

    def sums(self, kind: Callable[[ProcessPeak], str] | None = None) -> dict[str, float]:
        """The highest sum of the marks of processes alive at one read, in MiB: under
        ``"total"``, and, with ``kind``, for each kind apart (each at its own highest
        read, so the kinds need not add up to the total)."""
        with self._lock:
            reads = [list(read.values()) for read in self._reads]
        highest = {"total": 0.0}
        for read in reads:
            for name, mib in sum_peaks(read, kind).items():
                highest[name] = max(highest.get(name, 0.0), mib)
        return highest

    @property
    def rss_mib(self) -> float:
        """The tree's summed resident memory at the last read, in MiB: what a benchmark
        checks against a limit while a subject runs."""
        with self._lock:
            return self._rss_mib

    def total_mib(self) -> float:
        """The subject's peak, in MiB: the highest sum of the high-water marks of its
        processes alive at one read."""
        return self.sums()["total"]
