"""The serving plan of a FeatureService: what its feature server serves; pure, no I/O.

The operator renders it from a FeatureService and the views it references (their
serving versions' tables, read from the cluster) into a ConfigMap that the feature
server mounts; ``featurekube serve`` renders the same plan from a directory of YAML,
for a server on the developer's machine. :func:`render_serving_plan` is that one
rendering; :func:`resolve_references` is how ``featurekube serve`` finds the views
without a cluster (the operator does the same against the API server, writing what it
finds into status conditions instead of raising).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featurekube import errors, serving_access
from featurekube.spec import v1alpha1

__all__ = ["ResolvedView", "render_serving_plan", "resolve_references"]


@dataclass(frozen=True)
class ResolvedView:
    """A view a service references, with where its serving version's values are."""

    view: v1alpha1.FeatureView
    online_table: str
    features: Sequence[str]
    prefix: str
    offline_uri: str | None = None
    """Where a push-source view's pushed rows are appended (None: not kept offline)."""


def render_serving_plan(
    service: v1alpha1.FeatureService,
    views: Sequence[ResolvedView],
    monitors: Sequence[str] = (),
) -> dict[str, Any]:
    """What the feature server serves: features, their types, tables and TTLs, and who
    may read and push (``spec.access``, its subjects as user names); ``monitors``, user
    names the platform itself reads as (the operator's parity check), join the readers."""
    namespace = service.metadata.namespace or "default"
    access = service.spec.access
    readers = serving_access.normalized(access.read if access else None, namespace)
    return {
        "featureService": service.metadata.name,
        "namespace": namespace,
        "access": {
            "read": readers + [m for m in monitors if m not in readers],
            "push": serving_access.normalized(access.push if access else None, namespace),
        },
        "featureViews": [
            {
                "name": r.view.metadata.name,
                "namespace": r.view.metadata.namespace or "default",
                "onlineTable": r.online_table,
                "entities": [e.to_yaml_dict() for e in r.view.spec.entities],
                "ttl": r.view.spec.ttl,
                # A push-source view: what the server's Push RPC validates and writes.
                **(
                    {"push": {"spec": r.view.spec.to_yaml_dict(), "offlineUri": r.offline_uri}}
                    if r.view.spec.source.push is not None
                    else {}
                ),
                "features": [
                    {
                        "name": f"{r.prefix}{feature}",
                        "source": feature,
                        "type": r.view.spec.feature_types()[feature],
                    }
                    for feature in r.features
                ],
                # All the table holds: a read of every one fetches whole items.
                "storedFeatures": list(r.view.spec.feature_types()),
            }
            for r in views
        ],
        "requestData": [f.to_yaml_dict() for f in service.spec.request_data or ()],
        "transformations": [t.to_yaml_dict() for t in service.spec.transformations or ()],
    }


def resolve_references(
    service: v1alpha1.FeatureService,
    views: Mapping[tuple[str, str], v1alpha1.FeatureView],
    online_table: Callable[[str, str], str],
    offline_uri: Callable[[str, str], str] | None = None,
) -> list[ResolvedView]:
    """The views ``service`` references, found in ``views`` by (namespace, name), with
    their tables named by ``online_table(namespace, view)`` and, for views kept
    offline, ``offline_uri(namespace, view)``.

    Raises :class:`~featurekube.errors.DefinitionsError` naming the first reference
    that cannot be served: a view that does not exist, is not shared with the
    service's namespace, or lacks a feature.
    """
    namespace = service.metadata.namespace or "default"
    label = f"FeatureService {namespace}/{service.metadata.name}"
    found = []
    for index, ref in enumerate(service.spec.features):
        where = f"{label}: spec.features[{index}]"
        view_ns = ref.namespace or namespace
        view = views.get((view_ns, ref.feature_view))
        if view is None:
            raise errors.DefinitionsError(
                f"{where}: FeatureView {view_ns}/{ref.feature_view} is not among the "
                "definitions: add its YAML to the directory, or fix the reference"
            )
        shared = view.spec.shared_with or []
        if view_ns != namespace and namespace not in shared and "*" not in shared:
            raise errors.DefinitionsError(
                f"{where}: FeatureView {view_ns}/{ref.feature_view} is not shared with "
                f"namespace {namespace}: add {namespace} to its spec.sharedWith"
            )
        names = list(ref.features or view.spec.feature_names)
        unknown = [name for name in names if name not in view.spec.feature_types()]
        if unknown:
            raise errors.DefinitionsError(
                f"{where}: FeatureView {view_ns}/{ref.feature_view} has no feature "
                f"{', '.join(unknown)}: it has {', '.join(view.spec.feature_names)}"
            )
        kept_offline = view.spec.materialization.offline and offline_uri is not None
        found.append(
            ResolvedView(
                view=view,
                online_table=online_table(view_ns, view.metadata.name),
                features=names,
                prefix=ref.prefix or "",
                offline_uri=offline_uri(view_ns, view.metadata.name)
                if kept_offline and offline_uri is not None
                else None,
            )
        )
    return found
