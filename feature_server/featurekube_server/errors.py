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
    ├── PushUnsupportedError         this server has no write path for pushed rows
    ├── UnauthenticatedError         no token, or one the Kubernetes API does not accept
    ├── AccessDeniedError            a caller the service's spec.access does not list
    └── AuthUnavailableError         the Kubernetes API did not answer a TokenReview
    StoreUnavailableError            the online store did not answer; retry with backoff

Request-time transformations raise :class:`featurekube.errors.RequestTransformationError`.
"""

from __future__ import annotations

from featurekube.errors import (
    AccessDeniedError,
    AuthUnavailableError,
    InvalidColumnError,
    InvalidPushError,
    NotServedError,
    PushNotAllowedError,
    PushUnsupportedError,
    RequestError,
    ServingError,
    StoreUnavailableError,
    TooManyRowsError,
    UnauthenticatedError,
    UnknownFeatureError,
)
from featurekube.errors import ServingPlanError as PlanError

__all__ = [
    "AccessDeniedError",
    "AuthUnavailableError",
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
    "UnauthenticatedError",
    "UnknownFeatureError",
]
