"""The errors of materialization, under the names this package uses; no I/O.

They are defined, with the whole tree, in :mod:`featurekube.errors`::

    MaterializeError          one window of a view could not be materialized
    ├── PlanError             (MaterializePlanError) the view or window cannot be
    │                         materialized as given
    ├── SourceError           the source could not be read (missing path, bad format)
    ├── SourceSchemaError     the (transformed) source lacks or mistypes columns
    ├── TransformationError   (SqlTransformationError) spec.transformation.sql failed
    ├── ExpectationFailedError  an expectation with onViolation: Fail was violated;
    │                         nothing was published
    └── StoreNotFoundError    a store the run writes to does not exist

Write failures are :class:`featurekube.errors.WriteError` and pass through as they are.
"""

from __future__ import annotations

from featurekube.errors import (
    ExpectationFailedError,
    MaterializeError,
    SourceError,
    SourceSchemaError,
    StoreNotFoundError,
)
from featurekube.errors import MaterializePlanError as PlanError
from featurekube.errors import SqlTransformationError as TransformationError

__all__ = [
    "ExpectationFailedError",
    "MaterializeError",
    "PlanError",
    "SourceError",
    "SourceSchemaError",
    "StoreNotFoundError",
    "TransformationError",
]
