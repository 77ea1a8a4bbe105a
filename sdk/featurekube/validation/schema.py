"""One document at a time: is it ours, and does it pass the CRD schema; pure.

The schema is checked through the spec models, which carry everything the CRDs check
(types, required fields, enums, patterns, lengths, and the cross-field rules).
Pydantic's messages are written for programmers; this module rewrites each error as a
:class:`~featurekube.validation.problems.Problem` a data scientist can act on, with the
YAML path of the field (camelCase, list indexes) and its line.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from featurekube import serving_access
from featurekube.spec import loader, v1alpha1
from featurekube.spec.v1alpha1 import (
    _base,
    common,
    durations,
    featureservice,
    featureview,
    stream,
)
from featurekube.validation import problems

__all__ = [
    "Parsed",
    "check_document",
    "check_kind",
    "check_metadata",
    "describe_pattern",
    "problems_from_error",
]

Model = type[pydantic.BaseModel]


@dataclass(frozen=True)
class Parsed:
    """A document that passed the schema, with its model."""

    document: loader.Document
    resource: loader.Resource

    @property
    def namespace(self) -> str:
        """The object's namespace; "default" when its metadata names none."""
        return self.resource.metadata.namespace or "default"

    @property
    def name(self) -> str:
        """The object's metadata.name."""
        return self.resource.metadata.name

    def __str__(self) -> str:
        """``FeatureView rides/driver-trip-stats``."""
        return f"{self.resource.kind} {self.namespace}/{self.name}"


def check_document(document: loader.Document) -> tuple[Parsed | None, list[problems.Problem]]:
    """The document as a model if it is one of ours and passes the schema, and the
    problems found: not ours, unknown metadata fields, every schema error."""
    found = check_kind(document)
    if found:
        return None, found
    found = check_metadata(document)
    try:
        resource = loader.parse_resource(document)
    except pydantic.ValidationError as exc:
        model = loader.KINDS[document.kind or ""]
        return None, found + problems_from_error(document, model, exc)
    return Parsed(document, resource), found


def check_kind(document: loader.Document) -> list[problems.Problem]:
    """A problem if the document is not a featurekube.dev/v1alpha1 FeatureView or
    FeatureService (with a hint when it nearly is); none if it is."""
    if document.is_ours:
        return []
    body = document.body
    ours = f"{v1alpha1.API_VERSION} {' or '.join(loader.KINDS)}"
    if not isinstance(body, dict):
        return [
            problems.Problem.at(
                document,
                None,
                f"not a Kubernetes object: found {problems.describe_value(body)} where a "
                f"mapping with apiVersion, kind, metadata and spec belongs",
            )
        ]
    api_version, kind = document.api_version, document.kind
    if kind is None:
        return [problems.Problem.at(document, ("kind",), f"kind is required: {ours}")]
    if kind in loader.KINDS:
        return [
            problems.Problem.at(
                document,
                ("apiVersion",),
                f"a {kind} has apiVersion {v1alpha1.API_VERSION}; found "
                f"{problems.describe_value(body.get('apiVersion'))}",
            )
        ]
    if api_version is not None and api_version.partition("/")[0] == v1alpha1.GROUP:
        hint = problems.did_you_mean(kind, list(loader.KINDS))
        return [
            problems.Problem.at(
                document,
                ("kind",),
                f"unknown kind {kind!r}: {v1alpha1.GROUP} has {' and '.join(loader.KINDS)}{hint}",
            )
        ]
    return [
        problems.Problem.at(
            document,
            None,
            f"not a featurekube object (apiVersion {api_version}, kind {kind}): featurekube "
            f"validate reads {ours} only; keep other objects out of this directory",
        )
    ]


# The fields of Kubernetes' ObjectMeta that a manifest may carry. The spec models
# allow any metadata (the API server fills in most of it), so unknown keys, which
# `kubectl apply` refuses, are caught here.
_OBJECT_META_FIELDS = (
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "selfLink",
)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def check_metadata(document: loader.Document) -> list[problems.Problem]:
    """Unknown fields of metadata, and a namespace that is not a valid name."""
    body = document.body
    metadata = body.get("metadata") if isinstance(body, dict) else None
    if not isinstance(metadata, dict):
        return []
    found = []
    for key in metadata:
        if key not in _OBJECT_META_FIELDS:
            found.append(
                problems.Problem.at(
                    document,
                    ("metadata", str(key)),
                    f"unknown field {key!r}{problems.did_you_mean(str(key), _OBJECT_META_FIELDS)}",
                )
            )
    namespace = metadata.get("namespace")
    if isinstance(namespace, str) and not (
        len(namespace) <= 63 and _DNS_LABEL.fullmatch(namespace)
    ):
        found.append(
            problems.Problem.at(
                document, ("metadata", "namespace"), _pattern_message(namespace, _DNS_HELP)
            )
        )
    return found


def problems_from_error(
    document: loader.Document, model: Model, error: pydantic.ValidationError
) -> list[problems.Problem]:
    """Each error of ``error`` (from validating ``document`` as ``model``) as a problem
    with its YAML path, line and a message saying what to change."""
    found: list[problems.Problem] = []
    # Errors of the members of a union (int | str) are merged into one per field.
    union_expected: dict[loader.FieldPath, tuple[list[str], object]] = {}
    for detail in error.errors(include_url=False):
        where = _locate(model, detail["loc"])
        if where.in_union and detail["type"] in _EXPECTED:
            expected, _ = union_expected.setdefault(where.path, ([], detail["input"]))
            expected.append(_EXPECTED[detail["type"]])
            continue
        if detail["type"] in ("featurekube_rule", "featurekube_duplicate"):
            path = _rule_path(document, where.path, detail)
        else:
            path = where.path
        found.append(problems.Problem.at(document, path, _message(detail, where)))
    for path, (expected, value) in union_expected.items():
        found.append(
            problems.Problem.at(
                document,
                path,
                f"expected {' or '.join(expected)}, found {problems.describe_value(value)}",
            )
        )
    return found


@dataclass(frozen=True)
class _PatternHelp:
    noun: str
    """What a matching value is, with its article: 'a duration'."""
    advice: str
    """How to write one."""
    fix: typing.Callable[[str], str] | None = None
    """A likely intended value, from a mismatching one."""


def _fixed_name(separator: str) -> typing.Callable[[str], str]:
    def fix(value: str) -> str:
        return re.sub(r"[^a-z0-9]+", separator, value.lower()).strip(separator)

    return fix


def _field_pattern(model: Model, name: str) -> str:
    for constraint in model.model_fields[name].metadata:
        pattern = getattr(constraint, "pattern", None)
        if isinstance(pattern, str):
            return pattern
    raise LookupError(f"{model.__name__}.{name} has no pattern")


def _type_pattern(annotated: Any) -> str:
    schema = pydantic.TypeAdapter(annotated).json_schema()
    return str(schema["pattern"])


_DNS_HELP = _PatternHelp(
    "a valid Kubernetes name",
    "use lower-case letters, digits and '-', starting and ending with a letter or digit",
    _fixed_name("-"),
)
_PATTERNS: Mapping[str, _PatternHelp] = {
    durations.DURATION_PATTERN: _PatternHelp(
        "a duration",
        "write a positive whole number and one unit of s, m, h, d or w, e.g. '30m', '1d', '7d'",
    ),
    _base.CRON_PATTERN: _PatternHelp(
        "a cron schedule",
        "write five fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or "
        "JAN-DEC, day of week 0-7 or SUN-SAT; in UTC, e.g. '*/10 * * * *') or one of "
        "@hourly, @daily, @weekly, @monthly, @yearly",
    ),
    serving_access.SUBJECT_PATTERN: _PatternHelp(
        "a ServiceAccount",
        "write NAMESPACE/NAME, NAMESPACE/* (every ServiceAccount of the namespace) or "
        "system:serviceaccount:NAMESPACE:NAME",
    ),
    featureservice.QUANTITY_PATTERN: _PatternHelp(
        "a resource quantity",
        "write a non-negative number with an optional suffix, e.g. 500m or 2 (CPU), "
        "512Mi or 1Gi (memory)",
    ),
    _type_pattern(_base.FeatureName): _PatternHelp(
        "a valid name",
        "use lower-case letters, digits and '_', not starting with a digit",
        _fixed_name("_"),
    ),
    _type_pattern(common.DnsLabel): _DNS_HELP,
    _type_pattern(featureview.NamespaceOrAll): _PatternHelp(
        "a namespace",
        "write a namespace name (lower-case letters, digits and '-') or '*' for every namespace",
        _fixed_name("-"),
    ),
    _type_pattern(stream.SourceColumn): _PatternHelp(
        "a field name", "use letters, digits and '_', not starting with a digit"
    ),
    _type_pattern(stream.BootstrapServers): _PatternHelp(
        "Kafka brokers", "write host:port, or several separated by commas: b1:9092,b2:9092"
    ),
    _type_pattern(stream.Topic): _PatternHelp(
        "a Kafka topic", "use letters, digits, '.', '_' and '-'"
    ),
    _field_pattern(featureview.BatchSource, "path"): _PatternHelp(
        "an S3 path",
        "write s3://bucket/prefix/, the bucket's name being 3 to 63 lower-case letters, "
        "digits, '.' and '-'",
    ),
}


def describe_pattern(pattern: str) -> tuple[str, str] | None:
    """What a value matching ``pattern`` is and how to write one, for the patterns of
    the spec models; None for a pattern this module does not know."""
    help_ = _PATTERNS.get(pattern)
    return (help_.noun, help_.advice) if help_ else None


def _pattern_message(value: object, help_: _PatternHelp) -> str:
    message = f"{value!r} is not {help_.noun}: {help_.advice}"
    if help_.fix is not None and isinstance(value, str):
        fixed = help_.fix(value)
        if fixed and fixed != value:
            message += f", e.g. {fixed!r}"
    return message


# What each of pydantic's type errors expected, in words.
_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "set_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "datetime_type": "a UTC timestamp such as 2024-01-01T00:00:00Z",
    "datetime_parsing": "a UTC timestamp such as 2024-01-01T00:00:00Z",
    "datetime_from_date_parsing": "a UTC timestamp such as 2024-01-01T00:00:00Z",
}


@dataclass(frozen=True)
class _Location:
    """Where an error's ``loc`` points, in YAML terms."""

    path: loader.FieldPath
    """The YAML path (pydantic's union-member tags left out)."""
    container: Model | None
    """The model the last part of the path is a field of, if any."""
    field: FieldInfo | None
    """That field."""
    constraints: tuple[object, ...]
    """Constraints (pattern, lengths) on the value at the path."""
    in_union: bool
    """Whether the error is about one member of a union type."""


def _locate(model: Model, loc: tuple[int | str, ...]) -> _Location:
    """Follows ``loc`` through ``model``'s field types."""
    current: Any = model
    path: list[str | int] = []
    container: Model | None = None
    field: FieldInfo | None = None
    constraints: list[object] = []
    in_union = False
    for part in loc:
        current, constraints = _unwrap(current, constraints)
        container, field = None, None
        members = _union_members(current)
        if members and isinstance(part, str):
            member = next((m for m in members if _union_tag(m) == part), None)
            if member is not None:
                current, in_union = member, True
                current, constraints = _unwrap(current, constraints)
                continue
        path.append(part)
        origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
            container, field = current, _model_field(current, str(part))
            current = field.annotation if field else None
            constraints = list(field.metadata) if field else []
        elif origin in (list, tuple, set, frozenset) and typing.get_args(current):
            current, constraints = typing.get_args(current)[0], []
        elif origin is dict and len(typing.get_args(current)) == 2:
            current, constraints = typing.get_args(current)[1], []
        else:
            current, constraints = None, []
    _, constraints = _unwrap(current, constraints)
    return _Location(tuple(path), container, field, tuple(constraints), in_union)


def _unwrap(annotation: Any, constraints: list[object]) -> tuple[Any, list[object]]:
    """Strips ``Annotated`` (collecting its constraints) and ``| None``."""
    constraints = list(constraints)
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation, *extras = typing.get_args(annotation)
            for extra in extras:
                constraints.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation, constraints


def _union_members(annotation: Any) -> Sequence[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return ()


def _union_tag(member: Any) -> str:
    """The loc part pydantic adds for an error in one member of a union."""
    return member.__name__ if isinstance(member, type) else str(member)


def _model_field(model: Model, key: str) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if key in (info.alias, name):
            return info
    return None


def _yaml_fields(model: Model) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _pattern_of(where: _Location) -> _PatternHelp | None:
    for constraint in where.constraints:
        pattern = getattr(constraint, "pattern", None)
        if isinstance(pattern, str) and pattern in _PATTERNS:
            return _PATTERNS[pattern]
    return None


def _first_sentence(text: str) -> str:
    sentence = re.split(r"(?<=[.:;])\s", " ".join(text.split()), maxsplit=1)[0]
    sentence = sentence.rstrip(".:;")
    # Lower-case a capital that starts a sentence, not an acronym (S3, TTL).
    return sentence if sentence[:2].isupper() else sentence[:1].lower() + sentence[1:]


def _message(detail: ErrorDetails, where: _Location) -> str:
    kind = detail["type"]
    ctx: dict[str, Any] = dict(detail.get("ctx") or {})
    value = detail["input"]
    found = problems.describe_value(value)
    if kind == "missing":
        description = where.field.description if where.field else None
        if description:
            return f"is required ({_first_sentence(description)})"
        return "is required"
    if kind == "extra_forbidden":
        key = str(where.path[-1]) if where.path else ""
        fields = _yaml_fields(where.container) if where.container else []
        hint = problems.did_you_mean(key, fields)
        if hint or not fields:
            return f"unknown field {key!r}{hint}"
        return f"unknown field {key!r}: the fields here are {', '.join(fields)}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = problems.did_you_mean(value, choices) if isinstance(value, str) else ""
        return f"must be one of {', '.join(choices)}; found {found}{hint}"
    if kind == "string_pattern_mismatch":
        help_ = _PATTERNS.get(str(ctx.get("pattern")))
        if help_ is not None:
            return _pattern_message(value, help_)
        return f"{value!r} does not match the pattern {ctx.get('pattern')}"
    if kind in ("featurekube_rule", "featurekube_duplicate"):
        return detail["msg"]
    if kind == "string_too_long":
        return f"is too long: at most {ctx['max_length']} characters, found {len(str(value))}"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"is too short: at least {ctx['min_length']} characters, found {len(str(value))}"
    if kind == "too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty: give at least one item, or leave the field out"
        return f"needs at least {ctx['min_length']} items; found {ctx.get('actual_length')}"
    if kind == "too_long":
        return f"has {ctx.get('actual_length')} items; at most {ctx['max_length']} are allowed"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "less_than_equal": ("at most", "le"),
        "greater_than": ("more than", "gt"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx[key]}; found {found}"
    if kind in _EXPECTED:
        help_ = _pattern_of(where) if kind == "string_type" else None
        if help_ is not None:
            return f"expected {help_.noun}, found {found}: {help_.advice}"
        return f"expected {_EXPECTED[kind]}, found {found}"
    return detail["msg"].removeprefix("Value error, ")


_PATH_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def _rule_path(
    document: loader.Document, at: loader.FieldPath, detail: ErrorDetails
) -> loader.FieldPath:
    """The YAML path of a Rule's or a duplicate's error: the object holding the rule,
    then the rule's own field path (a path under .metadata is from the top)."""
    ctx = detail.get("ctx") or {}
    relative = str(ctx.get("field_path") or "")
    parts: list[str | int] = [
        int(index) if index else name for name, index in _PATH_PART.findall(relative)
    ]
    path = tuple(parts) if relative.startswith(".metadata") else (*at, *parts)
    if detail["type"] == "featurekube_duplicate":
        path = _second_duplicate(document, path, ctx) or path
    return path


def _second_duplicate(
    document: loader.Document, path: loader.FieldPath, ctx: Mapping[str, Any]
) -> loader.FieldPath | None:
    """The path of the list item that repeats another's key, to point at its line."""
    items: Any = document.body
    for part in path:
        try:
            items = items[part]
        except (KeyError, IndexError, TypeError):
            return None
    if not isinstance(items, list):
        return None
    keys = str(ctx.get("keys", "")).split("/")
    wanted = str(ctx.get("key"))
    seen = 0
    for index, item in enumerate(items):
        if isinstance(item, dict) and "/".join(str(item.get(k)) for k in keys) == wanted:
            seen += 1
            if seen == 2:
                return (*path, index)
    return None
