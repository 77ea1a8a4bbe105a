"""Point-in-time joins of feature views onto entity rows, for training sets.

:mod:`~featurekube.joins.plan` (pure) decides what to read and how to join;
:mod:`~featurekube.joins.duckdb` executes a plan without a JVM and
:mod:`~featurekube.joins.spark` in Spark, by the same rules. Only the engine modules
import their engines, and nothing here imports either until a join runs.
"""

from featurekube.joins.plan import (
    EntityFrameError,
    FeatureNotFoundError,
    FeatureReferenceError,
    FeatureServiceNotFoundError,
    FeatureViewNotFoundError,
    OfflineStoreError,
    RetrievalError,
)

__all__ = [
    "EntityFrameError",
    "FeatureNotFoundError",
    "FeatureReferenceError",
    "FeatureServiceNotFoundError",
    "FeatureViewNotFoundError",
    "OfflineStoreError",
    "RetrievalError",
]
