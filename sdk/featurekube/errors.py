"""The errors featurekube raises, all of them, in one tree; no I/O.

Every error a user can act on derives from :class:`FeaturekubeError`: catch a branch
to handle one kind of failure wherever it comes from. The first line of a message
names the object (kind and namespace/name, a feature reference, a file or URI) and the
field or path, says what was expected and what was found, and suggests the next step;
lines after it, when there are any, are detail (the command line shows them with
``--verbose``). Errors carry no transport knowledge: the feature server maps them to
gRPC codes and the operator to kopf's permanent or temporary errors, each in one table
of its own.

The packages that raise them re-export their own under the names they use
(``featurekube.materialize.errors.PlanError`` is :class:`MaterializePlanError`), so
either import works:

    FeaturekubeError
    ├── MissingDependencyError        an optional extra (spark, server, ...) is not installed
    ├── DefinitionsError              feature definitions could not be read or do not validate
    ├── ClusterError                  the cluster's feature definitions could not be read
    │   ├── KubeconfigError               no usable kubeconfig
    │   ├── ClusterUnreachableError       the API server did not answer
    │   ├── CrdsNotInstalledError         featurekube's CRDs are not installed there
    │   └── ForbiddenError                the identity may not list featurekube's objects
    ├── CatalogQueryError             a catalog search is malformed or too long
    ├── PlatformError                 the local platform (`featurekube dev`) failed
    │   ├── ComponentStartError           one part of it did not start; carries its log tail
    │   └── PlatformInUseError            another live process holds it: not stopped
    ├── RetrievalError                historical features could not be retrieved (joins)
    │   ├── FeatureReferenceError         a malformed, repeated or colliding reference
    │   │   ├── FeatureViewNotFoundError
    │   │   ├── FeatureServiceNotFoundError
    │   │   └── FeatureNotFoundError
    │   ├── EntityFrameError              the entity rows lack or mistype a column
    │   └── OfflineStoreError             a view's offline table is missing or unreadable
    ├── MaterializeError              one window of a view could not be materialized
    │   ├── MaterializePlanError          the view or window cannot be materialized as given
    │   │   └── PathNotAllowedError           a path outside its namespace's allowed S3 prefixes
    │   ├── SourceError                   the source could not be read (missing path, bad format)
    │   ├── SourceSchemaError             the (transformed) source lacks or mistypes columns
    │   ├── SqlTransformationError        spec.transformation.sql failed in Spark
    │   ├── ExpectationFailedError        an expectation with onViolation: Fail was violated
    │   └── StoreNotFoundError            a store the run writes to does not exist
    ├── WriteError                    rows could not be written to a store
    │   ├── RowError                      a row does not fit the view's schema
    │   ├── ItemTooLargeError             an online item is over DynamoDB's 400 KB limit
    │   ├── OnlineWriteError              DynamoDB kept refusing or failing a request
    │   ├── LeaseError                    the online table's write lease is held or was lost
    │   └── OfflineWriteError             the Delta table could not be written
    ├── ExpressionError               a request-time transformation does not compile
    ├── RequestTransformationError    a request-time transformation failed on some values
    ├── ServingError                  the feature server cannot serve a request or start
    │   ├── ServingPlanError              the serving plan is not usable (the server won't start)
    │   ├── RequestError                  the request is wrong; retrying it will not help
    │   │   ├── UnknownFeatureError           a feature this service does not serve
    │   │   ├── InvalidColumnError            a missing, mistyped or misshapen column
    │   │   ├── TooManyRowsError              more entity rows than the server takes at once
    │   │   └── InvalidPushError              a pushed row that does not fit the view's schema
    │   ├── NotServedError                a feature service or view this server does not serve
    │   ├── PushNotAllowedError           a push into a view another namespace owns
    │   ├── PushUnsupportedError          this server has no write path for pushed rows
    │   ├── UnauthenticatedError          a call without a token the Kubernetes API accepts
    │   ├── AccessDeniedError             a caller the service's spec.access does not list
    │   └── AuthUnavailableError          the Kubernetes API did not answer a TokenReview
    ├── StoreUnavailableError         an online store did not answer; retry with backoff
    └── FeatureServerError            a feature server answered a client with an error
        ├── InvalidRequestError           the request was refused (INVALID_ARGUMENT, NOT_FOUND)
        ├── ServerUnavailableError        the server or its store did not answer (UNAVAILABLE)
        └── DeadlineExceededError         the deadline passed (DEADLINE_EXCEEDED)

"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AccessDeniedError",
    "AuthUnavailableError",
    "CatalogQueryError",
    "ClusterError",
    "ClusterUnreachableError",
    "ComponentStartError",
    "CrdsNotInstalledError",
    "DeadlineExceededError",
    "DefinitionsError",
    "EntityFrameError",
    "ExpectationFailedError",
    "ExpressionError",
    "FeatureNotFoundError",
    "FeatureReferenceError",
    "FeatureServerError",
    "FeatureServiceNotFoundError",
    "FeatureViewNotFoundError",
    "FeaturekubeError",
    "ForbiddenError",
    "InvalidColumnError",
    "InvalidPushError",
    "InvalidRequestError",
    "ItemTooLargeError",
    "KubeconfigError",
    "LeaseError",
    "MaterializeError",
    "MaterializePlanError",
    "MissingDependencyError",
    "NotServedError",
    "OfflineStoreError",
    "OfflineWriteError",
    "OnlineWriteError",
    "PathNotAllowedError",
    "PlatformError",
    "PlatformInUseError",
    "PushNotAllowedError",
    "PushUnsupportedError",
    "RequestError",
    "RequestTransformationError",
    "RetrievalError",
    "RowError",
    "ServerUnavailableError",
    "ServingError",
    "ServingPlanError",
    "SourceError",
    "SourceSchemaError",
    "SqlTransformationError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "TooManyRowsError",
    "UnauthenticatedError",
    "UnknownFeatureError",
    "WriteError",
]


class FeaturekubeError(Exception):
    """Base class of every error featurekube raises on purpose."""

    @property
    def summary(self) -> str:
        """The message's first line: what is wrong, where, and what to do."""
        return str(self).split("\n", 1)[0]

    @property
    def detail(self) -> str:
        """The message's lines after the first (empty when there are none)."""
        return str(self).partition("\n")[2]


class MissingDependencyError(FeaturekubeError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class DefinitionsError(FeaturekubeError):
    """Feature definitions could not be read or do not validate."""


# -- the cluster ---------------------------------------------------------------------------


class ClusterError(FeaturekubeError):
    """The cluster's feature definitions could not be read."""


class KubeconfigError(ClusterError):
    """No usable kubeconfig: missing, unreadable, or without a current context."""


class ClusterUnreachableError(ClusterError):
    """The API server did not answer (refused, timed out, TLS failed)."""


class CrdsNotInstalledError(ClusterError):
    """The API server does not serve featurekube's resources: its CRDs are not installed."""


class ForbiddenError(ClusterError):
    """The kubeconfig's identity may not list featurekube's objects."""


class CatalogQueryError(FeaturekubeError):
    """A search of the web catalog (``featurekube ui``) is malformed or too long."""


# -- the local platform --------------------------------------------------------------------


class PlatformError(FeaturekubeError):
    """The local platform could not be built, started, stopped or reached."""


class ComponentStartError(PlatformError):
    """One component of the local platform did not become ready.

    The message names the component, says what was awaited, and ends with the tail
    of the component's log, which is usually where the cause is.
    """

    def __init__(self, component: str, reason: str, log_tail: str) -> None:
        self.component = component
        self.reason = reason
        self.log_tail = log_tail
        tail = log_tail.rstrip() or "(the log is empty)"
        super().__init__(
            f"{component} failed to start: {reason}\n--- last lines of its log ---\n{tail}"
        )


class PlatformInUseError(PlatformError):
    """The platform of a state directory was started by another process that still
    runs; stopping it would pull it from under that process."""


# -- historical retrieval (featurekube.joins) ----------------------------------------------


class RetrievalError(FeaturekubeError):
    """Historical features could not be retrieved; the message says why and what to do."""


class FeatureReferenceError(RetrievalError):
    """A feature reference is malformed, asked for twice, or its output column collides
    with another column."""


class FeatureViewNotFoundError(FeatureReferenceError):
    """No FeatureView of the name referenced is known to the store."""


class FeatureServiceNotFoundError(FeatureReferenceError):
    """No FeatureService of the name asked for is known to the store."""


class FeatureNotFoundError(FeatureReferenceError):
    """The FeatureView referenced has no feature of that name."""


class EntityFrameError(RetrievalError):
    """The entity rows lack a join key, timestamp or request column, or hold one of a
    type the join cannot use."""


class OfflineStoreError(RetrievalError):
    """A view's offline table is missing, unreadable, or lacks a column its spec names."""


# -- materialization (featurekube.materialize) ---------------------------------------------


class MaterializeError(FeaturekubeError):
    """One window of a view could not be materialized."""


class MaterializePlanError(MaterializeError, ValueError):
    """The view or the window cannot be materialized as given (a push source, an empty
    window, an invalid definition)."""


class PathNotAllowedError(MaterializePlanError):
    """A view's source or offline location lies outside its namespace's allowed S3
    prefixes; running it again cannot help."""


class SourceError(MaterializeError):
    """The source could not be read: its bucket or path holds no data, or not in its
    format."""


class SourceSchemaError(MaterializeError):
    """The source (after the transformation) lacks columns the spec needs, or has them
    with types that do not convert; :attr:`problems` has one line per column."""

    def __init__(self, message: str, problems: Sequence[str]) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class SqlTransformationError(MaterializeError):
    """``spec.transformation.sql`` failed to analyze or run in Spark."""


class ExpectationFailedError(MaterializeError):
    """An expectation with ``onViolation: Fail`` was violated; nothing was published.
    :attr:`report` (a :class:`~featurekube.materialize.report.MaterializationReport`)
    lists every violation."""

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report


class StoreNotFoundError(MaterializeError):
    """A store a run writes to does not exist (the offline store's bucket); checked
    before the run, so nothing was made."""


# -- the write path (featurekube.writer) ---------------------------------------------------


class WriteError(FeaturekubeError):
    """Rows could not be written to the online or the offline store."""


class RowError(WriteError, ValueError):
    """A row does not fit the view's schema: a missing key, an unknown column, a value of
    the wrong type, or (for a window replace) an event time outside the window."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        super().__init__(message)
        self.row = row
        """Position of the offending row in the input, from 0, when known."""
        self.column = column
        """The offending column, when known."""


class ItemTooLargeError(WriteError):
    """An entity's online item would exceed DynamoDB's item size limit (400 KB)."""

    def __init__(self, message: str, *, entity_key: str, size: int) -> None:
        super().__init__(message)
        self.entity_key = entity_key
        self.size = size


class OnlineWriteError(WriteError):
    """DynamoDB refused or failed requests after every retry (throttling, unprocessed
    items, a missing table, an error of the service)."""


class LeaseError(WriteError):
    """The online table's write lease could not be taken in time, or was lost."""


class OfflineWriteError(WriteError):
    """The Delta table could not be written (storage error, or concurrent commits kept
    conflicting)."""


# -- request-time transformations (featurekube.ondemand) -----------------------------------


class ExpressionError(FeaturekubeError):
    """A transformation's expression does not compile: bad syntax, an unknown name or
    function, or a type that does not fit. The FeatureService's spec must change."""


class RequestTransformationError(FeaturekubeError):
    """A transformation failed on the values of one request (or one training frame):
    an int64 overflow, say. Other requests are unaffected."""


# -- the feature server (featurekube_server) -----------------------------------------------


class ServingError(FeaturekubeError):
    """The feature server cannot start, or cannot serve a request."""


class ServingPlanError(ServingError):
    """The serving plan is missing, malformed or inconsistent; the message names the
    field. The operator renders the plan, so this is a bug there or a hand-edited file."""


class RequestError(ServingError):
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


class NotServedError(ServingError):
    """The request names a feature service or feature view that this server does not
    serve."""


class PushNotAllowedError(ServingError):
    """A push into a view of another namespace: a view shared with the service's
    namespace is read there, and written only by its own namespace's servers."""


class PushUnsupportedError(ServingError):
    """The server was started without a writer for pushed rows."""


class UnauthenticatedError(ServingError):
    """A call without a ServiceAccount token, or with one the Kubernetes API does not
    accept (expired, deleted, or for another audience)."""


class AccessDeniedError(ServingError):
    """A caller not listed in the FeatureService's ``spec.access`` for what it asked."""


class AuthUnavailableError(ServingError):
    """The Kubernetes API did not answer a TokenReview; retry with backoff."""


class StoreUnavailableError(FeaturekubeError):
    """The online store did not answer, refused the call, or lacks a table: raised by
    the feature server per request, and by ``featurekube materialize`` before a run."""


# -- the online client (featurekube.online.client) -----------------------------------------


class FeatureServerError(FeaturekubeError):
    """The feature server answered with an error; ``code`` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class InvalidRequestError(FeatureServerError):
    """The request names an unknown feature, service or key, or has a mistyped or
    missing column, or too many rows; the message says which."""


class ServerUnavailableError(FeatureServerError):
    """The server, or its online store, did not answer; retrying later may work."""


class DeadlineExceededError(FeatureServerError):
    """The request's deadline passed before the answer came."""
