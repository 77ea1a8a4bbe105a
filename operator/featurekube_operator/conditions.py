"""Status conditions in Kubernetes' standard shape; pure.

``lastTransitionTime`` changes only when a condition's status does, so a reconcile that
finds nothing new leaves the status byte-for-byte the same (and posts no event).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Condition", "merge_conditions", "transitions"]


@dataclass(frozen=True)
class Condition:
    """A condition as computed this reconcile."""

    type: str
    status: bool
    reason: str
    message: str

    @property
    def status_text(self) -> str:
        return "True" if self.status else "False"


def merge_conditions(
    old: Sequence[Mapping[str, Any]] | None,
    new: Iterable[Condition],
    now: dt.datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """The new conditions as status entries, keeping unchanged transition times."""
    previous = {c.get("type"): c for c in old or ()}
    merged = []
    for condition in new:
        before = previous.get(condition.type) or {}
        changed = before.get("status") != condition.status_text
        merged.append(
            {
                "type": condition.type,
                "status": condition.status_text,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": (
                    now.isoformat().replace("+00:00", "Z")
                    if changed or "lastTransitionTime" not in before
                    else before["lastTransitionTime"]
                ),
                "observedGeneration": generation,
            }
        )
    return merged


def transitions(
    old: Sequence[Mapping[str, Any]] | None, new: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Conditions whose status or reason changed: each deserves an event."""
    previous = {c.get("type"): c for c in old or ()}
    return [
        c
        for c in new
        if (previous.get(c["type"]) or {}).get("status") != c["status"]
        or (previous.get(c["type"]) or {}).get("reason") != c["reason"]
    ]
