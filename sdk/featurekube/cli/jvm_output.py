"""Where the JVM's output goes while a command starts Spark; does I/O.

Spark's JVM is a child process that writes to the file descriptors it inherits: Ivy's
resolution report, SLF4J's and log4j's warnings, about a hundred lines a run. A
command that draws progress bars sends them to a log file instead (unless
``--verbose``), by pointing descriptors 1 and 2 at the file while the JVM starts; the
JVM keeps them for its lifetime, and this process gets its own back at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["default_log_path", "private_stderr", "redirected_output"]


def default_log_path(name: str) -> Path:
    """``$TMPDIR/featurekube-<name>-<UTC time>.log``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(tempfile.gettempdir()) / f"featurekube-{name}-{stamp}.log"


def private_stderr() -> TextIO:
    """A stream on a copy of this process's stderr, which a redirect of descriptor 2
    (for a child's sake) does not reach."""
    sys.stderr.flush()
    try:
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    except (OSError, ValueError, io.UnsupportedOperation):
        return sys.stderr  # a stream without a descriptor (captured): nothing to guard


@contextlib.contextmanager
def redirected_output(path: Path | None) -> Iterator[None]:
    """While open, descriptors 1 and 2 (which children inherit) write to ``path``,
    appended; with None, nothing changes."""
    if path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with path.open("ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
