"""What featurekube watches about a view or a service, and what it found; pure.

A FeatureView's ``spec.monitoring`` declares its freshness objective and the reference
its values' drift is measured against; a FeatureService's declares the parity check
that compares served values with the offline store. The operator writes what it
observed into the matching status fields (see docs/monitoring.md).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from featurekube.spec.v1alpha1._base import Duration, FeatureName, Rule, SpecModel

__all__ = [
    "DriftReference",
    "DriftSpec",
    "ExpectationResult",
    "FeatureDrift",
    "FreshnessStatus",
    "ParityMismatch",
    "ParitySpec",
    "ParityStatus",
    "ReferencePeriod",
    "ServiceMonitoring",
    "ViewMonitoring",
]

ReferenceName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
"""The name a training pull's statistics were saved under (``save_reference``)."""


class ReferencePeriod(SpecModel):
    """A fixed span of the view's own history, [start, end)."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.start < self.end",
            message="the reference period must end after it starts",
            check=lambda p: p.start < p.end,
            field_path=".end",
        ),
    )

    start: dt.datetime
    """The period's first instant (included), UTC."""
    end: dt.datetime
    """The instant the period ends (excluded), UTC."""


class DriftReference(SpecModel):
    """What a window's values are compared with: a period of history or a training pull."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.period) != has(self.trainingPull)",
            message="set exactly one of period (a span of the view's history) or "
            "trainingPull (the name statistics of a training pull were saved under)",
            check=lambda r: (r.period is None) != (r.training_pull is None),
        ),
    )

    period: ReferencePeriod | None = None
    """The view's own rows in this period."""
    training_pull: ReferenceName | None = None
    """The statistics saved from a training pull under this name."""


class DriftSpec(SpecModel):
    """How a view's drift is measured: the population stability index (PSI) of each
    feature's values in a window against the reference."""

    reference: DriftReference
    """What the values are compared with."""
    threshold: Annotated[float, Field(gt=0, le=10)] = 0.2
    """The PSI above which a feature counts as drifted (0.1: some shift, 0.2: a large one)."""


class ViewMonitoring(SpecModel):
    """What the operator watches about a FeatureView."""

    freshness_objective: Duration | None = None
    """How far behind now the view's materialized data may fall before it counts as
    stale. Unset: twice the interval of its schedule."""
    drift: DriftSpec | None = None
    """Measure drift against a reference. Unset: statistics are kept, drift is not computed."""


class ParitySpec(SpecModel):
    """The continuous check that served values equal the offline store's."""

    enabled: bool = True
    """Run the check."""
    sample_size: Annotated[int, Field(ge=1, le=1000)] = 100
    """Entities compared per check."""
    interval: Duration = "1h"
    """How often to check."""


class ServiceMonitoring(SpecModel):
    """What the operator watches about a FeatureService."""

    parity: ParitySpec = ParitySpec()
    """Compare what the feature server returns with a point-in-time pull."""


class ExpectationResult(SpecModel):
    """One expectation check's verdict on the view's last materialized window."""

    feature: FeatureName
    """The feature checked."""
    check: Literal["notNull", "min", "max", "allowedValues"]
    """What was checked."""
    on_violation: Literal["Warn", "Fail"]
    """What a violation does."""
    rows: Annotated[int, Field(ge=0)]
    """Rows that broke it; 0: it passed."""
    message: Annotated[str, Field(max_length=1024)] | None = None
    """What was wrong, when something was."""
    window_start: dt.datetime
    """The start of the window checked."""


class FreshnessStatus(SpecModel):
    """The view's freshness objective and whether it is met."""

    objective: Duration
    """The objective in force (declared, or twice the schedule's interval)."""
    met: bool
    """Whether the materialized data is within the objective now."""
    since: dt.datetime | None = None
    """When ``met`` last changed."""


class FeatureDrift(SpecModel):
    """One feature's drift in the view's last materialized window."""

    feature: FeatureName
    """The feature measured."""
    psi: Annotated[float, Field(ge=0)]
    """The population stability index against the reference."""
    drifted: bool
    """Whether psi is above the threshold."""
    window_start: dt.datetime
    """The start of the window measured."""


class ParityMismatch(SpecModel):
    """One served value the offline store disagrees with."""

    feature: Annotated[str, Field(max_length=256)]
    """The feature, as the service names it."""
    entity: Annotated[str, Field(max_length=1024)]
    """The entity's key, as JSON."""
    online: Annotated[str, Field(max_length=256)] | None = None
    """What the feature server returned, as JSON (null: nothing)."""
    offline: Annotated[str, Field(max_length=256)] | None = None
    """What the point-in-time pull gave, as JSON (null: nothing)."""


class ParityStatus(SpecModel):
    """The last parity check's result."""

    checked_at: dt.datetime
    """When it ran."""
    entities: Annotated[int, Field(ge=0)]
    """Entities sampled."""
    values: Annotated[int, Field(ge=0)]
    """Feature values compared."""
    mismatches: Annotated[int, Field(ge=0)]
    """Values that differed."""
    mismatch_rate: Annotated[float, Field(ge=0, le=1)]
    """mismatches / values (0 when nothing was compared)."""
    examples: list[ParityMismatch] | None = Field(None, max_length=8)
    """A few of the mismatches, for a person to look at."""
