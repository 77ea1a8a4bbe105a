"""Names of everything the operator derives from a view or service; pure.

One function per name, so the operator, the job and the SDK never disagree on where a
view's data lives.
"""

from __future__ import annotations

import hashlib
import json

from featurekube import versions
from featurekube.offline import layout as offline_layout
from featurekube.online import layout as online_layout
from featurekube.spec import v1alpha1
from featurekube_operator.settings import OperatorSettings
from featurekube_operator.windows import Window

__all__ = [
    "DATA_FIELDS",
    "LABEL_FEATURE_SERVICE",
    "LABEL_FEATURE_VIEW",
    "LABEL_VERSION",
    "data_fingerprint",
    "job_spec_name",
    "offline_uri",
    "online_table",
    "run_name",
    "snapshot_name",
    "spark_application_name",
]

LABEL_FEATURE_VIEW = versions.LABEL_FEATURE_VIEW
LABEL_FEATURE_SERVICE = "featurekube.dev/feature-service"
LABEL_VERSION = versions.LABEL_VERSION
LABEL_FINGERPRINT = "featurekube.dev/data-fingerprint"
ANNOTATION_WINDOW_START = "featurekube.dev/window-start"
ANNOTATION_WINDOW_END = "featurekube.dev/window-end"
ANNOTATION_GENERATION = "featurekube.dev/generation"
ANNOTATION_ATTEMPT = "featurekube.dev/attempt"
ANNOTATION_RUN = "featurekube.dev/run"
"""On a SparkApplication or Job: the backfill request it re-runs its window for (empty: the
scheduled run)."""
ANNOTATION_BACKFILL = "featurekube.dev/backfill"
"""On a FeatureView: windows to run again, ``<start>/<end>`` intervals separated by
commas, optionally followed by ``#`` and a note that makes a repeated request new."""
ANNOTATION_PLAN_HASH = "featurekube.dev/plan-hash"

DATA_FIELDS = versions.DATA_FIELDS
"""The spec fields that decide the data; a change to any of them makes a new version."""


def data_fingerprint(spec: v1alpha1.FeatureViewSpec) -> str:
    """A short hash of the fields in :data:`DATA_FIELDS`, defaults included."""
    fields = spec.to_yaml_dict()
    data = {key: fields.get(key) for key in DATA_FIELDS}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def online_table(settings: OperatorSettings, namespace: str, view: str, version: int) -> str:
    """``<prefix><namespace>.<view>.v<version>``: DynamoDB allows letters, digits, _ - ."""
    return online_layout.table_name(settings.table_prefix, namespace, view, version)


def offline_uri(settings: OperatorSettings, namespace: str, view: str, version: int) -> str:
    """``<offline_uri>/<namespace>/<view>/v<version>``, the view's Delta table."""
    return offline_layout.table_uri(settings.offline_uri, namespace, view, version)


snapshot_name = versions.snapshot_name
"""The immutable ConfigMap holding the spec one version was made from."""


def job_spec_name(view: str, version: int) -> str:
    """The ConfigMap a version's jobs mount: its snapshot's data fields, the view's
    other fields as they are now."""
    return f"{view}-v{version}-job"


def run_name(view: str, version: int, window: Window) -> str:
    """The SparkApplication or Job of an attempt at a window:
    ``<view>-v<version>-<start as yyyymmddhhmm>``; windows never share a start."""
    return f"{view}-v{version}-{window.start:%Y%m%d%H%M}"


spark_application_name = run_name
