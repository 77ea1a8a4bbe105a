"""The gRPC layer of the feature server: decode, ask :mod:`.lookup`, read the store,
encode; errors mapped to gRPC status codes in one table, :data:`STATUS_CODES`.

The caller's deadline bounds the whole request, store calls included: what remains of
it when the request arrives (or ``default_timeout`` without one) is the budget, and
the store reads are cancelled when it runs out.

A request's memory is bounded before it is decoded: the handlers of
:meth:`FeatureServingServicer.method_handlers` take requests as bytes, refuse those
over ``max_message_bytes`` (by default what the plan can need, :mod:`.limits`), admit
the rest through a gate on the bytes in flight (:mod:`.admission`), and only then
parse them; the columns' lengths and arrays' sizes are checked before their values
become Python objects, and strings as they do.
Refusals of size and load answer RESOURCE_EXHAUSTED, saying what to do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf import message as protobuf

from featurekube import ondemand
from featurekube._proto.featurekube.serving.v1 import serving_pb2 as pb
from featurekube._proto.featurekube.serving.v1 import serving_pb2_grpc as pb_grpc
from featurekube.online import wire
from featurekube_server import admission, auth, errors, limits, lookup, plan
from featurekube_server.metrics import ServerMetrics
from featurekube_server.stores import base

__all__ = ["STATUS_CODES", "FeatureServingServicer", "ServingSettings", "status_code"]

log = logging.getLogger("featurekube_server")

_Request = TypeVar("_Request", pb.GetOnlineFeaturesRequest, pb.PushRequest)
_Response = TypeVar("_Response", pb.GetOnlineFeaturesResponse, pb.PushResponse)

STATUS_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.RequestError, grpc.StatusCode.INVALID_ARGUMENT),
    # Deterministic for the request's values: retrying would fail the same way.
    (ondemand.TransformationError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotServedError, grpc.StatusCode.NOT_FOUND),
    (errors.PushNotAllowedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.AccessDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.AuthUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (errors.StoreUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (errors.PushUnsupportedError, grpc.StatusCode.UNIMPLEMENTED),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (protobuf.DecodeError, grpc.StatusCode.INVALID_ARGUMENT),
)
"""Error class -> the gRPC status code answered; the first match wins, anything else
is INTERNAL (and logged with its traceback)."""


def status_code(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code for ``exc``, from :data:`STATUS_CODES`."""
    for kind, code in STATUS_CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


@dataclasses.dataclass(frozen=True)
class ServingSettings:
    """Limits of the servicer."""

    max_rows: int = 10_000
    """Entity rows (or pushed rows) one request may carry."""
    default_timeout: float = 10.0
    """Seconds a request may take when its caller set no deadline."""
    max_push_skew: float = 300.0
    """Seconds a pushed event time may lie ahead of the server's clock: a later one
    would hold its value online against every real event until that time."""
    max_string_bytes: int = 1024
    """Bytes (UTF-8) of one string value in a request or push: join keys, request
    fields and pushed features. Ids, codes and names are far shorter; DynamoDB takes
    keys of at most 2 KiB."""
    max_array_length: int = 2048
    """Values of one float64 array in a request or push (embeddings of up to 2,048
    dimensions)."""
    max_message_bytes: int | None = None
    """Largest request, in bytes; None: what the plan's largest request of ``max_rows``
    rows with values at their limits takes, plus a quarter, between 1 and 16 MiB
    (:func:`featurekube_server.limits.derive_max_message_bytes`)."""
    max_in_flight_bytes: int = 16 * 1024 * 1024
    """Bytes of requests decoded and answered at once; others wait their turn (within
    their deadline). Decoding takes 5 to 7 bytes per byte on the wire: 16 MiB keeps
    requests being answered within ~120 MiB."""
    max_waiting_bytes: int = 48 * 1024 * 1024
    """Bytes of requests waiting their turn; a request that would go over it is
    refused with RESOURCE_EXHAUSTED. A waiting request holds about twice its size.
    With the defaults, four requests of the largest size are answered in turn within
    the default pod memory limit of 512 MiB, beside the server's own ~190 MiB."""


_STATUS_NAMES = {status: status.name for status in lookup.Status}


def _now_micros() -> int:
    return time.time_ns() // 1000


class FeatureServingServicer(pb_grpc.FeatureServingServicer):
    """``featurekube.serving.v1.FeatureServing`` over one serving plan and store."""

    def __init__(
        self,
        serving: plan.ServingPlan,
        store: base.OnlineStore,
        metrics: ServerMetrics,
        settings: ServingSettings | None = None,
        writer: base.PushWriter | None = None,
        clock: Callable[[], int] = _now_micros,
        authenticator: auth.Authenticator | None = None,
    ) -> None:
        """``clock`` gives the request time in microseconds since the epoch;
        ``authenticator``: who calls, checked against the plan's access lists before a
        request is admitted (None: anyone may call, for local development only)."""
        self._plan = serving
        self._authenticator = authenticator
        self._planner = lookup.Planner(serving)
        self._store = store
        self._metrics = metrics
        self._settings = settings or ServingSettings()
        self._writer = writer
        self._clock = clock
        self.request_sizes = limits.estimate_request_bytes(
            serving,
            max_rows=self._settings.max_rows,
            max_string_bytes=self._settings.max_string_bytes,
            max_array_length=self._settings.max_array_length,
        )
        self.max_message_bytes = self._settings.max_message_bytes or (
            limits.derive_max_message_bytes(self.request_sizes)
        )
        """The largest request taken, in bytes."""
        self.gate = admission.ByteGate(
            self._settings.max_in_flight_bytes, self._settings.max_waiting_bytes
        )

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        """Method name -> handler: the service's methods taking their requests as
        bytes, so that each is sized and admitted before it is parsed (register them
        in place of the generated ``add_FeatureServingServicer_to_server``)."""
        return {
            "GetOnlineFeatures": grpc.unary_unary_rpc_method_handler(
                self._get_online_features_bytes,
                response_serializer=pb.GetOnlineFeaturesResponse.SerializeToString,
            ),
            "Push": grpc.unary_unary_rpc_method_handler(
                self._push_bytes, response_serializer=pb.PushResponse.SerializeToString
            ),
        }

    async def _get_online_features_bytes(
        self, body: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetOnlineFeaturesResponse:
        return await self._sized(
            "GetOnlineFeatures",
            "read",
            pb.GetOnlineFeaturesRequest,
            self.GetOnlineFeatures,
            pb.GetOnlineFeaturesResponse,
            body,
            context,
        )

    async def _push_bytes(
        self, body: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PushResponse:
        return await self._sized(
            "Push", "push", pb.PushRequest, self.Push, pb.PushResponse, body, context
        )

    async def _sized(
        self,
        method: str,
        action: str,
        kind: type[_Request],
        answer: Callable[[_Request, grpc.aio.ServicerContext[Any, Any]], Awaitable[_Response]],
        empty: type[_Response],
        body: bytes,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> _Response:
        """Authorize, admit, parse and answer the request in ``body``; an empty
        response when refused (said in ``context``)."""
        if not await self._allowed(method, action, context):
            return empty()
        if not await self._admit(method, len(body), context):
            return empty()
        try:
            request = self._parse(method, kind, body, context)
            return empty() if request is None else await answer(request, context)
        finally:
            self.gate.release(len(body))

    async def _allowed(
        self, method: str, action: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bool:
        """Whether the caller may ``action`` (read or push), before anything of the
        request is read; a refusal is said in ``context``."""
        if self._authenticator is None:
            return True
        started = time.perf_counter()
        try:
            caller = await self._authenticator.authenticate(context.invocation_metadata())
            subjects = self._plan.pushers if action == "push" else self._plan.readers
            auth.authorize(
                caller, subjects, action, f"{self._plan.namespace}/{self._plan.feature_service}"
            )
        except errors.ServingError as exc:
            self._fail(context, method, exc, started, 0)
            return False
        return True

    async def _admit(
        self, method: str, size: int, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bool:
        """Admit a request of ``size`` bytes through the gate, waiting its turn within
        its deadline, or refuse it (too large, or too many bytes in flight and waiting)
        and say so in ``context``. Release what was admitted."""
        started = time.perf_counter()
        if size > self.max_message_bytes:
            self._refuse(
                context,
                method,
                started,
                f"the request has {size} bytes; this server takes at most "
                f"{self.max_message_bytes} (what {self._settings.max_rows} rows of its plan "
                f"need, with strings of up to {self._settings.max_string_bytes} bytes and "
                f"arrays of up to {self._settings.max_array_length} values): send fewer rows "
                "per request",
            )
            return False
        try:
            async with asyncio.timeout(self._budget(context)):
                admitted = await self.gate.acquire(size)
        except TimeoutError:
            admitted = False
        if not admitted:
            self._refuse(
                context,
                method,
                started,
                f"the server is busy: {self.gate.in_flight} bytes of requests are being "
                f"answered and {self.gate.waiting} wait their turn (at most "
                f"{self.gate.capacity} and {self.gate.queue_capacity}); retry with backoff, "
                "spread requests over more replicas, or send fewer rows per request",
            )
        return admitted

    def _parse(
        self,
        method: str,
        kind: type[_Request],
        body: bytes,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> _Request | None:
        """The request in ``body``; None when it does not parse (said in ``context``)."""
        started = time.perf_counter()
        try:
            return kind.FromString(body)
        except protobuf.DecodeError as exc:
            self._fail(context, method, exc, started, 0)
            return None

    def _refuse(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        method: str,
        started: float,
        message: str,
    ) -> None:
        code = grpc.StatusCode.RESOURCE_EXHAUSTED
        log.info(
            "request refused",
            extra={"fields": {"method": method, "code": code.name, "error": message}},
        )
        self._metrics.request(method, code.name, time.perf_counter() - started, 0)
        context.set_code(code)
        context.set_details(message)

    async def GetOnlineFeatures(
        self, request: pb.GetOnlineFeaturesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetOnlineFeaturesResponse:
        started = time.perf_counter()
        now = self._clock()
        rows = 0
        try:
            async with asyncio.timeout(self._budget(context)):
                checked = self._plan_lookup(request)
                rows = checked.rows
                items = await self._read(checked)
            result = lookup.assemble(checked, items, now)
            response = _encode(result)
        except asyncio.CancelledError:
            # The caller went away or its deadline passed first; gRPC answers it.
            self._metrics.request(
                "GetOnlineFeatures", "CANCELLED", time.perf_counter() - started, rows
            )
            raise
        except Exception as exc:  # every error becomes a status code
            self._fail(context, "GetOnlineFeatures", exc, started, rows)
            return pb.GetOnlineFeaturesResponse()
        self._metrics.request("GetOnlineFeatures", "OK", time.perf_counter() - started, rows)
        self._metrics.values({_STATUS_NAMES[s]: n for s, n in result.status_counts.items()})
        return response

    async def Push(
        self, request: pb.PushRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PushResponse:
        started = time.perf_counter()
        rows = 0
        try:
            view = self._plan.view(request.feature_view, request.namespace or None)
            if view is None:
                served = ", ".join(f"{v.namespace}/{v.name}" for v in self._plan.feature_views)
                raise errors.NotServedError(
                    f"this server does not serve feature view {request.namespace or ''}"
                    f"{'/' if request.namespace else ''}{request.feature_view}; it serves {served}"
                )
            if view.namespace != self._plan.namespace:
                # Sharing grants reading: only the owner's servers write a view.
                raise errors.PushNotAllowedError(
                    f"feature view {view.namespace}/{view.name} is shared with namespace "
                    f"{self._plan.namespace} for reading only: push to a feature server of "
                    f"namespace {view.namespace}, which owns the view"
                )
            table = lookup.check_push(
                view,
                _columns(request.columns, "columns", self._settings),
                self._settings.max_rows,
                latest_micros=self._clock() + int(self._settings.max_push_skew * 1_000_000),
            )
            rows = table.num_rows
            if self._writer is None:
                raise errors.PushUnsupportedError(
                    "this feature server was started without a writer for pushed rows"
                )
            async with asyncio.timeout(self._budget(context)):
                written = await self._writer.push(view, table)
        except Exception as exc:  # every error becomes a status code
            self._fail(context, "Push", exc, started, rows)
            return pb.PushResponse()
        self._metrics.request("Push", "OK", time.perf_counter() - started, rows)
        return pb.PushResponse(row_count=written)

    def _budget(self, context: grpc.aio.ServicerContext[Any, Any]) -> float:
        remaining = context.time_remaining()
        return self._settings.default_timeout if remaining is None else max(remaining, 0.0)

    def _plan_lookup(self, request: pb.GetOnlineFeaturesRequest) -> lookup.Lookup:
        selection = request.WhichOneof("selection")
        # Every column checked before any is decoded.
        _check_columns(request.entities, "entities", self._settings)
        _check_columns(request.request_data, "request_data", self._settings)
        return self._planner.plan(
            feature_service=request.feature_service if selection == "feature_service" else None,
            feature_names=list(request.features.names) if selection == "features" else None,
            entities=_decode_columns(request.entities, "entities", self._settings),
            request_data=_decode_columns(request.request_data, "request_data", self._settings),
            include_event_times=request.include_event_times,
            max_rows=self._settings.max_rows,
        )

    async def _read(self, checked: lookup.Lookup) -> dict[str, Mapping[str, base.Item]]:
        reads = [r for r in checked.reads if r.keys]
        if not reads:
            return {}
        started = time.perf_counter()
        found = await self._store.read([lookup.table_read(r) for r in reads])
        elapsed = time.perf_counter() - started
        for read in reads:
            self._metrics.store_read(read.view.name, elapsed)
        return found

    def _fail(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        method: str,
        exc: Exception,
        started: float,
        rows: int,
    ) -> None:
        """Answer ``exc`` as its status code: set in ``context``, with an empty
        response. Not ``context.abort``: its exception would keep this one, and so the
        frames that raised it and the request's decoded values, in a reference cycle
        that only the garbage collector's rare full passes free."""
        code = status_code(exc)
        if isinstance(exc, TimeoutError):
            message = (
                f"the request's deadline passed after {time.perf_counter() - started:.3f} s, "
                "before the online store answered; allow more time or ask for fewer rows"
            )
        else:
            message = str(exc)
        fields = {"method": method, "code": code.name, "rows": rows, "error": message}
        if code is grpc.StatusCode.INTERNAL:
            log.error("request failed unexpectedly", exc_info=exc, extra={"fields": fields})
            message = f"internal error: {type(exc).__name__}: {exc}"
        else:
            log.info("request refused", extra={"fields": fields})
        self._metrics.request(method, code.name, time.perf_counter() - started, rows)
        context.set_code(code)
        context.set_details(message)


def _columns(
    columns: Mapping[str, pb.Values], field: str, settings: ServingSettings
) -> dict[str, lookup.Column]:
    """The request's columns as Python values, checked first (:func:`_check_columns`),
    strings as they are decoded."""
    _check_columns(columns, field, settings)
    return _decode_columns(columns, field, settings)


def _check_columns(columns: Mapping[str, pb.Values], field: str, settings: ServingSettings) -> None:
    """Check the columns' lengths and their arrays' sizes on the parsed message, before
    any value becomes a Python object: they take several times the memory on the wire."""
    for name, values in columns.items():
        count = max(wire.row_count(values), len(values.nulls))
        if count > settings.max_rows:
            what, split = (
                ("rows in one push", "the push")
                if field == "columns"
                else ("entity rows in one request", "the request")
            )
            raise errors.TooManyRowsError(
                f"{count} {what}; this server takes at most {settings.max_rows}: split "
                f"{split} ({field}[{name}] has {count} values)"
            )
        if values.WhichOneof("kind") == "float64_array_values":
            for row, array in enumerate(values.float64_array_values.arrays):
                if len(array.values) > settings.max_array_length:
                    raise errors.InvalidColumnError(
                        f"{field}[{name}], row {row}: an array of {len(array.values)} values; "
                        f"this server takes arrays of at most {settings.max_array_length} "
                        "values (its --max-array-length)"
                    )


def _decode_columns(
    columns: Mapping[str, pb.Values], field: str, settings: ServingSettings
) -> dict[str, lookup.Column]:
    decoded = {}
    for name, values in columns.items():
        try:
            decoded[name] = lookup.Column(wire.value_type(values), wire.decode(values))
        except ValueError as exc:
            raise errors.InvalidColumnError(f"{field}[{name}]: {exc}") from exc
        if decoded[name].type == "string":
            _check_strings(decoded[name].values, f"{field}[{name}]", settings.max_string_bytes)
    return decoded


def _check_strings(strings: list[str | None], where: str, max_bytes: int) -> None:
    # A character takes 1 to 4 bytes in UTF-8: a string of at most a quarter of the
    # limit in characters is within it, whatever its characters, and needs no encoding.
    within = max_bytes // 4
    if max((len(s) for s in strings if s is not None), default=0) <= within:
        return
    for row, value in enumerate(strings):
        if value is not None and len(value) > within and len(value.encode()) > max_bytes:
            raise errors.InvalidColumnError(
                f"{where}, row {row}: a string of {len(value.encode())} bytes; this server "
                f"takes strings of at most {max_bytes} bytes (its --max-string-bytes)"
            )


def _encode(result: lookup.LookupResult) -> pb.GetOnlineFeaturesResponse:
    response = pb.GetOnlineFeaturesResponse(row_count=result.rows)
    add = response.features.add
    # The features of one view share their statuses and event times: encode them once
    # per view and merge the bytes into each of its columns, rather than converting
    # the same lists value by value for every column.
    shared: dict[tuple[int, int], bytes] = {}
    for feature in result.features:
        column = add(name=feature.name)
        wire.fill_values(column.values, feature.type, feature.values)
        lists = (id(feature.statuses), id(feature.event_times))
        tail = shared.get(lists)
        if tail is None:
            template = pb.FeatureColumn(statuses=feature.statuses)  # type: ignore[arg-type]
            if feature.event_times is not None:
                template.event_times.extend(feature.event_times)
            tail = shared[lists] = template.SerializeToString()
        column.MergeFromString(tail)
    return response
