"""Whether a view keeps to its namespace's allowed S3 prefixes; pure, no I/O.

The prefixes are the setting ``allowed_prefixes`` (see :mod:`featurekube.s3_prefixes`),
plus, always, the namespace's own directory of the offline store
(``<offline_uri>/<namespace>/``), where its views' Delta tables and tiles live.
"""

from __future__ import annotations

from featurekube import s3_prefixes
from featurekube.offline import layout
from featurekube.spec import v1alpha1
from featurekube_operator.settings import OperatorSettings

__all__ = ["namespace_prefixes", "view_problems"]


def namespace_prefixes(settings: OperatorSettings, namespace: str) -> tuple[str, ...] | None:
    """The prefixes ``namespace``'s views may use; None when nothing is confined."""
    configured = s3_prefixes.prefixes_for(settings.allowed, namespace)
    if configured is None:
        return None
    own = f"{settings.offline_uri.rstrip('/')}/{namespace}/"
    return (*configured, own)


def view_problems(view: v1alpha1.FeatureView, settings: OperatorSettings) -> list[str]:
    """One line per path of ``view`` (its source, the directory of its offline tables)
    outside its namespace's prefixes, each naming the path and the prefixes."""
    namespace = view.metadata.namespace or "default"
    prefixes = namespace_prefixes(settings, namespace)
    batch = view.spec.source.batch
    paths = {
        "spec.source.batch.path": batch.path if batch is not None else None,
        "offline location": (
            layout.view_directory(settings.offline_uri, namespace, view.metadata.name) + "/"
            if view.spec.materialization.offline
            else None
        ),
    }
    return s3_prefixes.check_paths(paths, prefixes, f"namespace {namespace}")
