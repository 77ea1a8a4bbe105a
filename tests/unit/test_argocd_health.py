"""The Argo CD health checks in docs/argocd/argocd-cm.yaml, run by a Lua 5.1
interpreter (Argo CD's gopher-lua speaks Lua 5.1) against status samples shaped as the
operator writes them: the live object as the global ``obj``, the script's return value
the health."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lupa.lua51
import pytest
import yaml

ARGOCD_CM = Path(__file__).parents[2] / "docs" / "argocd" / "argocd-cm.yaml"
KEY = "resource.customizations.health.featurekube.dev_{}"


def _script(kind: str) -> str:
    data = yaml.safe_load(ARGOCD_CM.read_text())["data"]
    return str(data[KEY.format(kind)])


def _health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """Run the check as Argo CD does: the script is a chunk whose return value is the
    health, with the object (converted from JSON, numbers as Lua numbers) in ``obj``."""
    lua = lupa.lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(_script(kind))
    return str(result["status"]), str(result["message"])


def _condition(kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-02T03:30:00Z",
        "observedGeneration": 1,
    }


def _view(generation: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": {"name": "driver-profile", "namespace": "rides", "generation": generation},
        "spec": {"owner": "driver-platform"},
        **({"status": status} if status else {}),
    }


SERVING = [
    _condition("Ready", True, "Serving", "serving version 1"),
    _condition("Materialized", True, "WindowsCompleted", "materialized up to 2026-01-02T00:00:00Z"),
    _condition("Degraded", False, "Healthy", "no failed windows"),
]
HEALTHY_VIEW = _view(
    observedGeneration=1, version=1, latestVersion=1, conditions=copy.deepcopy(SERVING)
)


def test_a_served_view_is_healthy() -> None:
    assert _health("FeatureView", HEALTHY_VIEW) == ("Healthy", "serving version 1")


def test_a_view_the_operator_has_not_seen_is_progressing() -> None:
    status, message = _health("FeatureView", _view())
    assert status == "Progressing"
    assert "operator" in message


def test_a_new_generation_not_yet_observed_is_progressing() -> None:
    edited = copy.deepcopy(HEALTHY_VIEW)
    edited["metadata"]["generation"] = 2
    assert _health("FeatureView", edited) == (
        "Progressing",
        "Waiting for the featurekube operator to observe generation 2",
    )


def test_the_first_backfill_is_progressing() -> None:
    backfilling = _view(
        observedGeneration=1,
        latestVersion=1,
        conditions=[
            _condition(
                "Ready", False, "Backfilling", "version 1 is backfilling; nothing to serve yet"
            ),
            _condition("Materialized", False, "Backfilling", "no window has completed yet"),
            _condition("Degraded", False, "Healthy", "no failed windows"),
        ],
    )
    assert _health("FeatureView", backfilling) == (
        "Progressing",
        "version 1 is backfilling; nothing to serve yet",
    )


def test_a_new_version_backfilling_behind_the_served_one_is_progressing() -> None:
    view = _view(
        generation=2,
        observedGeneration=2,
        version=1,
        latestVersion=2,
        conditions=[
            _condition("Ready", True, "Serving", "serving version 1; version 2 is backfilling"),
            *copy.deepcopy(SERVING[1:]),
        ],
    )
    assert _health("FeatureView", view) == (
        "Progressing",
        "serving version 1; version 2 is backfilling",
    )


def test_a_failed_window_is_degraded() -> None:
    failed = "window [2026-01-01T00:00Z, 2026-01-02T00:00Z) of version 1 failed (attempt 3): boom"
    view = copy.deepcopy(HEALTHY_VIEW)
    view["status"]["conditions"][2] = _condition("Degraded", True, "WindowFailed", failed)
    assert _health("FeatureView", view) == ("Degraded", failed)


def test_an_invalid_view_is_degraded() -> None:
    message = "spec.ttl: not a duration (fix the spec; nothing runs until then)"
    view = _view(
        observedGeneration=1,
        conditions=[
            _condition("Ready", False, "InvalidSpec", message),
            _condition("Degraded", True, "InvalidSpec", message),
        ],
    )
    assert _health("FeatureView", view) == ("Degraded", message)


def _service(generation: int = 1, **status: Any) -> dict[str, Any]:
    body = _view(generation, **status)
    body["kind"] = "FeatureService"
    body["metadata"]["name"] = "eta-model"
    return body


@pytest.mark.parametrize(
    ("ready", "reason", "message", "expected"),
    [
        (True, "Serving", "3 feature server pod(s) serving", "Healthy"),
        (False, "FeatureViewsNotReady", "waiting for rides/driver-profile", "Progressing"),
        (False, "ServerUnavailable", "the feature server has no available pod", "Progressing"),
        (False, "FeatureViewNotFound", "FeatureView rides/driver-stats does not exist", "Degraded"),
        (False, "UnknownFeature", "FeatureView rides/driver-profile has no feature x", "Degraded"),
        (False, "FeatureViewNotShared", "FeatureView fraud/x is not shared", "Degraded"),
    ],
)
def test_a_service_follows_its_ready_condition(
    ready: bool, reason: str, message: str, expected: str
) -> None:
    service = _service(
        observedGeneration=1,
        endpoint="eta-model.rides.svc:50051",
        conditions=[_condition("Ready", ready, reason, message)],
    )
    assert _health("FeatureService", service) == (expected, message)


def test_a_service_edit_not_yet_observed_is_progressing() -> None:
    service = _service(
        generation=3,
        observedGeneration=2,
        conditions=[_condition("Ready", True, "Serving", "3 feature server pod(s) serving")],
    )
    assert _health("FeatureService", service)[0] == "Progressing"
    assert _health("FeatureService", _service())[0] == "Progressing"


def test_an_invalid_service_is_degraded() -> None:
    message = "spec.features: field required (fix the spec; nothing runs until then)"
    service = _service(
        observedGeneration=1,
        conditions=[
            _condition("Ready", False, "InvalidSpec", message),
            _condition("Degraded", True, "InvalidSpec", message),
        ],
    )
    assert _health("FeatureService", service) == ("Degraded", message)
