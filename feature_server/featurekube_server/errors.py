"""The errors the feature server raises; no I/O, no gRPC.

Each says what is wrong, where, and what to do. The servicer maps them to gRPC status
codes in one table (:data:`featurekube_server.servicer.STATUS_CODES`)::

    FeaturekubeError
    ├── PlanError                    the serving plan is not usable (the server won't start)
    ├── RequestError                 the request is wrong; retrying it will not help
    │   ├── UnknownFeatureError          a feature this service does not serve
    │   ├── InvalidColumnError           a missing, mistyped or misshapen column
    │   ├── TooManyRowsError             more entity rows than the server takes at once
    │   └── InvalidPushError             a pushed row that does not fit the view's schema
    ├── NotServedError               a feature service or view this server does not serve
    ├── StoreUnavailableError        the online store did not answer; retry with backoff
    └── PushUnsupportedError         this server has no write path for pushed rows

Request-time transformations raise :class:`featurekube.ondemand.TransformationError`.
"""

from __future__ import annotations

from featurekube import errors

__all__ = [
    "InvalidColumnError",
    "InvalidPushError",
    "NotServedError",
    "PlanError",
    "PushUnsupportedError",
    "RequestError",
    "StoreUnavailableError",
    "TooManyRowsError",
    "UnknownFeatureError",
]


class PlanError(errors.FeaturekubeError):
    """The serving plan is missing, malformed or inconsistent; the message names the
    field. The operator renders the plan, so this is a bug there or a hand-edited file."""


class RequestError(errors.FeaturekubeError):
    """The request cannot be served as sent."""


class UnknownFeatureError(RequestError):
    """A requested feature is not one of the service's."""


class InvalidColumnError(RequestError):
    """A join key or request field is missing, of the wrong type, null, or of another
    length than the other columns."""


class TooManyRowsError(RequestError):
    """More entity rows in one request than the server's limit."""


class InvalidPushError(RequestError):
    """Pushed rows do not fit the view's schema; the message names the row and column."""


class NotServedError(errors.FeaturekubeError):
    """The request names a feature service or feature view that this server does not
    serve."""


class StoreUnavailableError(errors.FeaturekubeError):
    """The online store did not answer, refused the call, or lacks a table."""


class PushUnsupportedError(errors.FeaturekubeError):
    """The server was started without a writer for pushed rows."""
