"""CustomResourceDefinitions rendered from the spec models; pure, no I/O.

``make crds`` writes what :func:`render_crds` returns into ``crds/``; a test fails when
the files differ. The pydantic JSON schema is made structural the way the API server
requires: ``$ref`` inlined, ``Optional`` unwrapped (an unset field is simply absent),
titles and ``additionalProperties: false`` dropped (unknown fields are refused by
kubectl's strict field validation instead), and each model's cross-field
:class:`~featurekube.spec.v1alpha1._base.Rule` added as ``x-kubernetes-validations``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pydantic

from featurekube.spec import v1alpha1
from featurekube.spec.v1alpha1._base import SpecModel

__all__ = ["KINDS", "CrdKind", "render_crd", "render_crds"]

GENERATOR = f"featurekube.spec.crds (pydantic {pydantic.VERSION})"


@dataclass(frozen=True)
class CrdKind:
    """What the CRD of one kind says besides its schema."""

    resource: type[SpecModel]
    plural: str
    singular: str
    short_names: tuple[str, ...]
    printer_columns: tuple[dict[str, str], ...]


def _ready(description: str) -> dict[str, str]:
    return {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": description,
    }


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_OWNER = {
    "name": "Owner",
    "type": "string",
    "jsonPath": ".spec.owner",
    "description": "Who to ask about it",
}

KINDS = (
    CrdKind(
        resource=v1alpha1.FeatureView,
        plural="featureviews",
        singular="featureview",
        short_names=("fv",),
        printer_columns=(
            _ready("Materialized at least once and serving"),
            _OWNER,
            {
                "name": "Serving",
                "type": "integer",
                "jsonPath": ".status.version",
                "description": "The data version serving now",
            },
            {
                "name": "Entities",
                "type": "string",
                "jsonPath": ".spec.entities[*].name",
                "description": "Join keys",
            },
            {"name": "Online", "type": "boolean", "jsonPath": ".spec.materialization.online"},
            {"name": "Offline", "type": "boolean", "jsonPath": ".spec.materialization.offline"},
            {
                "name": "Last materialized",
                "type": "date",
                "jsonPath": ".status.lastMaterializedWindow.end",
                "description": "End of the latest window written to the stores",
            },
            _AGE,
        ),
    ),
    CrdKind(
        resource=v1alpha1.FeatureService,
        plural="featureservices",
        singular="featureservice",
        short_names=("fsvc",),
        printer_columns=(
            _ready("Every view ready and the feature server available"),
            _OWNER,
            {
                "name": "Features",
                "type": "integer",
                "jsonPath": ".status.featureCount",
                "description": "Features served",
            },
            {
                "name": "Endpoint",
                "type": "string",
                "jsonPath": ".status.endpoint",
                "description": "gRPC endpoint of the feature server",
            },
            _AGE,
        ),
    ),
)

_DROP = ("title", "additionalProperties")


def _models(root: type[SpecModel]) -> dict[str, type[SpecModel]]:
    """Every SpecModel reachable from ``root``'s fields, by class name ($defs key)."""
    found: dict[str, type[SpecModel]] = {}
    pending: list[type[SpecModel]] = [root]
    while pending:
        model = pending.pop()
        if model.__name__ in found:
            continue
        found[model.__name__] = model
        for field in model.model_fields.values():
            pending.extend(_spec_models_in(field.annotation))
    return found


def _spec_models_in(annotation: Any) -> list[type[SpecModel]]:
    if isinstance(annotation, type) and issubclass(annotation, SpecModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _spec_models_in(arg)]


def _structural(node: Any, defs: dict[str, Any], models: dict[str, type[SpecModel]]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs, models) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        name = node.pop("$ref").rsplit("/", 1)[-1]
        target = _structural(defs[name], defs, models)
        rules = [rule.to_cel() for rule in models[name].rules] if name in models else []
        if rules:
            target["x-kubernetes-validations"] = rules
        # The field's own description and default win over the class's.
        node = {**target, **{k: v for k, v in node.items()}}
    if "anyOf" in node:
        variants = [v for v in node.pop("anyOf") if v != {"type": "null"}]
        if len(variants) != 1:
            raise ValueError(f"a union of {variants} has no structural schema")
        inner = _structural(variants[0], defs, models)
        node = {**inner, **node}
    if isinstance(node.get("description"), str):
        # Docstrings wrap lines; kubectl explain re-wraps them itself.
        node["description"] = " ".join(node["description"].split())
    if node.get("default", "unset") is None:
        del node["default"]
    elif "default" in node:
        node["default"] = _without_nulls(node["default"])
    if node.get("type") == "object" and "properties" in node:
        node.pop("additionalProperties", None)
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        # JSON Schema's numeric exclusive bound is OpenAPI v3's limit plus a flag.
        if isinstance(node.get(bound), int | float) and not isinstance(node[bound], bool):
            node[limit], node[bound] = node[bound], True
    for key in _DROP:
        if key == "additionalProperties" and isinstance(node.get(key), dict):
            continue
        node.pop(key, None)
    return {
        key: (
            {name: _structural(value, defs, models) for name, value in value.items()}
            if key == "properties"
            else _structural(value, defs, models)
        )
        for key, value in node.items()
    }


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _schema_of(model: type[SpecModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    models = _models(model)
    schema: dict[str, Any] = _structural(raw, defs, models)
    if model.rules:
        schema["x-kubernetes-validations"] = [rule.to_cel() for rule in model.rules]
    return schema


def render_crd(kind: CrdKind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    resource = kind.resource
    fields = resource.model_fields
    spec_model = fields["spec"].annotation
    status_model = _spec_models_in(fields["status"].annotation)[0]
    assert isinstance(spec_model, type) and issubclass(spec_model, SpecModel)
    name = resource.__name__
    root: dict[str, Any] = {
        "type": "object",
        "description": (resource.__doc__ or "").strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "featurekube.dev/v1alpha1"},
            "kind": {"type": "string", "description": name},
            "metadata": {"type": "object"},
            "spec": _schema_of(spec_model),
            "status": _schema_of(status_model),
        },
        "x-kubernetes-validations": [rule.to_cel() for rule in resource.rules],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{v1alpha1.GROUP}",
            "annotations": {"featurekube.dev/generated-by": GENERATOR},
        },
        "spec": {
            "group": v1alpha1.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": name,
                "listKind": f"{name}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": ["features"],
            },
            "versions": [
                {
                    "name": v1alpha1.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(c) for c in kind.printer_columns],
                    "schema": {"openAPIV3Schema": copy.deepcopy(root)},
                }
            ],
        },
    }


def render_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, for every kind."""
    return {f"{v1alpha1.GROUP}_{k.plural}.yaml": render_crd(k) for k in KINDS}
