"""The FeatureView the operator benchmarks create: five float features of one int64 entity."""

from __future__ import annotations

from typing import Any


def feature_view(
    name: str, namespace: str, path: str, materialization: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "owner": "bench",
            "entities": [{"name": "driver_id", "type": "int64"}],
            "source": {"batch": {"path": path}},
            "features": [{"name": f"f{j}", "type": "float64"} for j in range(5)],
            "materialization": materialization,
        },
    }
