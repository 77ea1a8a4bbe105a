"""The DynamoDB online store, read with BatchGetItem through aiobotocore (network I/O).

A read packs the keys of all its tables into calls of at most 100 keys (BatchGetItem's
limit; one call may name several tables, each with its own ProjectionExpression, so
only the asked-for attributes come back), sends them all at once over a pool of
kept-alive connections, and retries unprocessed keys (throttling, the 16 MB response
limit) with a short backoff until done; the caller's timeout cancels it. A request
for one entity of three views is one call, not three: the store's cost per call, not
per key, is what bounds small lookups.

BatchGetItem's answers are read with ``json.loads`` rather than botocore's parser:
DynamoDB's JSON is already the online layout, and botocore's walk of every attribute
of every item through the service model took about half of the client's CPU time per
call (some 3 ms of 6 for 100 items of 10 attributes, here).

botocore's own retries are off: a store that does not answer should make the request
fail fast with UNAVAILABLE rather than stall it, so transport errors are retried here
once, and throttling until the caller's deadline. The endpoint, region and credentials
come from the standard AWS settings (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ...).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiobotocore.config
import aiobotocore.session
import botocore.exceptions

from featurekube.online import layout, windows
from featurekube_server import errors
from featurekube_server.stores import base

__all__ = ["BATCH_LIMIT", "DynamoDBSettings", "DynamoDBStore", "batch_requests"]

BATCH_LIMIT = 100
"""Keys per BatchGetItem call: DynamoDB's maximum."""

# Error codes DynamoDB answers when it sheds load: retry them, with backoff.
_THROTTLED = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


@dataclass(frozen=True)
class DynamoDBSettings:
    """How the store reaches DynamoDB."""

    region: str | None = None
    """AWS region; None: from the environment (AWS_REGION)."""
    endpoint_url: str | None = None
    """None: the standard endpoint, or AWS_ENDPOINT_URL (moto's server, locally)."""
    max_pool_connections: int = 64
    """Kept-alive HTTP connections; bounds the calls in flight at once."""
    connect_timeout: float = 1.0
    """Seconds to open a connection before the store counts as unreachable."""
    read_timeout: float = 10.0
    """Seconds to wait for an answer, a backstop behind the request's own deadline."""
    transport_attempts: int = 2
    """Tries of one call that fails in transport (refused, reset) before giving up."""


class DynamoDBStore:
    """A pooled, asynchronous DynamoDB client reading the online layout.

    Use as an async context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(self, settings: DynamoDBSettings | None = None) -> None:
        self.settings = settings or DynamoDBSettings()
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def start(self) -> None:
        """Open the client and its connection pool."""
        settings = self.settings
        config = aiobotocore.config.AioConfig(
            max_pool_connections=settings.max_pool_connections,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            retries={"total_max_attempts": 1},
        )
        session = aiobotocore.session.get_session()
        self._client = await self._stack.enter_async_context(
            session.create_client(
                "dynamodb",
                region_name=settings.region,
                endpoint_url=settings.endpoint_url,
                config=config,
            )
        )
        self._client.meta.events.register(
            "before-parse.dynamodb.BatchGetItem", _parse_batch_get_item
        )

    async def close(self) -> None:
        """Close the client and its connections."""
        await self._stack.aclose()
        self._client = None

    async def __aenter__(self) -> DynamoDBStore:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # --- OnlineStore

    async def read(self, reads: Sequence[base.TableRead]) -> dict[str, Mapping[str, base.Item]]:
        found: dict[str, dict[str, base.Item]] = {read.table: {} for read in reads}
        requests = batch_requests(reads)
        if not requests:
            return dict(found)
        try:
            # One failed call cancels the others: the request fails as a whole.
            async with asyncio.TaskGroup() as group:
                calls = [group.create_task(self._get(r)) for r in requests]
        except BaseExceptionGroup as failed:
            raise _first(failed) from None
        for call in calls:
            for table, items in call.result().items():
                into = found[table]
                for item in items:
                    into[item[layout.ENTITY_KEY]["S"]] = item
        return dict(found)

    async def check(self, tables: Sequence[str]) -> None:
        for table in tables:
            await self._call("describe_table", table, TableName=table)

    # --- calls

    async def _get(self, request: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """The items ``request`` (BatchGetItem's RequestItems) asks for, by table,
        retrying unprocessed keys until all are done."""
        items: dict[str, list[dict[str, Any]]] = {}
        backoff = 0.005
        while request:
            answer = await self._call("batch_get_item", ", ".join(request), RequestItems=request)
            for table, found in answer.get("Responses", {}).items():
                items.setdefault(table, []).extend(found)
            # Unprocessed keys come back with their table's projection: resend as is.
            request = answer.get("UnprocessedKeys") or {}
            if request:
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, 0.2)
        return items

    async def _call(self, operation: str, table: str, **arguments: Any) -> dict[str, Any]:
        if self._client is None:
            raise RuntimeError("DynamoDBStore is not started: use it as `async with` or start()")
        call = getattr(self._client, operation)
        transport_failures = 0
        backoff = 0.01
        while True:
            try:
                answer: dict[str, Any] = await call(**arguments)
                return answer
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in _THROTTLED:
                    await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                    backoff = min(backoff * 2, 0.5)
                    continue
                if code == "ResourceNotFoundException":
                    raise errors.StoreUnavailableError(
                        f"DynamoDB has no table {table}: the operator creates it with the "
                        "FeatureView; check the view's status (kubectl get featureview)"
                    ) from exc
                raise errors.StoreUnavailableError(
                    f"DynamoDB refused {operation} on {table}: {code}: "
                    f"{exc.response.get('Error', {}).get('Message', '')}"
                ) from exc
            except (botocore.exceptions.BotoCoreError, OSError) as exc:
                transport_failures += 1
                if transport_failures >= self.settings.transport_attempts:
                    endpoint = self._client.meta.endpoint_url
                    raise errors.StoreUnavailableError(
                        f"DynamoDB at {endpoint} did not answer {operation} on {table}: {exc}"
                    ) from exc
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first: BaseException = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def batch_requests(
    reads: Sequence[base.TableRead], limit: int = BATCH_LIMIT
) -> list[dict[str, Any]]:
    """BatchGetItem RequestItems for ``reads``: every key once, at most ``limit`` keys
    a call, keys of several tables sharing calls, each table with its projection.

    >>> [{t: len(r["Keys"]) for t, r in c.items()} for c in batch_requests(
    ...     [base.TableRead("a", ["k1", "k2", "k3"], ["x"]), base.TableRead("b", ["k1"], [])],
    ...     limit=2)]
    [{'a': 2}, {'a': 1, 'b': 1}]
    """
    requests: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    room = limit
    for read in reads:
        if not read.keys:
            continue
        projection: dict[str, Any] = {}
        if read.attributes is not None:
            names = {
                "#k": layout.ENTITY_KEY,
                "#e": layout.EVENT_TIME,
                "#l": layout.LATEST_EVENT_TIME,
                # The windows item's pending windows (featurekube.online.windows).
                "#p": windows.PENDING,
            }
            names.update({f"#a{i}": attribute for i, attribute in enumerate(read.attributes)})
            projection = {
                "ProjectionExpression": ", ".join(names),
                "ExpressionAttributeNames": names,
            }
        keys = read.keys
        while keys:
            if not room:
                requests.append(current)
                current, room = {}, limit
            part, keys = keys[:room], keys[room:]
            current[read.table] = {
                "Keys": [{layout.ENTITY_KEY: {"S": key}} for key in part],
                **projection,
            }
            room -= len(part)
    if current:
        requests.append(current)
    return requests


def _parse_batch_get_item(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """botocore's ``before-parse`` hook for BatchGetItem: a successful answer's body is
    decoded here with ``json.loads`` and handed over whole, and botocore is left an
    empty object to parse. The result is what botocore's parser gives (attribute
    values as DynamoDB's JSON has them, binary ones decoded from base64), in a
    fraction of the time. Error answers are left to botocore."""
    body = response_dict.get("body")
    if response_dict.get("status_code", 500) >= 300 or not isinstance(body, bytes):
        return
    answer: dict[str, Any] = json.loads(body)
    if b'"B"' in body:
        for items in answer.get("Responses", {}).values():
            for item in items:
                for value in item.values():
                    if "B" in value:
                        value["B"] = base64.b64decode(value["B"])
    customized_response_dict.update(answer)
    response_dict["body"] = b"{}"
