"""The errors featurekube raises; no I/O.

Every error a user can act on derives from :class:`FeaturekubeError`. Messages name
the object and field, say what was expected and found, and suggest a next step.
Errors carry no transport knowledge: the feature server maps them to gRPC codes and
the operator to kopf's permanent or temporary errors, each in one table of its own.

    FeaturekubeError
    ├── MissingDependencyError   an optional extra (spark, server, ...) is not installed
    ├── ClusterError             the cluster's feature definitions could not be read
    │   ├── KubeconfigError          no usable kubeconfig
    │   ├── ClusterUnreachableError  the API server did not answer
    │   ├── CrdsNotInstalledError    featurekube's CRDs are not installed there
    │   └── ForbiddenError           the identity may not list featurekube's objects
    └── PlatformError            the local platform (`featurekube dev`) failed
        └── ComponentStartError  one part of it did not start; carries its log tail
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "ClusterUnreachableError",
    "ComponentStartError",
    "CrdsNotInstalledError",
    "FeaturekubeError",
    "ForbiddenError",
    "KubeconfigError",
    "MissingDependencyError",
    "PlatformError",
]


class FeaturekubeError(Exception):
    """Base class of every error featurekube raises on purpose."""


class MissingDependencyError(FeaturekubeError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class ClusterError(FeaturekubeError):
    """The cluster's feature definitions could not be read."""


class KubeconfigError(ClusterError):
    """No usable kubeconfig: missing, unreadable, or without a current context."""


class ClusterUnreachableError(ClusterError):
    """The API server did not answer (refused, timed out, TLS failed)."""


class CrdsNotInstalledError(ClusterError):
    """The API server does not serve featurekube's resources: its CRDs are not installed."""


class ForbiddenError(ClusterError):
    """The kubeconfig's identity may not list featurekube's objects."""


class PlatformError(FeaturekubeError):
    """The local platform could not be built, started, stopped or reached."""


class ComponentStartError(PlatformError):
    """One component of the local platform did not become ready.

    The message names the component, says what was awaited, and ends with the tail
    of the component's log, which is usually where the cause is.
    """

    def __init__(self, component: str, reason: str, log_tail: str) -> None:
        self.component = component
        self.reason = reason
        self.log_tail = log_tail
        tail = log_tail.rstrip() or "(the log is empty)"
        super().__init__(
            f"{component} failed to start: {reason}\n--- last lines of its log ---\n{tail}"
        )
