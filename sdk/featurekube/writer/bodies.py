"""BatchWriteItem bodies encoded with :func:`json.dumps` instead of botocore's
serializer; pure (it only registers event handlers on a client).

botocore serializes a request by walking the service model for every attribute value
of every item, about half a millisecond of CPU for 25 items: a fifth of the client's
time per request, and the writer's requests are what bounds a bulk write's client CPU.
Items are already in DynamoDB's JSON shape (``{"S": ...}``, ``{"N": ...}``, ``{"B":
bytes}``...), so :func:`json.dumps` with blobs as base64, which is what the serializer
produces for them, gives the same body in a fraction of the time.

Only a client passed to :func:`install` does this, and only for requests whose
``RequestItems`` is a :class:`RequestItems`; any other request goes through botocore
as usual. Endpoint resolution, signing, retries and the parsing
of the answer stay botocore's: the handlers swap the body between them.

    client = boto3.client("dynamodb")
    install(client)
    client.batch_write_item(RequestItems=RequestItems({"table": [{"PutRequest": ...}]}))
"""

from __future__ import annotations

import base64
import json
from typing import Any

__all__ = ["RequestItems", "install"]

_STASH = "featurekube_request_items"
_OPERATION = "dynamodb.BatchWriteItem"


class RequestItems(dict[str, list[dict[str, Any]]]):
    """A BatchWriteItem's ``RequestItems`` (table -> write requests) that a client set up
    by :func:`install` encodes with :func:`json.dumps`. Only for such a client: botocore
    alone refuses a dict subclass (its endpoint rules take the tables' names with
    JMESPath, which knows only plain dicts)."""


def install(client: Any) -> bool:
    """Make ``client`` encode :class:`RequestItems` itself; False if it is not a botocore
    client (a test's fake), which must then be given plain dicts. Installing twice, or
    on a client that also sends other requests, is harmless."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is None or not hasattr(events, "register"):
        return False
    events.register(
        f"before-parameter-build.{_OPERATION}", _stash, unique_id="featurekube-bodies-stash"
    )
    events.register(f"before-call.{_OPERATION}", _encode, unique_id="featurekube-bodies-encode")
    return True


def _stash(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    # Before serializing: keep the items aside and leave botocore each table's first
    # request, for its endpoint rules (the tables' names) and any parameter
    # validation (a table's requests are never empty), to serialize at little cost.
    items = params.get("RequestItems")
    if isinstance(items, RequestItems):
        context[_STASH] = items
        params["RequestItems"] = {table: requests[:1] for table, requests in items.items()}


def _encode(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    # After serializing, before signing: the body with the items put back.
    items = context.pop(_STASH, None)
    if items is not None:
        params["body"] = json.dumps(
            {"RequestItems": items}, separators=(",", ":"), default=_blob
        ).encode()


def _blob(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not a DynamoDB attribute value")
