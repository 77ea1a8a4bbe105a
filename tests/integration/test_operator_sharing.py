"""Sharing a view across namespaces, against the real API server: a revoked share leaves
the consumer's serving plan within one reconcile, which the view's change starts."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from typing import Any

import kopf
import kubernetes.client
import pytest
from kopf.testing import KopfRunner

from featurekube_operator import reconcile, sharing
from operator_support import GROUP, SERVICE, VIEW, context
from operator_support import create as _create
from operator_support import custom as _custom
from operator_support import get as _get
from operator_support import plan as _plan
from operator_support import ready as _ready
from operator_support import step as _step
from support import eventually

_eventually = functools.partial(eventually, ignore=(kubernetes.client.exceptions.ApiException,))
HANDLERS = "featurekube_operator.handlers"
"""Imported by kopf when it starts, not here: the module reads the reconcile interval
from the environment at import."""


@pytest.fixture
def ctx(kube_api: kubernetes.client.ApiClient, table_prefix: str) -> reconcile.Context:
    return context(kube_api, table_prefix)


@pytest.fixture
def producer(kube_api: kubernetes.client.ApiClient, namespace: str) -> Iterator[str]:
    """A second namespace, whose team owns the views the test's namespace reads."""
    core = kubernetes.client.CoreV1Api(kube_api)
    name = f"{namespace[:50]}-views"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def _served_views(kube_api: kubernetes.client.ApiClient, namespace: str) -> list[str]:
    plan = _plan(kube_api, namespace) or {"featureViews": []}
    return [f"{v['namespace']}/{v['name']}" for v in plan["featureViews"]]


def _share(kube_api: kubernetes.client.ApiClient, namespace: str, shared: list[str]) -> None:
    _custom(kube_api).patch_namespaced_custom_object(
        *GROUP, namespace, "featureviews", "driver-profile", {"spec": {"sharedWith": shared}}
    )


# -- revoking a share -------------------------------------------------------------------


def test_revoking_a_share_removes_the_view_from_the_consumers_plan_in_one_reconcile(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str, producer: str
) -> None:
    shared = copy.deepcopy(VIEW)
    shared["spec"]["sharedWith"] = [namespace]
    _create(kube_api, producer, shared)
    _create(kube_api, namespace, VIEW | {"metadata": {"name": "driver-local"}})
    service = copy.deepcopy(SERVICE)
    service["spec"]["features"] = [
        {"featureView": "driver-profile", "namespace": producer, "prefix": "shared_"},
        {"featureView": "driver-local"},
    ]
    service["spec"]["transformations"] = [
        {"name": "both", "type": "string", "expression": "concat(rating, shared_rating)"},
        {"name": "local", "type": "string", "expression": "upper(rating)"},
    ]
    _create(kube_api, namespace, service)
    _step(ctx, kube_api, namespace, "featureservices", "eta-model")
    assert _served_views(kube_api, namespace) == [
        f"{producer}/driver-profile",
        f"{namespace}/driver-local",
    ]

    _share(kube_api, producer, [])
    status = _step(ctx, kube_api, namespace, "featureservices", "eta-model")

    assert _served_views(kube_api, namespace) == [f"{namespace}/driver-local"]
    plan = _plan(kube_api, namespace) or {}
    assert [t["name"] for t in plan["transformations"]] == ["local"]
    ready = _ready(status)
    assert (ready["status"], ready["reason"]) == ("False", sharing.NOT_SHARED)
    assert (
        f"FeatureView {producer}/driver-profile is not shared with namespace" in (ready["message"])
    )
    assert "nor the transformations both that read it" in ready["message"]
    assert [f["name"] for f in status["resolvedFeatures"]] == ["rating", "local"]


def test_a_service_left_with_no_view_it_may_read_runs_no_server(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str, producer: str
) -> None:
    shared = copy.deepcopy(VIEW)
    shared["spec"]["sharedWith"] = ["*"]
    _create(kube_api, producer, shared)
    service = copy.deepcopy(SERVICE)
    service["spec"]["features"][0]["namespace"] = producer
    _create(kube_api, namespace, service)
    _step(ctx, kube_api, namespace, "featureservices", "eta-model")
    apps = kubernetes.client.AppsV1Api(kube_api)
    assert apps.read_namespaced_deployment("eta-model", namespace)

    _share(kube_api, producer, ["some-other-team"])
    _step(ctx, kube_api, namespace, "featureservices", "eta-model")

    assert _plan(kube_api, namespace) is None
    with pytest.raises(kubernetes.client.exceptions.ApiException) as gone:
        apps.read_namespaced_deployment("eta-model", namespace)
    assert gone.value.status == 404


def test_a_deleted_view_of_another_namespace_leaves_the_plan_a_local_one_does_not(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str, producer: str
) -> None:
    shared = copy.deepcopy(VIEW)
    shared["spec"]["sharedWith"] = [namespace]
    _create(kube_api, producer, shared)
    _create(kube_api, namespace, VIEW | {"metadata": {"name": "driver-local"}})
    service = copy.deepcopy(SERVICE)
    service["spec"]["features"] = [
        {"featureView": "driver-profile", "namespace": producer, "prefix": "shared_"},
        {"featureView": "driver-local"},
    ]
    _create(kube_api, namespace, service)
    _step(ctx, kube_api, namespace, "featureservices", "eta-model")
    custom = _custom(kube_api)

    # A team's own view, gone for a moment (a sync that recreates it): still served.
    custom.delete_namespaced_custom_object(*GROUP, namespace, "featureviews", "driver-local")
    local = _ready(_step(ctx, kube_api, namespace, "featureservices", "eta-model"))
    assert local["reason"] == "FeatureViewNotFound"
    assert _served_views(kube_api, namespace) == [
        f"{producer}/driver-profile",
        f"{namespace}/driver-local",
    ]

    # Another team's view, deleted: its share is gone with it.
    custom.delete_namespaced_custom_object(*GROUP, producer, "featureviews", "driver-profile")
    ready = _ready(_step(ctx, kube_api, namespace, "featureservices", "eta-model"))

    assert ready["reason"] == "FeatureViewNotFound"
    assert f"FeatureView {producer}/driver-profile no longer served" in ready["message"]
    assert _plan(kube_api, namespace) is None, "nothing left that it may read"


def test_a_change_of_sharedwith_reconciles_the_services_that_read_the_view(
    ctx: reconcile.Context,
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    producer: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from featurekube_operator import handlers

    shared = copy.deepcopy(VIEW)
    shared["spec"]["sharedWith"] = [namespace]
    _create(kube_api, producer, shared)
    service = copy.deepcopy(SERVICE)
    service["spec"]["features"] = [
        {"featureView": "driver-profile", "namespace": producer},
        {"featureView": "driver-profile", "namespace": producer, "prefix": "again_"},
    ]
    _create(kube_api, namespace, service)
    _step(ctx, kube_api, namespace, "featureservices", "eta-model")
    posted: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "event", lambda _body, **event: posted.append(event))
    # The index as kopf keeps it: what handlers.consumers returns for each service.
    index = {
        key: [value]
        for key, value in handlers.consumers(
            namespace=namespace, name="eta-model", spec=kopf.Spec(service)
        ).items()
    }
    assert index == {(producer, "driver-profile"): [(namespace, "eta-model")]}
    memo = kopf.Memo()
    memo["context"] = ctx

    _share(kube_api, producer, [])
    view = kopf.Body(_get(kube_api, producer, "featureviews", "driver-profile"))
    handlers.feature_view_shares_changed(body=view, memo=memo, consumers=index)

    assert _served_views(kube_api, namespace) == []
    ready = _ready(_get(kube_api, namespace, "featureservices", "eta-model")["status"])
    assert ready["reason"] == sharing.NOT_SHARED
    assert [e["reason"] for e in posted] == [sharing.NOT_SHARED]


def _handled_shares(kube_api: kubernetes.client.ApiClient, namespace: str) -> Any:
    """The view's sharedWith as kopf last handled it."""
    view = _get(kube_api, namespace, "featureviews", "driver-profile")
    handled = (view["metadata"].get("annotations") or {}).get(
        "featurekube.dev/last-handled-configuration"
    )
    return json.loads(handled)["spec"].get("sharedWith") if handled else None


def test_the_running_operator_withdraws_a_revoked_view_through_its_index_of_consumers(
    kube_api: kubernetes.client.ApiClient, namespace: str, producer: str, table_prefix: str
) -> None:
    shared = copy.deepcopy(VIEW)
    shared["spec"]["sharedWith"] = [namespace]
    _create(kube_api, producer, shared)
    service = copy.deepcopy(SERVICE)
    service["spec"]["features"][0]["namespace"] = producer
    _create(kube_api, namespace, service)
    env = {"FEATUREKUBE_TABLE_PREFIX": table_prefix, "FEATUREKUBE_METRICS_PORT": "0"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        args = ["run", "--standalone", "--namespace", namespace, "--namespace", producer]
        with KopfRunner([*args, "-m", HANDLERS], timeout=60) as runner:
            _eventually(
                lambda: _served_views(kube_api, namespace) == [f"{producer}/driver-profile"],
                30,
                "the service serves the shared view",
            )
            _eventually(
                lambda: _handled_shares(kube_api, producer) == [namespace], 30, "kopf has the view"
            )
            _share(kube_api, producer, [])
            _eventually(
                lambda: _served_views(kube_api, namespace) == [],
                30,
                "the revoked view leaves the plan",
            )
            _eventually(lambda: _handled_shares(kube_api, producer) == [], 30, "kopf is done")
    assert runner.exception is None
    assert "Handler 'feature_view_shares_changed/spec.sharedWith' succeeded" in runner.output
