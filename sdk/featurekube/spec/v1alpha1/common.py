"""Types both resources share: value types, conditions, object metadata; pure."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from featurekube.spec.v1alpha1._base import SpecModel

__all__ = [
    "API_VERSION",
    "GROUP",
    "SPARK_SQL_TYPES",
    "VERSION",
    "Condition",
    "DnsLabel",
    "ObjectMeta",
    "ValueType",
]

GROUP = "featurekube.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

ValueType = Literal["int64", "float64", "string", "bool", "timestamp", "float64_array"]
"""The type of a feature's values, the same in Spark, Arrow, DynamoDB and gRPC."""

SPARK_SQL_TYPES: dict[str, str] = {
    "int64": "bigint",
    "float64": "double",
    "string": "string",
    "bool": "boolean",
    "timestamp": "timestamp",
    "float64_array": "array<double>",
}
"""Value type -> the Spark SQL type it is read, computed and written as."""

DnsLabel = Annotated[
    str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length=1, max_length=63)
]
"""A Kubernetes object or namespace name: lower-case letters, digits and '-'."""


class Condition(SpecModel):
    """One aspect of an object's state, in Kubernetes' standard condition shape."""

    type: Annotated[str, Field(max_length=64)]
    """What the condition is about: Ready, Materialized, Degraded."""
    status: Literal["True", "False", "Unknown"]
    """Whether it holds."""
    reason: Annotated[str, Field(max_length=128)] = ""
    """A CamelCase word for why, for machines and dashboards."""
    message: Annotated[str, Field(max_length=4096)] = ""
    """For people: what happened and what to do."""
    last_transition_time: dt.datetime | None = None
    """When status last changed."""
    observed_generation: int | None = None
    """The metadata.generation this condition was computed from."""


class ObjectMeta(BaseModel):
    """The parts of Kubernetes object metadata that featurekube reads."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None
