"""How the write path names a view in its messages; pure, and light to import: the
materialization job names its view before it loads Arrow (its pending record is
written first, :mod:`featurekube.materialize.publish`)."""

from __future__ import annotations

from featurekube.spec import v1alpha1

__all__ = ["view_label"]


def view_label(view: v1alpha1.FeatureView | v1alpha1.FeatureViewSpec, name: str | None) -> str:
    """How messages name the view: ``FeatureView ns/name``, or what the caller said.

    >>> view_label(None, "the driver view")  # type: ignore[arg-type]
    'the driver view'
    """
    if name:
        return name
    if isinstance(view, v1alpha1.FeatureView):
        namespace = view.metadata.namespace or "default"
        return f"FeatureView {namespace}/{view.metadata.name}"
    return "the FeatureView"
