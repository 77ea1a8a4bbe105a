"""Who may read a view, and what a service serves once a share is gone; pure."""

from __future__ import annotations

import copy

from featurekube.serving_plan import ResolvedView
from featurekube.spec import v1alpha1
from featurekube_operator import sharing
from operator_support import STORED_VIEW as VIEW


def _parsed_view(namespace: str, shared: list[str] | None) -> v1alpha1.FeatureView:
    body = copy.deepcopy(VIEW)
    body["metadata"] = {"name": "driver-profile", "namespace": namespace}
    body.pop("status")
    if shared is not None:
        body["spec"]["sharedWith"] = shared
    return v1alpha1.FeatureView.model_validate(body)


def test_a_view_is_read_by_its_own_namespace_and_those_it_is_shared_with() -> None:
    assert sharing.may_read(_parsed_view("rides", None), "rides")
    assert not sharing.may_read(_parsed_view("rides", None), "fraud")
    assert sharing.may_read(_parsed_view("rides", ["fraud"]), "fraud")
    assert not sharing.may_read(_parsed_view("rides", ["fraud"]), "ads")
    assert sharing.may_read(_parsed_view("rides", ["*"]), "ads")


def test_references_map_each_view_to_the_service_that_reads_it() -> None:
    spec = {
        "features": [
            {"featureView": "driver-profile", "namespace": "rides"},
            {"featureView": "rider-profile"},
            {"featureView": 7},
        ]
    }
    assert sharing.references("fraud", "risk", spec) == {
        ("rides", "driver-profile"): ("fraud", "risk"),
        ("fraud", "rider-profile"): ("fraud", "risk"),
    }


def test_transformations_reading_a_withdrawn_view_are_left_out() -> None:
    service = v1alpha1.FeatureService.model_validate(
        {
            "apiVersion": "featurekube.dev/v1alpha1",
            "kind": "FeatureService",
            "metadata": {"name": "risk", "namespace": "fraud"},
            "spec": {
                "owner": "fraud-team",
                "features": [
                    {"featureView": "driver-profile", "namespace": "rides", "prefix": "d_"},
                    {"featureView": "card-stats"},
                ],
                "requestData": [{"name": "amount", "type": "float64"}],
                "transformations": [
                    {"name": "by_rating", "type": "float64", "expression": "amount * d_rating"},
                    {"name": "by_count", "type": "float64", "expression": "amount / N"},
                    {"name": "doubled", "type": "float64", "expression": "amount * 2"},
                ],
            },
        }
    )
    card_stats = _parsed_view("fraud", None).model_copy(
        update={"metadata": v1alpha1.ObjectMeta(name="card-stats", namespace="fraud")}
    )
    kept = [ResolvedView(view=card_stats, online_table="t", features=["n"], prefix="")]

    served, dropped = sharing.served_transformations(service, kept)

    assert dropped == ["by_rating"]
    assert [t.name for t in served.spec.transformations or ()] == ["by_count", "doubled"]
    assert sharing.served_transformations(service, [])[1] == ["by_rating", "by_count"]
