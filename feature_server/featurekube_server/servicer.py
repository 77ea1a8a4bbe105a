"""The gRPC layer of the feature server: decode, ask :mod:`.lookup`, read the store,
encode; errors mapped to gRPC status codes in one table, :data:`STATUS_CODES`.

The caller's deadline bounds the whole request, store calls included: what remains of
it when the request arrives (or ``default_timeout`` without one) is the budget, and
the store reads are cancelled when it runs out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import grpc
import grpc.aio

from featurekube import ondemand
from featurekube._proto.featurekube.serving.v1 import serving_pb2 as pb
from featurekube._proto.featurekube.serving.v1 import serving_pb2_grpc as pb_grpc
from featurekube.online import wire
from featurekube_server import errors, lookup, plan
from featurekube_server.metrics import ServerMetrics
from featurekube_server.stores import base

__all__ = ["STATUS_CODES", "FeatureServingServicer", "ServingSettings", "status_code"]

log = logging.getLogger("featurekube_server")

STATUS_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.RequestError, grpc.StatusCode.INVALID_ARGUMENT),
    # Deterministic for the request's values: retrying would fail the same way.
    (ondemand.TransformationError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotServedError, grpc.StatusCode.NOT_FOUND),
    (errors.StoreUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (errors.PushUnsupportedError, grpc.StatusCode.UNIMPLEMENTED),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
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
    ) -> None:
        """``clock`` gives the request time in microseconds since the epoch."""
        self._plan = serving
        self._planner = lookup.Planner(serving)
        self._store = store
        self._metrics = metrics
        self._settings = settings or ServingSettings()
        self._writer = writer
        self._clock = clock

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
            await self._fail(context, "GetOnlineFeatures", exc, started, rows)
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
            table = lookup.check_push(
                view,
                _columns(request.columns, "columns"),
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
            await self._fail(context, "Push", exc, started, rows)
        self._metrics.request("Push", "OK", time.perf_counter() - started, rows)
        return pb.PushResponse(row_count=written)

    def _budget(self, context: grpc.aio.ServicerContext[Any, Any]) -> float:
        remaining = context.time_remaining()
        return self._settings.default_timeout if remaining is None else max(remaining, 0.0)

    def _plan_lookup(self, request: pb.GetOnlineFeaturesRequest) -> lookup.Lookup:
        selection = request.WhichOneof("selection")
        return self._planner.plan(
            feature_service=request.feature_service if selection == "feature_service" else None,
            feature_names=list(request.features.names) if selection == "features" else None,
            entities=_columns(request.entities, "entities"),
            request_data=_columns(request.request_data, "request_data"),
            include_event_times=request.include_event_times,
            max_rows=self._settings.max_rows,
        )

    async def _read(self, checked: lookup.Lookup) -> dict[str, Mapping[str, base.Item]]:
        reads = [r for r in checked.reads if r.keys]
        if not reads:
            return {}
        started = time.perf_counter()
        found = await self._store.read(
            [base.TableRead(r.view.online_table, r.keys, r.attributes) for r in reads]
        )
        elapsed = time.perf_counter() - started
        for read in reads:
            self._metrics.store_read(read.view.name, elapsed)
        return found

    async def _fail(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        method: str,
        exc: Exception,
        started: float,
        rows: int,
    ) -> NoReturn:
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
        await context.abort(code, message)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover


def _columns(columns: Mapping[str, pb.Values], field: str) -> dict[str, lookup.Column]:
    decoded = {}
    for name, values in columns.items():
        try:
            decoded[name] = lookup.Column(wire.value_type(values), wire.decode(values))
        except ValueError as exc:
            raise errors.InvalidColumnError(f"{field}[{name}]: {exc}") from exc
    return decoded


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
