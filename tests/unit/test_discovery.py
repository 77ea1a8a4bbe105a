"""What featurekube list and describe show, from objects as the API server holds them;
pure, no cluster."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from featurekube import discovery, errors
from featurekube.cli import main as cli_main
from featurekube.spec import v1alpha1

VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-profile", "namespace": "rides"},
    "spec": {
        "owner": "eta-team",
        "description": "What drivers are like",
        "tags": {"team": "rides", "tier": "gold"},
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/drivers/"}},
        "features": [{"name": "rating", "type": "float64", "description": "Stars"}],
        "expectations": [{"feature": "rating", "max": 5}],
        "monitoring": {"drift": {"reference": {"trainingPull": "eta-2026-01"}}},
    },
    "status": {
        "version": 2,
        "latestVersion": 3,
        "servingVersions": [1, 2],
        "lastMaterializedWindow": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Serving",
                "message": "serving version 2",
            },
            {
                "type": "ExpectationsMet",
                "status": "False",
                "reason": "WarnViolations",
                "message": "the window starting 2026-01-01T23:00:00Z broke expectations of rating",
            },
        ],
        "freshness": {"objective": "2h", "met": False, "since": "2026-01-02T02:00:00Z"},
        "expectations": [
            {
                "feature": "rating",
                "check": "max",
                "onViolation": "Warn",
                "rows": 2,
                "message": "2 rows of rating are above max 5",
                "windowStart": "2026-01-01T23:00:00Z",
            }
        ],
        "drift": [
            {
                "feature": "rating",
                "psi": 0.31,
                "drifted": True,
                "windowStart": "2026-01-01T23:00:00Z",
            }
        ],
    },
}
SERVICE: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureService",
    "metadata": {"name": "eta-model", "namespace": "rides"},
    "spec": {
        "owner": "ETA-Team",
        "tags": {"team": "rides"},
        "features": [{"featureView": "driver-profile"}],
    },
    "status": {
        "endpoint": "eta-model.rides.svc:50051",
        "resolvedFeatures": [
            {
                "name": "rating",
                "type": "float64",
                "featureView": "driver-profile",
                "namespace": "rides",
            }
        ],
        "parity": {
            "checkedAt": "2026-01-02T01:00:00Z",
            "entities": 100,
            "values": 100,
            "mismatches": 1,
            "mismatchRate": 0.01,
            "examples": [
                {
                    "feature": "rating",
                    "entity": '{"driver_id": 7}',
                    "online": "4.5",
                    "offline": "4.7",
                }
            ],
        },
    },
}


def _view(**meta: Any) -> v1alpha1.FeatureView:
    body = copy.deepcopy(VIEW)
    body["metadata"].update(meta)
    return v1alpha1.FeatureView.model_validate(body)


def _service(**spec: Any) -> v1alpha1.FeatureService:
    body = copy.deepcopy(SERVICE)
    body["spec"].update(spec)
    return v1alpha1.FeatureService.model_validate(body)


def _other_view() -> v1alpha1.FeatureView:
    body = copy.deepcopy(VIEW)
    body["metadata"] = {"name": "zone-demand", "namespace": "maps"}
    body["spec"]["owner"] = "maps-team"
    body["spec"]["tags"] = {"team": "maps"}
    body["spec"]["entities"] = [{"name": "zone", "type": "string"}]
    del body["status"]
    return v1alpha1.FeatureView.model_validate(body)


def test_list_filters_by_owner_tag_and_entity() -> None:
    views, services = [_view(), _other_view()], [_service()]

    every = discovery.list_rows(views, services)
    assert [(r["namespace"], r["reference"]) for r in every] == [
        ("maps", "fv/zone-demand"),
        ("rides", "fv/driver-profile"),
        ("rides", "fs/eta-model"),
    ]
    names = lambda f: [r["name"] for r in discovery.list_rows(views, services, f)]  # noqa: E731
    assert names(discovery.Filters(owner="eta-team")) == ["driver-profile", "eta-model"]
    assert names(discovery.Filters(tags=(("team", "maps"),))) == ["zone-demand"]
    assert names(discovery.Filters(tags=(("tier", None),))) == ["driver-profile"]
    assert names(discovery.Filters(tags=(("team", "rides"), ("tier", "silver")))) == []
    # A service matches an entity through the views it serves.
    assert names(discovery.Filters(entity="driver_id")) == ["driver-profile", "eta-model"]
    assert names(discovery.Filters(entity="zone")) == ["zone-demand"]


def test_the_list_table_and_json() -> None:
    rows = discovery.list_rows([_view(), _other_view()], [_service()])
    table = discovery.render_table(rows).splitlines()

    assert table[0].split() == [
        "NAMESPACE",
        "NAME",
        "OWNER",
        "ENTITIES",
        "READY",
        "SERVING",
        "FRESH",
        "TAGS",
    ]
    assert table[1].split() == [
        "maps",
        "fv/zone-demand",
        "maps-team",
        "zone",
        "Unknown",
        "-",
        "-",
        "team=maps",
    ]
    assert table[2].split() == [
        "rides",
        "fv/driver-profile",
        "eta-team",
        "driver_id",
        "True",
        "2",
        "no",
        "team=rides,tier=gold",
    ]
    assert json.loads(discovery.render_json(rows))[2] == {
        "kind": "FeatureService",
        "namespace": "rides",
        "name": "eta-model",
        "reference": "fs/eta-model",
        "owner": "ETA-Team",
        "entities": ["driver_id"],
        "ready": "Unknown",
        "serving": None,
        "fresh": None,
        "tags": {"team": "rides"},
        "description": None,
    }


@pytest.mark.parametrize(
    ("reference", "kind"),
    [
        ("fv/driver-profile", "FeatureView"),
        ("featureview/driver-profile", "FeatureView"),
        ("fs/driver-profile", "FeatureService"),
        ("fsvc/eta-model", "FeatureService"),
        ("eta-model", "FeatureService"),
    ],
)
def test_references_resolve_to_whichever_exists(reference: str, kind: str) -> None:
    views = [_view()]
    services = [
        _service(),
        v1alpha1.FeatureService.model_validate(
            {**copy.deepcopy(SERVICE), "metadata": {"name": "driver-profile", "namespace": "rides"}}
        ),
    ]
    found = discovery.resolve(reference, "rides", views, services)
    assert found.kind == kind


def test_a_bare_name_of_both_kinds_is_ambiguous_and_a_missing_one_is_not_found() -> None:
    twin = copy.deepcopy(SERVICE)
    twin["metadata"]["name"] = "driver-profile"
    services = [v1alpha1.FeatureService.model_validate(twin)]

    with pytest.raises(errors.CatalogQueryError, match=r"ambiguous.*fv/driver-profile or fs/"):
        discovery.resolve("driver-profile", "rides", [_view()], services)
    with pytest.raises(errors.ClusterError, match="no FeatureView 'gone' in namespace rides"):
        discovery.resolve("fv/gone", "rides", [_view()], services)
    with pytest.raises(errors.ClusterError, match="namespace maps"):
        discovery.resolve("driver-profile", "maps", [_view()], services)
    with pytest.raises(errors.CatalogQueryError, match="neither fv"):
        discovery.parse_reference("deploy/driver-profile")
    with pytest.raises(errors.CatalogQueryError, match="KEY=VALUE"):
        discovery.parse_tag("=rides")


def test_describe_a_view_shows_its_spec_versions_and_health() -> None:
    described = discovery.describe_view(_view())

    assert described["versions"] == {
        "serving": 2,
        "latest": 3,
        "servingVersions": [1, 2],
        "progress": [],
    }
    assert described["freshness"] == {
        "objective": "2h",
        "met": False,
        "since": "2026-01-02T02:00:00Z",
    }
    assert described["expectations"][0]["rows"] == 2
    assert described["drift"][0]["drifted"] is True
    json.loads(discovery.render_json(described))

    text = discovery.render_description(described)
    assert text.startswith("FeatureView rides/driver-profile\nOwner:           eta-team")
    for line in (
        "Tags:            team=rides, tier=gold",
        "Entities:        driver_id (int64)",
        "Versions:        serving 2, latest 3, also serving 1, 2",
        "Freshness:       NOT met (objective 2h) since 2026-01-02T02:00:00Z",
        "Materialized:    [2026-01-01T00:00:00Z, 2026-01-02T00:00:00Z)",
    ):
        assert line in text
    assert "ExpectationsMet  False   WarnViolations" in text
    assert "rating   max    Warn          2     2026-01-01T23:00:00Z" in text
    assert "rating   0.31  yes" in text


def test_describe_a_service_shows_its_features_and_parity() -> None:
    described = discovery.describe_service(_service())
    text = discovery.render_description(described)

    assert "Endpoint:        eta-model.rides.svc:50051" in text
    assert "Parity:          1 of 100 values differ (1.00%) over 100 entities" in text
    assert '{"driver_id": 7}' in text
    assert described["views"] == [
        {
            "featureView": "driver-profile",
            "namespace": "rides",
            "features": "all",
            "version": None,
            "prefix": None,
        }
    ]
    bare = discovery.describe_service(
        v1alpha1.FeatureService.model_validate({**SERVICE, "status": None})
    )
    assert "Parity:          -" in discovery.render_description(bare)


def test_the_commands_parse() -> None:
    parser = cli_main.build_parser()
    args = parser.parse_args(["list", "-A", "--tag", "team=rides", "--entity", "driver_id"])
    assert args.all_namespaces and args.tag == ["team=rides"] and args.run.__name__ == "run_list"
    args = parser.parse_args(["describe", "fv/driver-profile", "-n", "rides", "-o", "json"])
    assert (args.reference, args.namespace, args.output) == ("fv/driver-profile", "rides", "json")
