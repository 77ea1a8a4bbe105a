"""Why the pods of a view's runs or a service's feature server cannot start; pure.

A pod whose image is missing or whose container keeps crashing never finishes and never
becomes ready: its SparkApplication, Job or Deployment just waits. The kubelet says why
in the pod's container statuses (a waiting reason such as ``ImagePullBackOff`` or
``CrashLoopBackOff``) and the scheduler in its ``PodScheduled`` condition; this module
reads that, so that the view's or service's status names the pod and its reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["STUCK_REASONS", "PodProblem", "find_problems", "rolled_out", "summarize"]

STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "ImageInspectError",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
"""Waiting reasons of a container that will not start by waiting a little longer
(``ContainerCreating`` and ``PodInitializing`` will)."""
UNSCHEDULABLE = "Unschedulable"
_MESSAGE_CHARS = 240
_SHOWN = 3


@dataclass(frozen=True)
class PodProblem:
    """One pod that cannot start, and why."""

    pod: str
    container: str
    """The container that cannot start; '' when the pod was never scheduled."""
    reason: str
    """The kubelet's waiting reason (``ImagePullBackOff``...) or ``Unschedulable``."""
    message: str

    def describe(self) -> str:
        where = f"pod {self.pod}" + (f" container {self.container}" if self.container else "")
        message = " ".join(self.message.split())
        if len(message) > _MESSAGE_CHARS:
            message = message[: _MESSAGE_CHARS - 3] + "..."
        return f"{where}: {self.reason}" + (f": {message}" if message else "")


def rolled_out(deployment: Mapping[str, Any]) -> bool:
    """Whether a Deployment (its body) has every pod of its current template available:
    then none of its pods can be stuck, and they need not be listed.

    >>> rolled_out({"metadata": {"generation": 2}, "spec": {"replicas": 2},
    ...     "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
    ...                "availableReplicas": 2}})
    True
    >>> rolled_out({"metadata": {"generation": 3}, "spec": {"replicas": 2},
    ...     "status": {"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1,
    ...                "availableReplicas": 2, "unavailableReplicas": 1}})
    False
    """
    meta, spec, status = (deployment.get(k) or {} for k in ("metadata", "spec", "status"))
    wanted = int(spec.get("replicas", 1))
    return (
        int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
        and int(status.get("updatedReplicas") or 0) == wanted
        and int(status.get("availableReplicas") or 0) >= wanted
        and int(status.get("replicas") or 0) == wanted
        and not status.get("unavailableReplicas")
    )


def find_problems(pods: Sequence[Mapping[str, Any]]) -> list[PodProblem]:
    """The pods among ``pods`` (Pod bodies) that cannot start, in name order: those
    with a container waiting for a reason in :data:`STUCK_REASONS` (init containers
    first), or unschedulable. Finished and deleting pods are left out."""
    found = []
    for pod in sorted(pods, key=lambda p: str(p.get("metadata", {}).get("name", ""))):
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        name = str(meta.get("name", ""))
        problem = _container_problem(name, status) or _scheduling_problem(name, status)
        if problem is not None:
            found.append(problem)
    return found


def _container_problem(pod: str, status: Mapping[str, Any]) -> PodProblem | None:
    for container in (
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
    ):
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        if reason in STUCK_REASONS:
            message = str(waiting.get("message") or "")
            if reason == "CrashLoopBackOff":
                message = _last_exit(container) or message
            return PodProblem(pod, str(container.get("name", "")), reason, message)
    return None


def _last_exit(container: Mapping[str, Any]) -> str:
    """How a crash-looping container last ended: its exit code and message."""
    ended = (container.get("lastState") or {}).get("terminated") or {}
    if not ended:
        return ""
    said = str(ended.get("message") or ended.get("reason") or "").strip()
    return (
        f"exited with {ended.get('exitCode')}, restarted {container.get('restartCount', 0)} times"
        + (f": {said}" if said else "")
    )


def _scheduling_problem(pod: str, status: Mapping[str, Any]) -> PodProblem | None:
    for condition in status.get("conditions") or ():
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == UNSCHEDULABLE
        ):
            return PodProblem(pod, "", UNSCHEDULABLE, str(condition.get("message") or ""))
    return None


def summarize(problems: Sequence[PodProblem]) -> tuple[str, str]:
    """A condition's reason (the first pod's) and message (up to three pods, then how
    many more) for ``problems``, which must not be empty."""
    if not problems:
        raise ValueError("no pod problems to summarize")
    shown = "; ".join(p.describe() for p in problems[:_SHOWN])
    more = len(problems) - _SHOWN
    return problems[0].reason, shown + (f"; and {more} more pod(s)" if more > 0 else "")
