"""The code examples of the documentation, found in its Markdown pages; pure.

Every fenced block of the hand-written pages is an example that a test runs or
checks (``tests/unit/test_docs_examples.py``): ``python`` blocks run, page by page in
one namespace; ``yaml`` blocks are validated as one feature repo per page; ``sh``
blocks' commands are run (``featurekube validate``) or checked against what they name
(CLI arguments, make targets, files of the repository). A block that needs a running
feature server follows the line ``<!-- example: needs a feature server -->`` and runs
in the integration tier, against one started by ``featurekube serve``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NEEDS_CLUSTER", "NEEDS_SERVER", "Block", "iter_blocks", "iter_commands", "read_blocks"]

NEEDS_SERVER = "<!-- example: needs a feature server -->"
NEEDS_CLUSTER = "<!-- example: needs a cluster -->"
"""Marks an example that reads a cluster's stores: only compiled, never run."""
_FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)[^\n]*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its page, the line it starts on, language and code."""

    page: str
    line: int
    language: str
    code: str
    needs_server: bool = False
    needs_cluster: bool = False

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def iter_blocks(page: str, text: str) -> Iterator[Block]:
    """The fenced blocks of one Markdown page, in order (fences at the margin only)."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index] != "```":
            body.append(lines[index])
            index += 1
        previous = lines[start - 1].strip() if start else ""
        if previous == "" and start > 1:
            previous = lines[start - 2].strip()
        yield Block(
            page=page,
            line=start + 1,
            language=opening.group(1) or "text",
            code="\n".join(body) + "\n",
            needs_server=previous == NEEDS_SERVER,
            needs_cluster=previous == NEEDS_CLUSTER,
        )
        index += 1


def read_blocks(docs: Path) -> list[Block]:
    """Every block of every hand-written page under ``docs``."""
    found: list[Block] = []
    for path in sorted(docs.rglob("*.md")):
        found += iter_blocks(str(path.relative_to(docs.parent)), path.read_text("utf-8"))
    return found


def iter_commands(code: str) -> Iterator[list[str]]:
    """The commands of a shell block as argument lists: continuation lines joined,
    comments dropped, `eval "$(...)"` and blank lines skipped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] != "eval":
            yield words
