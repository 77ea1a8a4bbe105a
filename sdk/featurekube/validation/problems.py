"""What ``featurekube validate`` reports: one :class:`Problem` per thing to fix; pure.

A problem points at a line of a file and, when it concerns an object, at the object
(kind and name) and the YAML path of the field, so that it reads as
``FILE:LINE: Kind/name: spec.path: message``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from featurekube.spec import loader

__all__ = ["Problem", "describe_value", "did_you_mean", "sort_problems"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a directory of feature definitions."""

    file: str
    """The file, as the caller named it (relative paths stay relative)."""
    line: int
    """The 1-based line the problem is on."""
    kind: str | None
    """The object's kind (FeatureView, ...), or None for a problem with the file itself."""
    name: str | None
    """The object's metadata.name, or None if it has none."""
    path: str | None
    """The YAML path of the field (``spec.aggregations[1].window``), or None for the
    object as a whole."""
    message: str
    """What is wrong and what to do about it."""

    @classmethod
    def at(cls, document: loader.Document, path: loader.FieldPath | None, message: str) -> Problem:
        """A problem with the field at ``path`` of ``document`` (None: the whole object),
        on the line where that field, or its nearest ancestor present, starts."""
        return cls(
            file=str(document.path),
            line=document.line_of(path or ()),
            kind=document.kind,
            name=document.name,
            path=loader.format_path(path) if path else None,
            message=message,
        )

    def __str__(self) -> str:
        """``FILE:LINE: Kind/name: spec.path: message``, leaving out the parts it lacks."""
        parts = [f"{self.file}:{self.line}"]
        if self.kind is not None or self.name is not None:
            parts.append("/".join(p for p in (self.kind, self.name) if p is not None))
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)

    def to_json(self) -> dict[str, str | int | None]:
        """The problem as a JSON object with keys file, line, kind, name, path, message."""
        return {
            "file": self.file,
            "line": self.line,
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Problem:
        """The inverse of :meth:`to_json`."""

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        line = data.get("line")
        return cls(
            file=text("file") or "",
            line=line if isinstance(line, int) else 1,
            kind=text("kind"),
            name=text("name"),
            path=text("path"),
            message=text("message") or "",
        )


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Problems by file and line, without repeats; problems on one line keep their order."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.file, p.line))


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'ttl'?"`` when one of ``choices`` is close to ``word``, else ``""``.

    >>> did_you_mean("ttll", ["ttl", "owner"])
    "; did you mean 'ttl'?"
    """
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def describe_value(value: object) -> str:
    """How a YAML value reads in a message: ``the text 'abc'``, ``the number 3``, ``a list``.

    >>> describe_value("7 days")
    "the text '7 days'"
    """
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the text {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} value"
