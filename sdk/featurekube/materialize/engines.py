"""Which engine computes a window: the python engine (DuckDB and Arrow, no JVM) or
Spark; pure.

Both give exactly the same rows (the materialization tests run every case on both).
The python engine starts in well under a second and computes a small window in
another; Spark pays seconds to start (on a cluster, a driver and executor pods) but
spreads a large window over executors. ``spec.materialization.engine`` chooses:

- ``python`` or ``spark``: that engine, always (python refuses a transformation it
  cannot compute exactly as Spark does, naming what, see
  :mod:`featurekube.materialize.translate`);
- ``auto`` (the default): python when the window's input is at most
  :data:`DEFAULT_PYTHON_MAX_ROWS` rows (or the threshold given) and its transformation
  is portable; else Spark. An input of unknown size goes to Spark.
"""

from __future__ import annotations

from typing import Literal

from featurekube.materialize import translate

__all__ = ["DEFAULT_PYTHON_MAX_ROWS", "ENGINES", "Engine", "choose"]

Engine = Literal["python", "spark"]
ENGINES = ("auto", "spark", "python")
"""What ``spec.materialization.engine`` and ``--engine`` take."""

DEFAULT_PYTHON_MAX_ROWS = 10_000_000
"""Source rows (of the window's read range) up to which ``auto`` chooses python: about
1-2 GB of Arrow data at the widths views have, within one pod's usual limits."""


def choose(
    requested: str,
    *,
    input_rows: int | None,
    transformation: str | None,
    python_max_rows: int = DEFAULT_PYTHON_MAX_ROWS,
) -> Engine:
    """The engine that runs a window.

    >>> choose("auto", input_rows=20_000, transformation=None)
    'python'
    >>> choose("auto", input_rows=50_000_000, transformation=None)
    'spark'
    >>> choose("auto", input_rows=10, transformation="SELECT percentile(x, 0.5) FROM source")
    'spark'
    >>> choose("spark", input_rows=10, transformation=None)
    'spark'
    """
    if requested not in ENGINES:
        raise ValueError(f"engine {requested!r}: expected one of {', '.join(ENGINES)}")
    if requested != "auto":
        return "python" if requested == "python" else "spark"
    if input_rows is None or input_rows > python_max_rows:
        return "spark"
    return "python" if translate.portable(transformation) else "spark"
