"""Who uses a local platform, so that nobody stops it from under them; does I/O.

A process that relies on a platform it did not start for itself alone (the test
suite's session, ``make demo`` while it runs) *holds* it: a file
``holders/<pid>.json`` in the state directory records its pid and command line while
it does. ``featurekube dev down`` refuses to stop a platform that a live process other
than itself holds, and names that process; ``--force`` stops it anyway. A holder that
died without letting go (killed, crashed) no longer counts: its pid is gone, or now
runs another command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Holder", "hold", "live_holders", "process_command"]


@dataclass(frozen=True)
class Holder:
    """A process holding a platform."""

    pid: int
    command: str
    since: float
    """Seconds since the epoch."""

    def describe(self) -> str:
        since = time.strftime("%H:%M:%S UTC", time.gmtime(self.since))
        return f"pid {self.pid} (`{self.command}`, since {since})"


def process_command(pid: int) -> str:
    """The command line of ``pid``, or '' when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def _directory(state_dir: Path) -> Path:
    return state_dir / "holders"


@contextlib.contextmanager
def hold(state_dir: Path, pid: int | None = None) -> Iterator[Holder]:
    """Record ``pid`` (default: this process) as a holder until the block ends."""
    pid = os.getpid() if pid is None else pid
    holder = Holder(pid=pid, command=process_command(pid), since=time.time())
    path = _directory(state_dir) / f"{pid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(holder.__dict__), encoding="utf-8")
    try:
        yield holder
    finally:
        path.unlink(missing_ok=True)


def live_holders(state_dir: Path, exclude: int | None = None) -> list[Holder]:
    """The holders that still run the command they held with (others are forgotten),
    but for ``exclude`` (default: this process)."""
    exclude = os.getpid() if exclude is None else exclude
    found = []
    for path in sorted(_directory(state_dir).glob("*.json")):
        try:
            holder = Holder(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue
        if process_command(holder.pid) != holder.command or not holder.command:
            path.unlink(missing_ok=True)
            continue
        if holder.pid != exclude:
            found.append(holder)
    return found
