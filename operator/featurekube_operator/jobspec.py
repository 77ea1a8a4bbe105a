"""The spec a version's jobs read: its data fields as its snapshot froze them, every
other field as the view says now; pure.

A version's snapshot (an immutable ConfigMap) records the fields that decide its data
(:data:`naming.DATA_FIELDS`): a change to any of them makes a new version. Every other
field — ``ttl`` (the expiry written into online items), ``expectations`` (the checks a
window must pass), the materialization settings — governs how the same data is kept
and checked, so an edit to it reaches the next window of every active version without
a new one. The jobs mount a per-version ConfigMap rendered here, re-applied before
windows start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic
import yaml

from featurekube.spec import v1alpha1
from featurekube_operator import desired, naming
from featurekube_operator.settings import OperatorSettings

__all__ = ["read_snapshot_spec", "render_job_spec", "resolve_version_spec"]


def read_snapshot_spec(configmap: Mapping[str, Any]) -> dict[str, Any] | None:
    """The spec a snapshot ConfigMap froze; None when it holds none."""
    text = (configmap.get("data") or {}).get(desired.SNAPSHOT_KEY)
    try:
        spec = (yaml.safe_load(text or "") or {}).get("spec")
    except yaml.YAMLError:
        return None
    return dict(spec) if isinstance(spec, dict) else None


def resolve_version_spec(
    snapshot: Mapping[str, Any], live: v1alpha1.FeatureViewSpec
) -> v1alpha1.FeatureViewSpec:
    """One version's spec as it runs now: the snapshot's data fields with the live
    spec's other fields. Its jobs read it, and its feature servers serve it.

    Expectations naming a feature the version does not have (it was added in a later
    version) are left out; should the result still break a rule (a ``ttl`` shorter than
    the version's ``aggregationInterval``), the snapshot is used as it is.
    """
    merged = {k: v for k, v in live.to_yaml_dict().items() if k not in naming.DATA_FIELDS}
    merged.update({k: v for k, v in snapshot.items() if k in naming.DATA_FIELDS})
    features = {f.get("name") for f in merged.get("features") or merged.get("aggregations") or ()}
    kept = [e for e in merged.get("expectations") or () if e.get("feature") in features]
    if kept:
        merged["expectations"] = kept
    else:
        merged.pop("expectations", None)
    try:
        return v1alpha1.FeatureViewSpec.model_validate(merged)
    except pydantic.ValidationError:
        return v1alpha1.FeatureViewSpec.model_validate(snapshot)


def render_job_spec(
    view: v1alpha1.FeatureView,
    version: int,
    snapshot: Mapping[str, Any],
    settings: OperatorSettings,
    owner: Mapping[str, Any],
) -> dict[str, Any]:
    """The ConfigMap a version's jobs mount: the snapshot's shape, the resolved spec."""
    resolved = view.model_copy(update={"spec": resolve_version_spec(snapshot, view.spec)})
    body = desired.render_snapshot(resolved, version, settings, owner)
    body["metadata"]["name"] = naming.job_spec_name(view.metadata.name, version)
    # Not a snapshot: no version label, so it is never taken for one.
    body["metadata"]["labels"] = {naming.LABEL_FEATURE_VIEW: view.metadata.name}
    del body["immutable"]
    return body
