"""What every spec model shares: YAML spelling, strictness, and cross-field rules; pure.

A cross-field rule is written once as a :class:`Rule`: its CEL expression goes into the
CRD (checked by the API server at apply time) and its Python predicate runs when a
model is validated (``featurekube validate``, the SDK, the operator). Both carry the
same message and field path; tests apply the same bad objects to both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel, to_snake
from pydantic_core import PydanticCustomError

from featurekube.spec.v1alpha1 import durations

__all__ = [
    "CRON_PATTERN",
    "RESERVED_NAMES",
    "Cron",
    "Duration",
    "FeatureName",
    "Rule",
    "SpecModel",
    "has_items",
    "list_map",
    "reserved_name_rule",
]


def _cron_field(number: str, names: str = "", question: bool = False) -> str:
    """A regular expression of one cron field: comma-separated items, each ``*``, a
    value or a range, optionally with a step ``/n`` (n >= 1)."""
    value = f"({number}|{names})" if names else f"({number})"
    item = rf"(\*|{value}(-{value})?)(/[1-9][0-9]{{0,2}})?"
    if question:
        item = rf"(\?|{item})"
    return f"{item}(,{item})*"


_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
# Five cron fields (minute, hour, day of month, month, day of week), each value within
# its range, or one of the @-shorthands a CronJob accepts.
CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    + " +".join(
        [
            _cron_field("[0-5]?[0-9]"),
            _cron_field("[01]?[0-9]|2[0-3]"),
            _cron_field("0?[1-9]|[12][0-9]|3[01]", question=True),
            _cron_field("0?[1-9]|1[0-2]", f"{_MONTHS}|{_MONTHS.lower()}"),
            _cron_field("[0-7]", f"{_DAYS}|{_DAYS.lower()}", question=True),
        ]
    )
    + ")$"
)


Duration = Annotated[
    str,
    Field(
        pattern=durations.DURATION_PATTERN,
        max_length=8,
        json_schema_extra={"example": "30m"},
    ),
]
"""A duration: a positive whole number and one unit of s, m, h, d, w (e.g. 30m, 1d)."""

Cron = Annotated[str, Field(pattern=CRON_PATTERN, max_length=100)]
"""A cron schedule in UTC: five fields, or @hourly, @daily, @weekly, @monthly, @yearly."""

FeatureName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$", min_length=1, max_length=64)]
"""A column name: lower-case letters, digits and underscores, not starting with a digit."""


@dataclass(frozen=True)
class Rule:
    """A cross-field rule, enforced by the API server (CEL) and by Python alike."""

    cel: str
    """The CEL expression, over ``self`` = the object the rule is attached to."""
    message: str
    """What is wrong and what to do, shown by kubectl and by ``featurekube validate``."""
    check: Callable[[Any], bool]
    """The same rule in Python, over the validated model instance."""
    field_path: str | None = None
    """Where the problem is, relative to the object (``.aggregationInterval``)."""

    def to_cel(self) -> dict[str, str]:
        """The ``x-kubernetes-validations`` entry of this rule."""
        entry = {"rule": self.cel, "message": self.message}
        # The API server resolves fieldPath against the schema, which does not
        # describe metadata; such rules name the field in their message instead.
        if self.field_path and not self.field_path.startswith(".metadata"):
            entry["fieldPath"] = self.field_path
        return entry


RESERVED_NAMES = frozenset(
    {
        # the offline tables' columns
        "event_timestamp",
        "created_timestamp",
        "ingestion_timestamp",
        "latest_event_timestamp",
        "event_date",
        # the online items' attributes
        "entity_key",
        "event_time",
        "created_time",
        "latest_event_time",
        "expires_at",
    }
)
"""Names no entity, feature or request field may take: the stores' own columns and
attributes (a feature ``expires_at`` would set when DynamoDB deletes the item). Names
starting with ``__`` are featurekube's too."""


def reserved_name_rule(what: str) -> Rule:
    """The rule refusing :data:`RESERVED_NAMES` for the ``name`` of ``what``."""
    names = sorted(RESERVED_NAMES)
    listed = ", ".join(f"'{n}'" for n in names)
    return Rule(
        cel=f"!(self.name in [{listed}]) && !self.name.startsWith('__')",
        message=f"the name of a {what} must not be one of featurekube's own column names "
        f"({', '.join(names)}) nor start with '__': rename it",
        check=lambda o: o.name not in RESERVED_NAMES and not o.name.startswith("__"),
        field_path=".name",
    )


def list_map(*keys: str) -> dict[str, Any]:
    """Schema extras making a list a map keyed by ``keys``: the API server refuses two
    items with the same key, and server-side apply merges items by key."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


def has_items(value: list[Any] | None) -> bool:
    """Whether an optional list is set and not empty."""
    return bool(value)


class SpecModel(BaseModel):
    """Base of every spec model: camelCase in YAML, snake_case in Python, no unknown keys."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        validate_default=False,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()
    """Cross-field rules of this object; see :class:`Rule`."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for name, info in type(self).model_fields.items():
            extra = info.json_schema_extra
            if not isinstance(extra, dict) or extra.get("x-kubernetes-list-type") != "map":
                continue
            keys = [str(k) for k in extra["x-kubernetes-list-map-keys"]]  # type: ignore[union-attr]
            seen: set[tuple[Any, ...]] = set()
            for item in getattr(self, name) or ():
                key = tuple(getattr(item, to_snake(k)) for k in keys)
                if key in seen:
                    field = info.alias or name
                    raise PydanticCustomError(
                        "featurekube_duplicate",
                        "two items of {field} have {keys} '{key}': each {keys} must be unique",
                        {
                            "field": field,
                            "keys": "/".join(keys),
                            "key": "/".join(map(str, key)),
                            "field_path": f".{field}",
                        },
                    )
                seen.add(key)
        for rule in type(self).rules:
            if not rule.check(self):
                raise PydanticCustomError(
                    "featurekube_rule",
                    rule.message,
                    {"field_path": rule.field_path or ""},
                )
        return self

    def to_yaml_dict(self) -> dict[str, Any]:
        """The object as it is written in YAML: camelCase keys, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
