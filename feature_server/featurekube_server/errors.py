"""The errors the feature server raises, under the names it uses; no I/O, no gRPC.

They are defined, with the whole tree, in :mod:`featurekube.errors`. Each says what is
wrong, where, and what to do. The servicer maps them to gRPC status codes in one table
(:data:`featurekube_server.servicer.STATUS_CODES`)::

    ServingError
    ├── PlanError                    (ServingPlanError) the serving plan is not usable
    │                                (the server won't start)
    ├── RequestError                 the request is wrong; retrying it will not help
    │   ├── UnknownFeatureError          a feature this service does not serve
    │   ├── InvalidColumnError           a missing, mistyped or misshapen column
    │   ├── TooManyRowsError             more entity rows than the server takes at once
    │   └── InvalidPushError             a pushed row that does not fit the view's schema
    ├── NotServedError               a feature service or view this server does not serve
    ├── PushNotAllowedError          a push into a view another namespace owns
    └── PushUnsupportedError         this server has no write path for pushed rows
    StoreUnavailableError            the online store did not answer; retry with backoff

Request-time transformations raise :class:`featurekube.errors.RequestTransformationError`.
"""

from __future__ import annotations

from featurekube.errors import (
    InvalidColumnError,
    InvalidPushError,
    NotServedError,
    PushNotAllowedError,
    PushUnsupportedError,
    RequestError,
    ServingError,
    StoreUnavailableError,
    TooManyRowsError,
    UnknownFeatureError,
)
from featurekube.errors import ServingPlanError as PlanError

__all__ = [
    "InvalidColumnError",
    "InvalidPushError",
    "NotServedError",
    "PlanError",
    "PushNotAllowedError",
    "PushUnsupportedError",
    "RequestError",
    "ServingError",
    "StoreUnavailableError",
    "TooManyRowsError",
    "UnknownFeatureError",
]
