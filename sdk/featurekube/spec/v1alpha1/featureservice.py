"""The FeatureService resource: the features one model uses, and their server; pure."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from featurekube.serving_access import SUBJECT_PATTERN
from featurekube.spec.v1alpha1._base import (
    FeatureName,
    Rule,
    SpecModel,
    list_map,
    reserved_name_rule,
)
from featurekube.spec.v1alpha1.common import Condition, DnsLabel, ObjectMeta, ValueType
from featurekube.spec.v1alpha1.monitoring import ParityStatus, ServiceMonitoring

__all__ = [
    "QUANTITY_PATTERN",
    "Access",
    "Autoscaling",
    "FeatureService",
    "FeatureServiceSpec",
    "FeatureServiceStatus",
    "FeatureViewReference",
    "PodDisruptionBudget",
    "Quantity",
    "RequestField",
    "RequestTransformation",
    "ResolvedFeature",
    "Resources",
    "ServedVersion",
    "ServerSettings",
]

QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""A non-negative Kubernetes resource quantity, as the API server parses one."""

_QUANTITY = re.compile(QUANTITY_PATTERN)


def _check_quantity(value: int | str) -> int | str:
    # One check for both forms, so a bad value gets one message, the pattern's.
    if len(str(value)) > 64 or not _QUANTITY.match(str(value)):
        raise PydanticCustomError(
            "string_pattern_mismatch",
            "String should match pattern '{pattern}'",
            {"pattern": QUANTITY_PATTERN},
        )
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN, "maxLength": 64}
    ),
]
"""A Kubernetes resource quantity: 2, "500m", "1Gi"; never negative."""


class FeatureViewReference(SpecModel):
    """Features taken from one FeatureView."""

    feature_view: DnsLabel
    """The view's name."""
    namespace: DnsLabel | None = None
    """The view's namespace; unset: the service's own. Another namespace's view must
    list this service's namespace in its spec.sharedWith."""
    features: list[FeatureName] | None = Field(
        None, min_length=1, max_length=256, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Which of the view's features; unset: all of them."""
    prefix: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$", max_length=32)] | None = None
    """Prepended to each feature's name in the service, to tell apart equal names from
    different views (e.g. driver_ and rider_)."""
    version: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    """Serve this data version of the view (its status.version when it serves, or one
    of status.servingVersions), not the one the view serves: the view keeps it
    materialized, and its data is never deleted, while any service pins it. Unset: the
    version the view serves."""


class RequestField(SpecModel):
    """A value the caller sends with each request, for request-time transformations."""

    rules: ClassVar[tuple[Rule, ...]] = (reserved_name_rule("request field"),)

    name: FeatureName
    """The field's name."""
    type: ValueType
    """Its values' type."""


class RequestTransformation(SpecModel):
    """A feature computed at request time from request data and fetched features.

    The same expression is evaluated by the feature server online and by the SDK for
    training, so both agree.
    """

    name: FeatureName
    """The computed feature's name."""
    type: ValueType
    """Its values' type."""
    expression: Annotated[str, Field(min_length=1, max_length=4096)]
    """A SQL expression over request fields and the service's features, e.g.
    trip_distance_km / nullif(avg_speed_kmh_7d, 0)."""
    description: Annotated[str, Field(max_length=1024)] | None = None
    """What it means."""


class Resources(SpecModel):
    """CPU and memory of each feature-server pod, as in a container's resources."""

    requests: dict[str, Quantity] | None = None
    """Guaranteed resources, e.g. cpu: 500m, memory: 512Mi."""
    limits: dict[str, Quantity] | None = None
    """Upper bounds."""


class Autoscaling(SpecModel):
    """A HorizontalPodAutoscaler on CPU for the feature server."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.minReplicas <= self.maxReplicas",
            message="autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
            check=lambda a: a.min_replicas <= a.max_replicas,
            field_path=".minReplicas",
        ),
    )

    min_replicas: Annotated[int, Field(ge=1, le=1000)] = 2
    """Fewest pods."""
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = 10
    """Most pods."""
    # Spelled as in Kubernetes' HorizontalPodAutoscaler, not as camelCase would have it.
    target_cpu_utilization_percentage: Annotated[
        int, Field(ge=1, le=100, alias="targetCPUUtilizationPercentage")
    ] = 70
    """Average CPU use, in percent of requests, that the autoscaler aims for."""


class PodDisruptionBudget(SpecModel):
    """How many feature-server pods must stay up during voluntary disruptions."""

    min_available: Annotated[int, Field(ge=0, le=1000)] = 1
    """Pods that must stay available."""


class ServerSettings(SpecModel):
    """How the service's gRPC feature server runs."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.podDisruptionBudget) || (has(self.autoscaling) ? "
            "self.podDisruptionBudget.minAvailable < self.autoscaling.minReplicas : "
            "self.podDisruptionBudget.minAvailable < self.replicas)",
            message="podDisruptionBudget.minAvailable must be below the number of replicas "
            "(autoscaling.minReplicas when autoscaling), or no node could ever be drained",
            check=lambda s: (
                s.pod_disruption_budget is None
                or s.pod_disruption_budget.min_available
                < (s.autoscaling.min_replicas if s.autoscaling else s.replicas)
            ),
            field_path=".podDisruptionBudget",
        ),
    )

    replicas: Annotated[int, Field(ge=0, le=1000)] = 2
    """Pods, when autoscaling is off (with autoscaling, the autoscaler decides)."""
    resources: Resources | None = None
    """Per-pod CPU and memory; unset: the operator's defaults."""
    autoscaling: Autoscaling | None = None
    """Scale on CPU between minReplicas and maxReplicas."""
    pod_disruption_budget: PodDisruptionBudget | None = None
    """Keep this many pods through node drains."""
    service_account_name: DnsLabel | None = None
    """The pods' ServiceAccount (e.g. one with an IAM role for DynamoDB)."""
    port: Annotated[int, Field(ge=1, le=65535)] = 50051
    """The gRPC port of the pods and the Service."""


Subject = Annotated[str, Field(pattern=SUBJECT_PATTERN, max_length=317)]
"""A ServiceAccount: NAMESPACE/NAME, NAMESPACE/* (every ServiceAccount of the
namespace) or system:serviceaccount:NAMESPACE:NAME."""


class Access(SpecModel):
    """Who may call the service's feature server, by the ServiceAccount token each
    caller sends. Reading and pushing are granted separately; a list left unset grants
    the service's own namespace (every ServiceAccount in it), an empty list grants
    nobody."""

    read: list[Subject] | None = Field(
        None, max_length=64, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Who may ask for features (GetOnlineFeatures)."""
    push: list[Subject] | None = Field(
        None, max_length=64, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Who may push rows into the service's own namespace's push views (Push). Views
    shared from other namespaces are never written, whoever calls."""


class FeatureServiceSpec(SpecModel):
    """The desired state of a FeatureService."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.transformations) || !has(self.requestData) || "
            "self.transformations.all(t, !self.requestData.exists(r, r.name == t.name))",
            message="a transformation must not be named like a request field",
            check=lambda s: (
                not (
                    {t.name for t in s.transformations or ()}
                    & {r.name for r in s.request_data or ()}
                )
            ),
            field_path=".transformations",
        ),
    )

    owner: Annotated[str, Field(min_length=1, max_length=256)]
    """Who to ask about this service: the model's team."""
    description: Annotated[str, Field(max_length=4096)] | None = None
    """Which model uses it, and how."""
    tags: dict[str, Annotated[str, Field(max_length=256)]] | None = Field(None, max_length=64)
    """Free-form labels for discovery."""
    features: list[FeatureViewReference] = Field(min_length=1, max_length=64)
    """The views, and which of their features, this service serves."""
    request_data: list[RequestField] | None = Field(
        None, min_length=1, max_length=64, json_schema_extra=list_map("name")
    )
    """Values sent with each request, for transformations."""
    transformations: list[RequestTransformation] | None = Field(
        None, min_length=1, max_length=64, json_schema_extra=list_map("name")
    )
    """Features computed at request time."""
    server: ServerSettings = ServerSettings()
    """The gRPC feature server that serves this service."""
    access: Access | None = None
    """Who may read and who may push; unset: the ServiceAccounts of the service's own
    namespace may do both."""
    monitoring: ServiceMonitoring = ServiceMonitoring()
    """The parity check of served values against the offline store."""


class ResolvedFeature(SpecModel):
    """One feature the service serves, as the operator resolved it."""

    name: str
    """Its name in the service (with any prefix)."""
    type: str
    """Its value type."""
    feature_view: str | None = None
    """The view it comes from; unset for a request-time transformation."""
    namespace: str | None = None
    """The view's namespace."""


class ServedVersion(SpecModel):
    """A view version the service's serving plan reads."""

    feature_view: str
    """The view's name."""
    namespace: str
    """The view's namespace."""
    version: Annotated[int, Field(ge=1)]
    """The data version whose table and schema the plan uses."""


class FeatureServiceStatus(SpecModel):
    """The observed state of a FeatureService, written by the operator."""

    observed_generation: int | None = None
    """The metadata.generation the operator last acted on."""
    conditions: list[Condition] | None = Field(
        None, max_length=16, json_schema_extra=list_map("type")
    )
    """Ready, and why not."""
    endpoint: str | None = None
    """The gRPC endpoint: <service>.<namespace>.svc:<port>."""
    feature_count: int | None = None
    """How many features the service serves."""
    resolved_features: list[ResolvedFeature] | None = Field(None, max_length=1024)
    """Every feature served, with its type and origin."""
    served_versions: list[ServedVersion] | None = Field(None, max_length=64)
    """The view versions the serving plan reads: their data is kept while it does."""
    parity: ParityStatus | None = None
    """The last parity check of served values against the offline store."""


class FeatureService(SpecModel):
    """The features one model uses, served over gRPC."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && "
            "size(self.metadata.name) <= 50",
            message="metadata.name must be at most 50 characters of lower-case letters, digits "
            "and '-', starting with a letter: it names the service's Deployment and Service",
            check=lambda s: (
                len(s.metadata.name) <= 50
                and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", s.metadata.name) is not None
            ),
            field_path=".metadata.name",
        ),
    )
    model_config = SpecModel.model_config | {"alias_generator": None}

    api_version: Literal["featurekube.dev/v1alpha1"] = Field(
        "featurekube.dev/v1alpha1", alias="apiVersion"
    )
    kind: Literal["FeatureService"] = "FeatureService"
    metadata: ObjectMeta
    spec: FeatureServiceSpec
    status: FeatureServiceStatus | None = None
