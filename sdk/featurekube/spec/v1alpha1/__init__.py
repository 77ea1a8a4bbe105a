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
    Materialization,
    PushSource,
    Source,
    Transformation,
    Window,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "SPARK_SQL_TYPES",
    "VERSION",
    "Aggregation",
    "BatchSource",
    "Condition",
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
    "Materialization",
    "ObjectMeta",
    "PushSource",
    "RequestField",
    "RequestTransformation",
    "ServerSettings",
    "Source",
    "Transformation",
    "Window",
    "parse_duration",
]
