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

if TYPE_CHECKING:
    from featurekube.online.client import OnlineClient
    from featurekube.store import FeatureStore

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
    # The store needs Arrow and numpy, the online client grpc: each is loaded on first
    # use, not with the package, so that a job that needs neither (the materialization
    # job writing its pending record first) does not wait for them.
    if name == "FeatureStore":
        from featurekube.store import FeatureStore

        return FeatureStore
    if name == "OnlineClient":
        from featurekube.online.client import OnlineClient

        return OnlineClient
    raise AttributeError(f"module 'featurekube' has no attribute {name!r}")
