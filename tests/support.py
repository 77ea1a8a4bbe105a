"""Helpers the integration and end-to-end tests share (importable as ``support``:
pytest puts this folder on sys.path with its conftest)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

__all__ = ["eventually"]


def eventually(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    interval: float = 0.5,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``check`` until it returns something true, and return that; fail the test
    with ``what`` after ``timeout`` seconds. Exceptions in ``ignore`` count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if result := check():
                return result
        except ignore:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)
