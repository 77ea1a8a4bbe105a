"""The SDK's client of the feature server: feature vectors over gRPC (network I/O).

    from featurekube.online.client import OnlineClient

    with OnlineClient("eta-model.rides.svc:50051") as client:
        result = client.get_online_features(
            [{"driver_id": 1001}, {"driver_id": 1002}],
            feature_service="eta-model",
            request_data={"trip_distance_km": [5.2, 3.1], "pickup_hour": [8, 8]},
        )
    result.to_dict()   # {"driver_id": [1001, 1002], "trips_30m": [3, None], ...}
    result.statuses["trips_30m"]   # [FeatureStatus.PRESENT, FeatureStatus.NOT_FOUND]

In a cluster, feature servers take TLS and a ServiceAccount token: pass the CA that
signed the server's certificate and the token file (in a pod, the ServiceAccount token
Kubernetes projects is sent by default when TLS is on)::

    OnlineClient("eta-model.rides.svc:50051", ca_file="/etc/featurekube/ca/ca.crt")

Importing this module loads grpc (the ``server`` extra); ``import featurekube`` does
not. Errors the server answers with become :class:`FeatureServerError` subclasses::

    FeaturekubeError
    └── FeatureServerError        the server answered with an error (``code`` names it)
        ├── InvalidRequestError       INVALID_ARGUMENT or NOT_FOUND: fix the request
        ├── ServerUnavailableError    UNAVAILABLE: the server or its store is down; retry
        └── DeadlineExceededError     DEADLINE_EXCEEDED: allow more time or ask for less
"""

from __future__ import annotations

import datetime as dt
import enum
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from featurekube import errors

try:
    import grpc
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise errors.MissingDependencyError(
        "the online client needs grpcio; it comes with featurekube's 'server' extra: "
        "pip install 'featurekube[server]'"
    ) from exc

from featurekube._proto.featurekube.serving.v1 import serving_pb2 as pb
from featurekube._proto.featurekube.serving.v1 import serving_pb2_grpc as pb_grpc
from featurekube.online import wire

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "DeadlineExceededError",
    "FeatureServerError",
    "FeatureStatus",
    "InvalidRequestError",
    "OnlineClient",
    "OnlineFeatures",
    "ServerUnavailableError",
]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
"""Where Kubernetes projects a pod's ServiceAccount token."""
TOKEN_FILE_ENV = "FEATUREKUBE_TOKEN_FILE"
"""Environment variable naming a token file, read when none is passed."""


FeatureServerError = errors.FeatureServerError
InvalidRequestError = errors.InvalidRequestError
ServerUnavailableError = errors.ServerUnavailableError
DeadlineExceededError = errors.DeadlineExceededError


_ERRORS: Mapping[str, type[FeatureServerError]] = {
    "INVALID_ARGUMENT": InvalidRequestError,
    "NOT_FOUND": InvalidRequestError,
    "UNAVAILABLE": ServerUnavailableError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
}


class FeatureStatus(enum.IntEnum):
    """A value's status, as the server answers it."""

    PRESENT = pb.PRESENT
    """The stored value, within its view's TTL (it may be null)."""
    NOT_FOUND = pb.NOT_FOUND
    """Nothing stored for the entity; the value is null."""
    OUTSIDE_MAX_AGE = pb.OUTSIDE_MAX_AGE
    """The stored value is older than its view's TTL; the value is null."""


@dataclass(frozen=True)
class OnlineFeatures:
    """Feature values of entity rows, column-wise, in the request's row order."""

    entities: dict[str, list[Any]]
    """The request's join key columns."""
    values: dict[str, list[Any]]
    """Feature name -> one value per row (None for null)."""
    types: dict[str, str]
    """Feature name -> its value type."""
    statuses: dict[str, list[FeatureStatus]]
    """Feature name -> one status per row."""
    event_times: dict[str, list[dt.datetime | None]] | None
    """Feature name -> the event time of each value (None where nothing was found);
    None unless asked for with ``include_event_times``."""

    @property
    def feature_names(self) -> list[str]:
        return list(self.values)

    def __len__(self) -> int:
        for column in (*self.entities.values(), *self.values.values()):
            return len(column)
        return 0

    def to_dict(self, *, statuses: bool = False, event_times: bool = False) -> dict[str, list[Any]]:
        """Join keys, then features; with ``statuses`` (and ``event_times``) a
        ``<feature>__status`` (``<feature>__event_time``) column after each feature."""
        result = dict(self.entities)
        for name, column in self.values.items():
            result[name] = column
            if statuses:
                result[f"{name}__status"] = [s.name for s in self.statuses[name]]
            if event_times and self.event_times is not None:
                result[f"{name}__event_time"] = self.event_times[name]
        return result

    def to_arrow(self, *, statuses: bool = False, event_times: bool = False) -> pa.Table:
        """The same columns as :meth:`to_dict`, typed: features by their value types,
        statuses as strings, event times as timestamp[us, UTC]."""
        import pyarrow as pa

        from featurekube import ondemand

        arrays: dict[str, pa.Array] = {}
        for name, column in self.entities.items():
            arrays[name] = pa.array(column)
        for name, values in self.values.items():
            arrays[name] = pa.array(values, type=ondemand.ARROW_TYPES[self.types[name]])
            if statuses:
                arrays[f"{name}__status"] = pa.array([s.name for s in self.statuses[name]])
            if event_times and self.event_times is not None:
                arrays[f"{name}__event_time"] = pa.array(
                    self.event_times[name], type=ondemand.ARROW_TYPES["timestamp"]
                )
        return pa.table(arrays)


class OnlineClient:
    """A client of one feature server (one FeatureService), over one gRPC channel.

    ``target`` is ``host:port`` (a FeatureService's ``status.endpoint``); ``timeout``
    is the default deadline of each call, in seconds. Close it, or use it in a
    ``with`` block.

    TLS: ``ca_file`` is the PEM CA the server's certificate is checked against
    (``tls=True`` without it: the system's CAs; ``tls_server_name``: the name to check
    when ``target`` is an address); ``credentials`` replaces all of that. Without any,
    the channel is plaintext (a server started for local development).

    Token: ``token``, or ``token_file`` (read again when it changes: Kubernetes
    rotates projected tokens), or else ``$FEATUREKUBE_TOKEN_FILE``, or else, over TLS,
    the pod's ServiceAccount token when there is one. Sent as
    ``authorization: Bearer <token>`` with every call.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = 5.0,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = 64 * 1024 * 1024,
        ca_file: str | Path | None = None,
        tls: bool | None = None,
        tls_server_name: str | None = None,
        token: str | None = None,
        token_file: str | Path | None = None,
    ) -> None:
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        secure = credentials is not None or ca_file is not None or bool(tls)
        if credentials is None and secure:
            try:
                roots = Path(ca_file).read_bytes() if ca_file is not None else None
            except OSError as exc:
                raise errors.FeaturekubeError(
                    f"cannot read the CA file {ca_file}: {exc.strerror or exc}"
                ) from exc
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._token = _TokenSource(token, token_file, secure)
        self._stub = pb_grpc.FeatureServingStub(self._channel)
        self.target = target
        self.timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> OnlineClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def get_online_features(
        self,
        entity_rows: Sequence[Mapping[str, Any]] | None = None,
        *,
        columns: Mapping[str, Sequence[Any]] | None = None,
        features: Sequence[str] | None = None,
        feature_service: str | None = None,
        request_data: Mapping[str, Any] | None = None,
        include_event_times: bool = False,
        timeout: float | None = None,
    ) -> OnlineFeatures:
        """The features of entities given as ``entity_rows`` (one mapping of join
        keys per row) or as ``columns`` (join key -> values).

        Name either some ``features`` or the ``feature_service`` (neither: all of the
        server's). ``request_data`` maps request fields to one value per row, or to a
        single value for every row. ``timeout`` overrides the client's deadline.
        """
        keys = _entity_columns(entity_rows, columns)
        rows = len(next(iter(keys.values()))) if keys else 0
        request = pb.GetOnlineFeaturesRequest(include_event_times=include_event_times)
        if features is not None and feature_service is not None:
            raise ValueError("name features or a feature_service, not both")
        if features is not None:
            request.features.names.extend(features)
        elif feature_service is not None:
            request.feature_service = feature_service
        for name, values in keys.items():
            _fill(request.entities[name], name, values)
        for name, value in (request_data or {}).items():
            column = list(value) if isinstance(value, list | tuple) else [value] * rows
            _fill(request.request_data[name], name, column)
        response = self._call(self._stub.GetOnlineFeatures, request, timeout)
        return _result(keys, response, include_event_times)

    def push(
        self,
        feature_view: str,
        rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
        *,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> int:
        """Push rows (mappings, or columns) to a push-source view the server serves:
        join keys, the event timestamp field and every feature. Returns the rows
        written."""
        columns = _entity_columns(None, rows) if isinstance(rows, Mapping) else _rows(rows)
        request = pb.PushRequest(feature_view=feature_view, namespace=namespace or "")
        for name, values in columns.items():
            _fill(request.columns[name], name, values)
        response: pb.PushResponse = self._call(self._stub.Push, request, timeout)
        return response.row_count

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        token = self._token.read()
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        try:
            return method(
                request,
                timeout=timeout if timeout is not None else self.timeout,
                metadata=metadata,
            )
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            details: str = exc.details() or ""
            error = _ERRORS.get(code.name, FeatureServerError)
            raise error(code.name, f"{details} (from the feature server at {self.target})") from exc


class _TokenSource:
    """The token sent with each call: given, or read from a file when it changes."""

    def __init__(self, token: str | None, token_file: str | Path | None, secure: bool) -> None:
        self._token = token
        self._path: Path | None = None
        if token is None:
            named = token_file or os.environ.get(TOKEN_FILE_ENV)
            if named:
                self._path = Path(named)
            elif secure and SERVICE_ACCOUNT_TOKEN.is_file():
                # Only over TLS: a pod's own token is never sent in the clear unasked.
                self._path = SERVICE_ACCOUNT_TOKEN
        self._stamp: tuple[int, int] | None = None

    def read(self) -> str | None:
        if self._path is None:
            return self._token
        try:
            stat = self._path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                self._token = self._path.read_text().strip()
                self._stamp = stamp
        except OSError as exc:
            raise errors.FeaturekubeError(
                f"cannot read the token file {self._path}: {exc.strerror or exc}"
            ) from exc
        return self._token


def _rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    if not rows:
        return {}
    names = list(rows[0])
    for index, row in enumerate(rows):
        if set(row) != set(names):
            raise ValueError(
                f"row {index} has keys {sorted(row)}, but row 0 has {sorted(names)}: every "
                "row needs the same keys"
            )
    return {name: [row[name] for row in rows] for name in names}


def _entity_columns(
    entity_rows: Sequence[Mapping[str, Any]] | None, columns: Mapping[str, Sequence[Any]] | None
) -> dict[str, list[Any]]:
    if (entity_rows is None) == (columns is None):
        raise ValueError("give the entities either as entity_rows or as columns")
    if entity_rows is not None:
        return _rows(entity_rows)
    assert columns is not None
    return {name: list(values) for name, values in columns.items()}


def _fill(message: pb.Values, name: str, values: Sequence[Any]) -> None:
    value_type = wire.infer_type(values)
    if value_type is None:
        message.nulls.extend([True] * len(values))
        return
    try:
        wire.fill_values(message, value_type, values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {name}: {exc}; all its values must be {value_type}") from exc


def _result(
    keys: dict[str, list[Any]], response: pb.GetOnlineFeaturesResponse, with_times: bool
) -> OnlineFeatures:
    values: dict[str, list[Any]] = {}
    types: dict[str, str] = {}
    statuses: dict[str, list[FeatureStatus]] = {}
    times: dict[str, list[dt.datetime | None]] = {}
    for column in response.features:
        values[column.name] = wire.decode(column.values)
        types[column.name] = wire.value_type(column.values) or "float64"
        statuses[column.name] = [FeatureStatus(s) for s in column.statuses]
        if with_times:
            times[column.name] = [
                None if status == pb.NOT_FOUND else _EPOCH + dt.timedelta(microseconds=micros)
                for micros, status in zip(column.event_times, column.statuses, strict=True)
            ]
    return OnlineFeatures(keys, values, types, statuses, times if with_times else None)
