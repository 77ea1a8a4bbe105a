from __future__ import annotations

import copy
from typing import Any

import yaml

from featurekube.spec import v1alpha1
from featurekube_operator import desired, jobspec, naming
from featurekube_operator.settings import OperatorSettings

SETTINGS = OperatorSettings(offline_uri="s3://lake/offline/", table_prefix="fk.")
OWNER = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "drivers", "uid": "u-1"},
}
V1: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "drivers", "namespace": "rides"},
    "spec": {
        "owner": "eta",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://raw-data/drivers/"}},
        "features": [{"name": "rating", "type": "float64"}],
        "ttl": "1d",
    },
}


def _view(**spec: Any) -> v1alpha1.FeatureView:
    doc = copy.deepcopy(V1)
    doc["spec"].update(spec)
    return v1alpha1.FeatureView.model_validate(doc)


def _snapshot() -> dict[str, Any]:
    return copy.deepcopy(V1["spec"])


def test_a_new_ttl_reaches_the_jobs_of_the_same_version() -> None:
    live = _view(ttl="7d")

    assert naming.data_fingerprint(live.spec) == naming.data_fingerprint(_view().spec)
    assert jobspec.resolve_version_spec(_snapshot(), live.spec).ttl == "7d"


def test_new_expectations_reach_the_jobs_of_the_same_version() -> None:
    checks = [{"feature": "rating", "notNull": False, "max": 5.0, "onViolation": "Fail"}]
    live = _view(expectations=checks)

    resolved = jobspec.resolve_version_spec(_snapshot(), live.spec)

    assert resolved.expectations is not None
    assert [e.to_yaml_dict() for e in resolved.expectations] == checks


def test_an_older_version_keeps_its_own_data_fields_and_skips_checks_of_features_it_lacks() -> None:
    live = _view(
        features=[{"name": "rating", "type": "float64"}, {"name": "trips", "type": "int64"}],
        expectations=[{"feature": "trips", "notNull": True}, {"feature": "rating", "min": 0.0}],
        ttl="2d",
    )

    resolved = jobspec.resolve_version_spec(_snapshot(), live.spec)

    assert resolved.feature_names == ["rating"]
    assert resolved.ttl == "2d"
    assert [e.feature for e in resolved.expectations or ()] == ["rating"]


def test_the_jobs_configmap_is_mutable_and_is_never_taken_for_a_snapshot() -> None:
    body = jobspec.render_job_spec(_view(ttl="7d"), 1, _snapshot(), SETTINGS, OWNER)

    assert body["metadata"]["name"] == "drivers-v1-job"
    assert "immutable" not in body
    assert naming.LABEL_VERSION not in body["metadata"]["labels"]
    resolved = yaml.safe_load(body["data"][desired.SNAPSHOT_KEY])
    assert resolved["spec"]["ttl"] == "7d"
    assert resolved["resolved"]["onlineTable"] == "fk.rides.drivers.v1"
