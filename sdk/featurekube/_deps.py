"""Optional heavy dependencies, imported on first use with an install hint; no I/O.

``import featurekube`` must stay light (no pyspark, grpc or kopf), so modules that need
one of them call :func:`import_optional` inside the function that uses it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from featurekube import errors

__all__ = ["import_optional"]


def import_optional(module: str, *, extra: str) -> ModuleType:
    """Import ``module``, or explain which featurekube extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise errors.MissingDependencyError(
            f"{module} is not installed; it comes with featurekube's '{extra}' extra: "
            f"pip install 'featurekube[{extra}]'"
        ) from exc
