"""Feast, the peer several benchmarks measure featurekube beside: its virtualenvs.

Feast lives in virtualenvs of its own under ``$FEATUREKUBE_CACHE`` (default
``~/.cache/featurekube``), made on first use and reused after, so its pins never
constrain ours. Each benchmark names the virtualenv and the extras it needs (the
materialization and serving benchmarks share one with ``aws``; the training benchmark
has one with ``duckdb``). The scripts beside this module run with such a virtualenv's
Python and import nothing of featurekube.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["STACK", "VERSION", "cache", "python", "versions"]

VERSION = "0.67.0"
"""The Feast release every benchmark measures."""
STACK = ("feast", "dask", "duckdb", "pandas", "pyarrow", "numpy", "boto3", "gunicorn", "uvicorn")
"""Packages of Feast's virtualenv whose versions a report records: Feast and what its
offline stores, online store and feature server run on."""


def cache() -> Path:
    """Where benchmarks keep what they make once: ``$FEATUREKUBE_CACHE`` or
    ``~/.cache/featurekube``."""
    root = os.environ.get("FEATUREKUBE_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "featurekube"


def python(venv: Path, extras: str, pins: tuple[str, ...] = ()) -> Path:
    """The Python of the virtualenv at ``venv`` holding ``feast[extras]`` at
    :data:`VERSION` (and the requirements ``pins``, e.g. ``pyspark==4.2.0``); made (a
    few minutes, needs the package index) when it is missing or holds another version."""
    executable = venv / "bin" / "python"
    installed = list(venv.glob(f"lib/python*/site-packages/feast-{VERSION}.dist-info"))
    if executable.exists() and installed:
        return executable
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(executable), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         f"feast[{extras}]=={VERSION}", *pins],
        check=True,
    )  # fmt: skip
    return executable


def versions(executable: Path, names: tuple[str, ...] = STACK) -> dict[str, str]:
    """Versions of ``names`` installed in the virtualenv of ``executable`` (its
    ``bin/python``), read from the packages' metadata directories: no need to start
    that Python. Packages not installed there are left out."""
    wanted = {_normalized(name) for name in names}
    found = {}
    for info in executable.parent.parent.glob("lib/python*/site-packages/*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").rpartition("-")
        if _normalized(name) in wanted:
            found[_normalized(name)] = version
    return dict(sorted(found.items()))


def _normalized(name: str) -> str:
    """A distribution's name as PEP 503 compares them (``delta_spark`` is ``delta-spark``)."""
    return name.lower().replace("_", "-").replace(".", "-")
