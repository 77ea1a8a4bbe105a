"""A view's data versions, as their snapshots record them; pure.

A change to any of a view's data fields (:data:`DATA_FIELDS`) makes a new version,
with its own tables. The operator freezes each version's spec in an immutable
ConfigMap, its snapshot (``<view>-v<N>-spec``, labelled with the view and the
version); what reads a version's data — its jobs, the feature servers, training
pulls — takes that version's features, types and entities from it, and the view's
other fields (``ttl``, ``expectations``) as they are now (:func:`resolve_version_spec`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic
import yaml

from featurekube.spec import v1alpha1

__all__ = [
    "DATA_FIELDS",
    "LABEL_FEATURE_VIEW",
    "LABEL_VERSION",
    "SNAPSHOT_KEY",
    "read_snapshot",
    "read_snapshot_spec",
    "resolve_version_spec",
    "snapshot_name",
]

DATA_FIELDS = (
    "entities",
    "source",
    "transformation",
    "features",
    "aggregations",
    "aggregationInterval",
)
"""The spec fields that decide the data; a change to any of them makes a new version."""

LABEL_FEATURE_VIEW = "featurekube.dev/feature-view"
LABEL_VERSION = "featurekube.dev/version"
SNAPSHOT_KEY = "featureview.yaml"
"""The key of a snapshot ConfigMap's data holding the version's view."""


def snapshot_name(view: str, version: int) -> str:
    """The immutable ConfigMap holding the spec one version was made from."""
    return f"{view}-v{version}-spec"


def read_snapshot(configmap: Mapping[str, Any]) -> dict[str, Any] | None:
    """The whole document a snapshot ConfigMap holds (spec, and where the version's
    tables are under ``resolved``); None when it holds none."""
    text = (configmap.get("data") or {}).get(SNAPSHOT_KEY)
    try:
        document = yaml.safe_load(text or "")
    except yaml.YAMLError:
        return None
    return dict(document) if isinstance(document, dict) else None


def read_snapshot_spec(configmap: Mapping[str, Any]) -> dict[str, Any] | None:
    """The spec a snapshot ConfigMap froze; None when it holds none."""
    spec = (read_snapshot(configmap) or {}).get("spec")
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
    merged = {k: v for k, v in live.to_yaml_dict().items() if k not in DATA_FIELDS}
    merged.update({k: v for k, v in snapshot.items() if k in DATA_FIELDS})
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
