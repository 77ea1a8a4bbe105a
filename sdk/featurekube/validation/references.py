"""Checks that need several objects at once; pure.

- the same kind, namespace and name defined twice;
- a FeatureService's references: unknown feature views and features, views of
  another namespace not shared with the service's, two features served under one
  name, request-time expressions using names the service does not have;
- entity keys given different types by different views.

A view is looked up in the service's namespace unless the reference names another
(a namespace left unset in metadata is "default"). A view of another namespace that is
not among the documents cannot be checked, and is not reported.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from featurekube.spec import loader, v1alpha1
from featurekube.validation import problems, schema, sql

__all__ = [
    "ObjectKey",
    "check_definitions",
    "check_entities",
    "check_services",
    "key_of",
]

ObjectKey = tuple[str, str, str]
"""(kind, namespace, name) of an object."""


def key_of(document: loader.Document) -> ObjectKey | None:
    """The kind, namespace and name a document of ours defines, read from its body so
    that it works for objects that fail the schema too; None if it names none."""
    if not document.is_ours or document.name is None:
        return None
    metadata = document.body.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return (
        document.kind or "",
        namespace if isinstance(namespace, str) else "default",
        document.name,
    )


def check_definitions(documents: Iterable[loader.Document]) -> list[problems.Problem]:
    """A problem for each object defined again after its first definition."""
    first: dict[ObjectKey, loader.Document] = {}
    found = []
    for document in documents:
        key = key_of(document)
        if key is None:
            continue
        earlier = first.setdefault(key, document)
        if earlier is not document:
            kind, namespace, name = key
            found.append(
                problems.Problem.at(
                    document,
                    ("metadata", "name"),
                    f"{kind} {namespace}/{name} is already defined at "
                    f"{earlier.path}:{earlier.line_of(('metadata', 'name'))}; define each "
                    "object once",
                )
            )
    return found


def check_entities(objects: Iterable[schema.Parsed]) -> list[problems.Problem]:
    """A problem on each view that types an entity's key differently from the other
    views of the entity: the type most views give it prevails (on a tie, the type of
    the first view in file order), and each problem names a view that has it."""
    keys: dict[str, list[tuple[schema.Parsed, int, str]]] = {}
    for parsed in objects:
        if isinstance(parsed.resource, v1alpha1.FeatureView):
            for index, entity in enumerate(parsed.resource.spec.entities):
                keys.setdefault(entity.name, []).append((parsed, index, entity.type))
    found = []
    for name, uses in keys.items():
        votes = collections.Counter(key_type for _, _, key_type in uses)
        prevailing = max(votes, key=lambda t: (votes[t], -_first_index(uses, t)))
        example, example_index, _ = uses[_first_index(uses, prevailing)]
        where = example.document.line_of(("spec", "entities", example_index, "type"))
        for parsed, index, key_type in uses:
            if key_type == prevailing:
                continue
            found.append(
                problems.Problem.at(
                    parsed.document,
                    ("spec", "entities", index, "type"),
                    f"entity {name!r} is {key_type} here but {prevailing} in {example} "
                    f"({example.document.path}:{where}): every view of an entity must give its "
                    "key the same type",
                )
            )
    return found


def _first_index(uses: Sequence[tuple[schema.Parsed, int, str]], key_type: str) -> int:
    return next(i for i, (_, _, t) in enumerate(uses) if t == key_type)


@dataclass(frozen=True)
class _View:
    parsed: schema.Parsed
    view: v1alpha1.FeatureView


@dataclass(frozen=True)
class _Served:
    """A feature a service serves, and where it comes from."""

    name: str
    path: loader.FieldPath
    origin: str
    from_view: bool


def check_services(
    objects: Sequence[schema.Parsed],
    declared: Collection[ObjectKey] = (),
    *,
    complete: bool = True,
) -> list[problems.Problem]:
    """The problems of every FeatureService's references to views, feature names and
    request-time expressions, looked up among ``objects``.

    ``declared`` holds every object defined, including those that failed the schema,
    whose problems are reported already; references to them are not checked further.
    ``complete`` is False when some files could not be read: then a view not found
    may be in one of them, and is not reported as unknown.
    """
    views: dict[tuple[str, str], _View] = {}
    for parsed in objects:
        if isinstance(parsed.resource, v1alpha1.FeatureView):
            views.setdefault((parsed.namespace, parsed.name), _View(parsed, parsed.resource))
    found = []
    for parsed in objects:
        if isinstance(parsed.resource, v1alpha1.FeatureService):
            found += _check_service(parsed, parsed.resource, views, set(declared), complete)
    return found


def _check_service(
    parsed: schema.Parsed,
    service: v1alpha1.FeatureService,
    views: Mapping[tuple[str, str], _View],
    declared: Collection[ObjectKey],
    complete: bool,
) -> list[problems.Problem]:
    document = parsed.document
    found = []
    served: list[_Served] = []
    all_known = True  # whether every feature the service serves is known
    for index, reference in enumerate(service.spec.features):
        at: loader.FieldPath = ("spec", "features", index)
        namespace = reference.namespace or parsed.namespace
        view = views.get((namespace, reference.feature_view))
        if view is None:
            unchecked = (
                ("FeatureView", namespace, reference.feature_view) in declared
                or namespace != parsed.namespace
                or not complete
            )
            if not unchecked:
                nearby = [name for ns, name in views if ns == namespace]
                hint = problems.did_you_mean(reference.feature_view, nearby)
                found.append(
                    problems.Problem.at(
                        document,
                        (*at, "featureView"),
                        f"no FeatureView {reference.feature_view!r} in namespace "
                        f"{namespace!r}{hint}: define it in this directory, or fix the name",
                    )
                )
            all_known = all_known and reference.features is not None
            names = list(reference.features or ())
        else:
            found += _check_reference(parsed, view, reference, at)
            names = list(reference.features or view.view.spec.feature_names)
        origin = f"FeatureView {namespace}/{reference.feature_view}"
        for position, name in enumerate(names):
            path = (*at, "features", position) if reference.features else at
            served.append(_Served(f"{reference.prefix or ''}{name}", path, origin, True))
    fetched = {s.name for s in served}
    for index, field in enumerate(service.spec.request_data or ()):
        served.append(
            _Served(field.name, ("spec", "requestData", index, "name"), "the request data", False)
        )
    transformations = service.spec.transformations or ()
    for index, transformation in enumerate(transformations):
        served.append(
            _Served(
                transformation.name,
                ("spec", "transformations", index, "name"),
                "a request-time transformation",
                False,
            )
        )
    found += _check_duplicates(document, served)
    usable = fetched | {f.name for f in service.spec.request_data or ()}
    for index, transformation in enumerate(transformations):
        others = {t.name for t in transformations if t is not transformation}
        for message in sql.check_expression(
            transformation.expression, usable if all_known else None, others
        ):
            found.append(
                problems.Problem.at(
                    document, ("spec", "transformations", index, "expression"), message
                )
            )
    return found


def _check_reference(
    parsed: schema.Parsed,
    target: _View,
    reference: v1alpha1.FeatureViewReference,
    at: loader.FieldPath,
) -> list[problems.Problem]:
    found = []
    view, spec = target.parsed, target.view.spec
    if view.namespace != parsed.namespace:
        shared = spec.shared_with or []
        if parsed.namespace not in shared and "*" not in shared:
            found.append(
                problems.Problem.at(
                    parsed.document,
                    (*at, "namespace"),
                    f"{view} is not shared with namespace {parsed.namespace!r}: add "
                    f"{parsed.namespace!r} (or '*') to its spec.sharedWith",
                )
            )
    available = spec.feature_names
    # A pinned version has the features its snapshot froze, which only the cluster
    # knows: the operator checks them (VersionNotFound, UnknownFeature).
    pinned = reference.features or () if reference.version is None else ()
    for position, name in enumerate(pinned):
        if name not in available:
            hint = problems.did_you_mean(name, available)
            found.append(
                problems.Problem.at(
                    parsed.document,
                    (*at, "features", position),
                    f"{view} has no feature {name!r}{hint} (its features: {_some(available)})",
                )
            )
    return found


def _check_duplicates(
    document: loader.Document, served: Iterable[_Served]
) -> list[problems.Problem]:
    first: dict[str, _Served] = {}
    found = []
    for feature in served:
        earlier = first.setdefault(feature.name, feature)
        if earlier is feature:
            continue
        if earlier.from_view and feature.from_view:
            fix = "set a different prefix on one of the two references"
        else:
            fix = "rename one of them, or set a prefix on the view's reference"
        found.append(
            problems.Problem.at(
                document,
                feature.path,
                f"the service has two features named {feature.name!r}: one from "
                f"{earlier.origin} at {loader.format_path(earlier.path)} and one from "
                f"{feature.origin} here; {fix}",
            )
        )
    return found


def _some(names: Sequence[str], limit: int = 10) -> str:
    """``a, b, c``; past ``limit`` names, the first of them and how many more."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"
