"""Durations as featurekube spells them (``30m``, ``1d``, ``7d``); pure.

One number and one unit (s, m, h, d, w), so that the API server's CEL rules can
compute with them too (CEL's own ``duration()`` knows no days). ``90m``, not ``1h30m``.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["DURATION_PATTERN", "UNIT_SECONDS", "cel_seconds", "parse_duration"]

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_PATTERN = r"^[1-9][0-9]{0,6}[smhdw]$"
_DURATION = re.compile(DURATION_PATTERN)


def parse_duration(text: str) -> dt.timedelta:
    """``'30m'`` -> ``timedelta(minutes=30)``.

    >>> parse_duration("7d")
    datetime.timedelta(days=7)
    """
    if not _DURATION.match(text):
        raise ValueError(
            f"{text!r} is not a duration: write a positive whole number and one unit "
            "of s, m, h, d or w, e.g. '30m', '1d', '7d'"
        )
    return dt.timedelta(seconds=int(text[:-1]) * UNIT_SECONDS[text[-1]])


def cel_seconds(field: str) -> str:
    """A CEL expression for the seconds in the duration string at ``field``.

    >>> cel_seconds("self.ttl")[:41]
    '(int(self.ttl.substring(0, size(self.ttl'
    """
    unit = f"{field}.substring(size({field}) - 1)"
    scale = (
        f"({unit} == 's' ? 1 : {unit} == 'm' ? 60 : {unit} == 'h' ? 3600 : "
        f"{unit} == 'd' ? 86400 : 604800)"
    )
    # Parenthesized: the caller may take it modulo another duration.
    return f"(int({field}.substring(0, size({field}) - 1)) * {scale})"
