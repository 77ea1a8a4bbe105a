"""featurekube: a Kubernetes-native feature store.

Features are defined as code (FeatureView and FeatureService resources), materialized
by Spark into Delta tables on S3 and DynamoDB, served over gRPC, and pulled point-in-time
correct for training. ``import featurekube`` loads no heavy dependency: pyspark, grpc
and kopf are imported only by the modules that need them.
"""

from typing import TYPE_CHECKING, Any

from featurekube.errors import (
    ComponentStartError,
    FeaturekubeError,
    MissingDependencyError,
    PlatformError,
)
from featurekube.store import FeatureStore

if TYPE_CHECKING:
    from featurekube.online.client import OnlineClient

__version__ = "0.1.0.dev0"

__all__ = [
    "ComponentStartError",
    "FeatureStore",
    "FeaturekubeError",
    "MissingDependencyError",
    "OnlineClient",
    "PlatformError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # The online client needs grpc: loaded on first use, not with the package.
    if name == "OnlineClient":
        from featurekube.online.client import OnlineClient

        return OnlineClient
    raise AttributeError(f"module 'featurekube' has no attribute {name!r}")
