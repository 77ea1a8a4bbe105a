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

from featurekube.spec import v1alpha1
from featurekube.versions import read_snapshot_spec, resolve_version_spec
from featurekube_operator import desired, naming
from featurekube_operator.settings import OperatorSettings

__all__ = ["read_snapshot_spec", "render_job_spec", "resolve_version_spec"]


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
