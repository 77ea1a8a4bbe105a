"""The errors of materialization; no I/O.

    FeaturekubeError
    └── MaterializeError          one window of a view could not be materialized
        ├── PlanError             the view or window cannot be materialized as given
        ├── SourceError           the source could not be read (missing path, bad format)
        ├── SourceSchemaError     the (transformed) source lacks or mistypes columns
        ├── TransformationError   spec.transformation.sql failed in Spark
        └── ExpectationFailedError  an expectation with onViolation: Fail was violated;
                                  nothing was published

Write failures are :class:`featurekube.writer.errors.WriteError` and pass through as
they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from featurekube.errors import FeaturekubeError

__all__ = [
    "ExpectationFailedError",
    "MaterializeError",
    "PlanError",
    "SourceError",
    "SourceSchemaError",
    "TransformationError",
]


class MaterializeError(FeaturekubeError):
    """One window of a view could not be materialized."""


class PlanError(MaterializeError, ValueError):
    """The view or the window cannot be materialized as given (a push source, an empty
    window, an invalid definition)."""


class SourceError(MaterializeError):
    """The source could not be read: its path holds no data, or not in its format."""


class SourceSchemaError(MaterializeError):
    """The source (after the transformation) lacks columns the spec needs, or has them
    with types that do not convert; :attr:`problems` has one line per column."""

    def __init__(self, message: str, problems: Sequence[str]) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class TransformationError(MaterializeError):
    """``spec.transformation.sql`` failed to analyze or run in Spark."""


class ExpectationFailedError(MaterializeError):
    """An expectation with ``onViolation: Fail`` was violated; nothing was published.
    :attr:`report` (a :class:`~featurekube.materialize.report.MaterializationReport`)
    lists every violation."""

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report
