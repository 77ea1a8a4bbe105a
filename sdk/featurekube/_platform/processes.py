"""Background processes of the local platform: spawn, probe, stop; does I/O.

Processes run in sessions of their own, so `featurekube dev up` can exit and leave
them running, and a Ctrl-C in the terminal does not reach them. They are found again
by pid; the command line is checked before a signal is sent, so a reused pid is never
killed by mistake.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["free_port", "http_ok", "is_running", "spawn", "stop", "tail", "wait_until"]


# Processes this one spawned, reaped as they exit so they never linger as zombies.
_children: set[int] = set()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def spawn(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> int:
    """Start ``argv`` detached, with stdout and stderr appended to ``log``; return its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    # Popen's handle is dropped on purpose: the process outlives this one when the
    # CLI starts it. Children are reaped in `is_running` while we are their parent.
    _children.add(proc.pid)
    return proc.pid


def _reap(pid: int) -> None:
    if pid in _children:
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                _children.discard(pid)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_running(pid: int, executable: str | None = None) -> bool:
    """Whether ``pid`` is alive (not a zombie) and, if given, runs ``executable``."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the command name, which may itself contain ')'.
    if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
        return False
    if executable is None:
        return True
    cmdline = _cmdline(pid)
    # An empty command line is a process in the middle of exec: it is ours.
    return not cmdline or executable in " ".join(cmdline[:3])


def stop(pid: int, executable: str | None = None, timeout: float = 15.0) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL whatever is left after ``timeout``."""
    if not is_running(pid, executable):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    if wait_until(lambda: not is_running(pid), timeout):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: not is_running(pid), 5.0)


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    interval: float = 0.2,
    abort: Callable[[], bool] | None = None,
) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False).

    ``abort`` is checked between polls; when it holds, waiting ends early (False), e.g.
    because the process being waited for has died.
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if condition():
                return True
        if (abort is not None and abort()) or time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or '' if there is none."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    """Whether GET ``url`` answers 2xx within two seconds; raises if it cannot connect."""
    with urllib.request.urlopen(url, timeout=2, context=context) as response:
        return 200 <= int(response.status) < 300
