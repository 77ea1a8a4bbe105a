"""featurekube: a Kubernetes-native feature store.

Features are defined as code (FeatureView and FeatureService resources), materialized
by Spark into Delta tables on S3 and DynamoDB, served over gRPC, and pulled point-in-time
correct for training. ``import featurekube`` loads no heavy dependency: pyspark, grpc
and kopf are imported only by the modules that need them.
"""

from featurekube.errors import (
    ComponentStartError,
    FeaturekubeError,
    MissingDependencyError,
    PlatformError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "ComponentStartError",
    "FeaturekubeError",
    "MissingDependencyError",
    "PlatformError",
    "__version__",
]
