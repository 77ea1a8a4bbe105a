"""Why a run's or a feature server's pods cannot start, read from their status; pure."""

from __future__ import annotations

from typing import Any

import pytest

from featurekube_operator import pods


def _pod(name: str, phase: str = "Pending", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": phase, **status}}


def _waiting(container: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"name": container, "state": {"waiting": {"reason": reason, "message": message}}}


def test_a_missing_image_names_the_pod_container_reason_and_the_kubelets_message() -> None:
    missing = _pod(
        "view-w1-driver",
        containerStatuses=[
            _waiting(
                "spark-kubernetes-driver",
                "ErrImageNeverPull",
                'Container image "ghcr.io/featurekube/spark:missing" is not present with pull '
                "policy of Never",
            )
        ],
    )

    [problem] = pods.find_problems([missing])

    assert problem == pods.PodProblem(
        "view-w1-driver",
        "spark-kubernetes-driver",
        "ErrImageNeverPull",
        'Container image "ghcr.io/featurekube/spark:missing" is not present with pull policy '
        "of Never",
    )
    assert problem.describe().startswith(
        "pod view-w1-driver container spark-kubernetes-driver: ErrImageNeverPull: Container image"
    )


def test_a_crash_loop_says_how_the_container_last_ended() -> None:
    crashing = _pod(
        "eta-model-7f9c-abcde",
        "Running",
        containerStatuses=[
            {
                "name": "server",
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m0s"}},
                "lastState": {
                    "terminated": {"exitCode": 2, "reason": "Error", "message": "no plan at /x"}
                },
            }
        ],
    )

    reason, message = pods.summarize(pods.find_problems([crashing]))

    assert reason == "CrashLoopBackOff"
    assert message == (
        "pod eta-model-7f9c-abcde container server: CrashLoopBackOff: "
        "exited with 2, restarted 4 times: no plan at /x"
    )


def test_pods_that_are_starting_running_or_finished_are_not_problems() -> None:
    found = pods.find_problems(
        [
            _pod("creating", containerStatuses=[_waiting("c", "ContainerCreating")]),
            _pod("initialising", initContainerStatuses=[_waiting("i", "PodInitializing")]),
            _pod("running", "Running", containerStatuses=[{"name": "c", "state": {"running": {}}}]),
            _pod("done", "Failed", containerStatuses=[_waiting("c", "ImagePullBackOff")]),
            {
                "metadata": {"name": "leaving", "deletionTimestamp": "2026-01-01T00:00:00Z"},
                "status": {"containerStatuses": [_waiting("c", "ImagePullBackOff")]},
            },
            _pod("new"),
        ]
    )

    assert found == []


def test_an_init_container_and_an_unschedulable_pod_are_problems_in_name_order() -> None:
    found = pods.find_problems(
        [
            _pod(
                "b-unschedulable",
                conditions=[
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/1 nodes are available: 1 Insufficient memory.",
                    }
                ],
            ),
            _pod(
                "a-init",
                initContainerStatuses=[_waiting("setup", "CreateContainerConfigError", "no key")],
                containerStatuses=[_waiting("main", "PodInitializing")],
            ),
        ]
    )

    assert [(p.pod, p.container, p.reason) for p in found] == [
        ("a-init", "setup", "CreateContainerConfigError"),
        ("b-unschedulable", "", "Unschedulable"),
    ]
    assert found[1].describe() == (
        "pod b-unschedulable: Unschedulable: 0/1 nodes are available: 1 Insufficient memory."
    )


def test_the_summary_shows_three_pods_then_counts_and_bounds_each_message() -> None:
    many = [
        _pod(f"p{i}", containerStatuses=[_waiting("c", "ImagePullBackOff", "x" * 1000)])
        for i in range(5)
    ]

    reason, message = pods.summarize(pods.find_problems(many))

    assert reason == "ImagePullBackOff"
    assert message.count("pod p") == 3
    assert message.endswith("; and 2 more pod(s)")
    assert len(message) < 3 * 300
    with pytest.raises(ValueError, match="no pod problems"):
        pods.summarize([])


def _deployment(status: dict[str, int], generation: int = 1, wanted: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": wanted},
        "status": {"observedGeneration": generation, **status},
    }


def test_only_a_deployment_with_every_current_pod_available_is_rolled_out() -> None:
    done = {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    assert pods.rolled_out(_deployment(done))
    # A new template whose pods cannot start: old pods still serve, new ones are stuck.
    surging = {"replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}
    assert not pods.rolled_out(_deployment({**surging, "unavailableReplicas": 1}))
    assert not pods.rolled_out(_deployment({**done, "availableReplicas": 1}))
    # A change the controller has not seen yet.
    stale = _deployment(done, generation=3)
    stale["status"]["observedGeneration"] = 2
    assert not pods.rolled_out(stale)
    # No status at all: a Deployment just made.
    assert not pods.rolled_out({"metadata": {"generation": 1}, "spec": {"replicas": 1}})
