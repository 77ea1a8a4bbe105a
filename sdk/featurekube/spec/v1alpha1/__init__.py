"""``featurekube.dev/v1alpha1``: FeatureView and FeatureService; pure.

The pydantic models here are the source of truth: ``make crds`` generates ``crds/``
from them, and the SDK, the operator and the feature server all read specs through them.
"""

from featurekube.spec.v1alpha1.common import (
    API_VERSION,
    GROUP,
    SPARK_SQL_TYPES,
    VERSION,
    Condition,
    ObjectMeta,
)
from featurekube.spec.v1alpha1.durations import parse_duration
from featurekube.spec.v1alpha1.featureservice import (
    FeatureService,
    FeatureServiceSpec,
    FeatureServiceStatus,
    FeatureViewReference,
    RequestField,
    RequestTransformation,
    ServerSettings,
)
from featurekube.spec.v1alpha1.featureview import (
    Aggregation,
    BatchSource,
    Entity,
    Expectation,
    Feature,
    FeatureView,
    FeatureViewSpec,
    FeatureViewStatus,
    KafkaSource,
    Materialization,
    PushSource,
    Source,
    StreamField,
    StreamSource,
    StreamStatus,
    Transformation,
    Window,
)
from featurekube.spec.v1alpha1.monitoring import (
    DriftReference,
    DriftSpec,
    ParitySpec,
    ServiceMonitoring,
    ViewMonitoring,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "SPARK_SQL_TYPES",
    "VERSION",
    "Aggregation",
    "BatchSource",
    "Condition",
    "DriftReference",
    "DriftSpec",
    "Entity",
    "Expectation",
    "Feature",
    "FeatureService",
    "FeatureServiceSpec",
    "FeatureServiceStatus",
    "FeatureView",
    "FeatureViewReference",
    "FeatureViewSpec",
    "FeatureViewStatus",
    "KafkaSource",
    "Materialization",
    "ObjectMeta",
    "ParitySpec",
    "PushSource",
    "RequestField",
    "RequestTransformation",
    "ServerSettings",
    "ServiceMonitoring",
    "Source",
    "StreamField",
    "StreamSource",
    "StreamStatus",
    "Transformation",
    "ViewMonitoring",
    "Window",
    "parse_duration",
]
