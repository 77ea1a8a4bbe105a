"""Bounds on user SQL before it is parsed; pure.

sqlglot parses and walks SQL recursively: about 50 nested parentheses exhaust Python's
stack, and a RecursionError would take down ``validate`` or a feature server. Every
place that parses a user's SQL (transformations, request-time expressions) first
calls :func:`nesting_problem`, which reads the text once without recursing, and turns
a RecursionError of sqlglot itself (nesting of another kind) into the same message.
"""

from __future__ import annotations

__all__ = ["MAX_NESTING", "nesting_problem", "too_deep"]

MAX_NESTING = 24
"""The most parentheses one SQL text may nest; far more than hand-written SQL needs."""


def nesting_problem(text: str) -> str | None:
    """Why ``text`` nests too deeply to parse, or None.

    Parentheses inside quotes ('...', "...", `...`) do not count.

    >>> nesting_problem("f((a + b) * 2)") is None
    True
    >>> nesting_problem("(" * 30 + "a" + ")" * 30)
    'nests parentheses 30 deep; at most 24 are allowed: simplify it'
    """
    depth = deepest = 0
    quote: str | None = None
    for char in text:
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    return too_deep(deepest) if deepest > MAX_NESTING else None


def too_deep(depth: int | None = None) -> str:
    """The message for SQL nested beyond what featurekube parses."""
    found = f"nests parentheses {depth} deep" if depth is not None else "nests too deeply"
    return f"{found}; at most {MAX_NESTING} are allowed: simplify it"
