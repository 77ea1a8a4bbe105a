"""Which FeatureServices may read a FeatureView, and what a service serves once a share
is revoked; pure.

A view is read by services of its own namespace, and by those of the namespaces in its
``spec.sharedWith`` (``*``: every namespace). Sharing grants reading only: a feature
server takes Push only into views of its own namespace (the server checks it against
its plan). When a namespace is removed from ``sharedWith``, the services there stop
reading the view at their next reconcile, which the view's change starts at once
(:func:`references`, a kopf index, finds them): their plan no longer lists the view,
nor the request-time transformations that read its features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlglot
import sqlglot.errors
from sqlglot import exp

from featurekube.serving_plan import ResolvedView
from featurekube.spec import v1alpha1

__all__ = ["NOT_SHARED", "ViewKey", "may_read", "references", "served_transformations"]

NOT_SHARED = "FeatureViewNotShared"
"""The reason of a service's Ready=False condition while it references a view not
shared with its namespace."""

ViewKey = tuple[str, str]
"""A view's (namespace, name)."""


def may_read(view: v1alpha1.FeatureView, namespace: str) -> bool:
    """Whether FeatureServices in ``namespace`` may read ``view``."""
    shared = view.spec.shared_with or []
    return namespace == (view.metadata.namespace or "default") or bool(
        {namespace, "*"} & set(shared)
    )


def references(namespace: str, name: str, spec: Mapping[str, Any]) -> dict[ViewKey, ViewKey]:
    """The views a FeatureService (``namespace``/``name``, its raw ``spec``) references,
    each mapped to the service: one object's share of the index of consumers."""
    found: dict[ViewKey, ViewKey] = {}
    for ref in spec.get("features") or ():
        if isinstance(ref, Mapping) and isinstance(ref.get("featureView"), str):
            found[(str(ref.get("namespace") or namespace), ref["featureView"])] = (namespace, name)
    return found


def served_transformations(
    service: v1alpha1.FeatureService, views: Sequence[ResolvedView]
) -> tuple[v1alpha1.FeatureService, list[str]]:
    """``service`` with only the request-time transformations computable from ``views``
    and its request data, and the names of those left out: those that read a feature
    of a view the service may no longer read."""
    transformations = service.spec.transformations or []
    available = {f.name.lower() for f in service.spec.request_data or ()}
    available |= {f"{v.prefix}{name}".lower() for v in views for name in v.features}
    kept, dropped = [], []
    for transformation in transformations:
        if _inputs(transformation.expression) <= available:
            kept.append(transformation)
        else:
            dropped.append(transformation.name)
    if not dropped:
        return service, []
    spec = service.spec.model_copy(update={"transformations": kept or None})
    return service.model_copy(update={"spec": spec}), dropped


def _inputs(expression: str) -> set[str]:
    """The names an expression reads (lower case); an expression that does not parse
    reads everything, so it is left out."""
    try:
        tree = sqlglot.parse_one(expression, read="spark")
    except (sqlglot.errors.ParseError, RecursionError):
        return {"\0unparsable"}
    return {column.name.lower() for column in tree.find_all(exp.Column)}
