"""Who may call a feature server: the subjects of a FeatureService's ``spec.access``,
as the serving plan carries them and the server matches callers against them; pure.

A subject is a Kubernetes ServiceAccount, written ``NAMESPACE/NAME`` or as its user
name ``system:serviceaccount:NAMESPACE:NAME``; ``NAME`` may be ``*``: every
ServiceAccount of the namespace. The plan carries each in the user-name form, which is
what a TokenReview answers, so the server compares strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = [
    "SERVICE_ACCOUNT_PREFIX",
    "SUBJECT_PATTERN",
    "allows",
    "default_subjects",
    "normalize_subject",
    "normalized",
]

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
"""How Kubernetes names a ServiceAccount as a user."""

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_NAME = r"[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?"
SUBJECT_PATTERN = rf"^(({_LABEL})/({_NAME}|\*)|system:serviceaccount:({_LABEL}):({_NAME}|\*))$"
"""``NAMESPACE/NAME``, ``NAMESPACE/*`` or ``system:serviceaccount:NAMESPACE:NAME`` (or
``:*``)."""

_SUBJECT = re.compile(SUBJECT_PATTERN)


def normalize_subject(subject: str) -> str:
    """``rides/eta`` -> ``system:serviceaccount:rides:eta``; raises ValueError for
    anything that is not a subject."""
    match = _SUBJECT.match(subject)
    if match is None:
        raise ValueError(
            f"{subject!r} is not a ServiceAccount: write NAMESPACE/NAME, NAMESPACE/* or "
            "system:serviceaccount:NAMESPACE:NAME"
        )
    if subject.startswith(SERVICE_ACCOUNT_PREFIX):
        return subject
    namespace, _, name = subject.partition("/")
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def default_subjects(namespace: str) -> list[str]:
    """Who may call when the service says nothing: its own namespace's ServiceAccounts."""
    return [f"{SERVICE_ACCOUNT_PREFIX}{namespace}:*"]


def allows(subjects: Iterable[str], username: str) -> bool:
    """Whether the caller ``username`` (a TokenReview's user name) is one of
    ``subjects`` (normalized): named, or a ServiceAccount of a namespace given as ``*``."""
    for subject in subjects:
        if subject == username:
            return True
        if subject.endswith(":*") and username.startswith(SERVICE_ACCOUNT_PREFIX):
            namespace = subject[len(SERVICE_ACCOUNT_PREFIX) : -2]
            rest = username[len(SERVICE_ACCOUNT_PREFIX) :]
            caller_namespace, sep, name = rest.partition(":")
            if sep and name and caller_namespace == namespace:
                return True
    return False


def normalized(subjects: Sequence[str] | None, namespace: str) -> list[str]:
    """``subjects`` normalized; None: the namespace's own ServiceAccounts."""
    if subjects is None:
        return default_subjects(namespace)
    return [normalize_subject(s) for s in subjects]
