"""Tags mirrored as labels, so ``kubectl get featureviews -l team=rides`` finds them; pure.

``spec.tags`` are free-form; labels are not (a name of at most 63 characters of
letters, digits, ``-``, ``_`` and ``.``, an optional DNS prefix, and a value of the
same kind). Each tag that is a valid label, and that no one else's label of the same
key contradicts, becomes a label of the object. The operator records which labels it
set in the annotation :data:`ANNOTATION`, so it removes a label only when it set it
and its tag is gone, and never touches labels set by anyone else. A tag that cannot
be a label gets one Warning event saying why (again only when the reasons change).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from featurekube_operator.monitoring import Notice

__all__ = ["ANNOTATION", "MAX_TAGS", "LabelPlan", "label_problem", "plan_labels"]

ANNOTATION = "featurekube.dev/tag-labels"
"""JSON: ``{"labels": [keys the operator set], "refused": [tags that are no label]}``."""
MAX_TAGS = 64
"""Tags looked at per object (the spec allows no more)."""
RESERVED_PREFIXES = ("featurekube.dev", "kubernetes.io", "k8s.io")
"""Label prefixes of featurekube's own labels and Kubernetes': a tag may not claim them."""

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_problem(key: str, value: str) -> str | None:
    """Why ``key: value`` cannot be a label; None when it can.

    >>> label_problem("team", "rides") is None
    True
    >>> label_problem("cost center", "42")[:40]
    "the key 'cost center' is not a label nam"
    """
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _PREFIX.match(prefix)):
        return f"the key {key!r} has a prefix that is not a DNS subdomain (like example.com/)"
    if len(name) > 63 or not _NAME.match(name):
        return (
            f"the key {key!r} is not a label name (at most 63 letters, digits, '-', '_' "
            "or '.', starting and ending with a letter or digit)"
        )
    if slash and any(prefix == p or prefix.endswith("." + p) for p in RESERVED_PREFIXES):
        return f"the prefix {prefix}/ is reserved for featurekube's and Kubernetes' own labels"
    if value and (len(value) > 63 or not _NAME.match(value)):
        return (
            f"the value {value!r} is not a label value (at most 63 letters, digits, '-', '_' "
            "or '.', starting and ending with a letter or digit)"
        )
    return None


@dataclass(frozen=True)
class LabelPlan:
    """What to patch into the object's metadata, and the events to post."""

    metadata: dict[str, Any] = field(default_factory=dict)
    """A merge patch of metadata (labels, annotations; None removes one); empty when
    nothing changes."""
    notices: list[Notice] = field(default_factory=list)


def _recorded(text: str | None) -> tuple[set[str], set[str]]:
    try:
        body = json.loads(text or "{}")
        return set(map(str, body.get("labels") or ())), set(map(str, body.get("refused") or ()))
    except (ValueError, AttributeError, TypeError):
        return set(), set()


def plan_labels(kind: str, body: Mapping[str, Any]) -> LabelPlan:
    """The labels ``body``'s ``spec.tags`` give it, as a patch against its metadata.

    ``kind`` names the object in events. Tags that are not strings are ignored (the
    spec does not allow them; an invalid spec is reported elsewhere).
    """
    meta = body.get("metadata") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    raw = (body.get("spec") or {}).get("tags")
    tags = {
        k: v
        for k, v in list((raw if isinstance(raw, dict) else {}).items())[:MAX_TAGS]
        if isinstance(k, str) and isinstance(v, str)
    }
    ours, refused_before = _recorded(annotations.get(ANNOTATION))
    want: dict[str, str] = {}
    refused: dict[str, str] = {}
    for key, value in sorted(tags.items()):
        problem = label_problem(key, value)
        current = labels.get(key)
        if problem is None and current is not None and key not in ours and current != value:
            problem = (
                f"the object already has the label {key}={current}, which featurekube did "
                "not set and leaves alone"
            )
        if problem is not None:
            refused[key] = problem
        elif key in ours or current is None:
            want[key] = value
    patch: dict[str, Any] = {k: v for k, v in want.items() if labels.get(k) != v}
    patch.update({k: None for k in sorted(ours - set(want)) if k in labels})
    record = {"labels": sorted(want), "refused": sorted(refused)}
    text = json.dumps(record, separators=(",", ":")) if want or refused else None
    metadata: dict[str, Any] = {}
    if patch:
        metadata["labels"] = patch
    if text != annotations.get(ANNOTATION):
        metadata["annotations"] = {ANNOTATION: text}
    name = f"{kind} {meta.get('namespace') or 'default'}/{meta.get('name')}"
    notices = [
        Notice(
            "Warning",
            "TagNotLabelled",
            f"{name}: tag {key}={tags[key]!r} is not mirrored as a label: {refused[key]}. "
            "It stays a tag (featurekube list --tag finds it); rename it to select it with "
            "kubectl get -l",
        )
        for key in sorted(set(refused) - refused_before)
    ]
    return LabelPlan(metadata, notices)
