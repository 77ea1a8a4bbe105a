"""Push is confined to the view's own namespace: a feature server of a namespace a push
view is shared with reads it, and refuses a push into it with PERMISSION_DENIED; the
real gRPC server on loopback, through the SDK's client, over the in-memory store."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from featurekube.online import client
from featurekube_server import plan, server
from featurekube_server.stores import memory

LIVE_SPEC: dict[str, Any] = {
    "owner": "dispatch-platform@rides.example.com",
    "entities": [{"name": "driver_id", "type": "int64"}],
    "source": {"push": {"timestampField": "event_timestamp"}},
    "features": [{"name": "current_zone_id", "type": "int64"}],
    "materialization": {"online": True, "offline": False},
}


def _view(namespace: str, name: str, table: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "onlineTable": table,
        "entities": [{"name": "driver_id", "type": "int64"}],
        "features": [
            {"name": f"{name}_zone", "source": "current_zone_id", "type": "int64"},
        ],
        "push": {"spec": LIVE_SPEC, "offlineUri": None},
    }


# A service of namespace fraud: its own push view, and one that dispatch shares with it.
PLAN = {
    "featureService": "fraud-model",
    "namespace": "fraud",
    "featureViews": [
        _view("dispatch", "location", "dispatch-location"),
        _view("fraud", "flags", "fraud-flags"),
    ],
}


@pytest_asyncio.fixture
async def target() -> AsyncIterator[tuple[str, memory.MemoryStore]]:
    store = memory.MemoryStore()
    serving = plan.parse_plan(PLAN)
    for table in ("dispatch-location", "fraud-flags"):
        store.create_table(table)
    # What dispatch's own server wrote into its view.
    location = serving.view("location", "dispatch")
    assert location is not None
    store.put(location, {"driver_id": 1}, {"current_zone_id": 3}, dt.datetime.now(dt.UTC))
    feature_server = server.FeatureServer(serving, store, writer=store, health_interval=0.1)
    port = await feature_server.start("127.0.0.1:0")
    try:
        await asyncio.wait_for(feature_server.ready.wait(), 30)
        yield f"127.0.0.1:{port}", store
    finally:
        await feature_server.stop(0)


async def _call(address: str, method: str, *args: Any, **kwargs: Any) -> Any:
    def run() -> Any:
        with client.OnlineClient(address) as online:
            return getattr(online, method)(*args, **kwargs)

    return await asyncio.to_thread(run)


ROWS = {
    "driver_id": [1],
    "event_timestamp": [dt.datetime.now(dt.UTC)],
    "current_zone_id": [7],
}


@pytest.mark.asyncio
async def test_a_push_into_a_shared_view_is_denied_and_writes_nothing(
    target: tuple[str, memory.MemoryStore],
) -> None:
    address, store = target

    with pytest.raises(client.FeatureServerError) as denied:
        await _call(address, "push", "location", ROWS, namespace="dispatch")

    assert denied.value.code == "PERMISSION_DENIED"
    assert "feature view dispatch/location is shared with namespace fraud for reading only" in str(
        denied.value
    )
    assert "push to a feature server of namespace dispatch" in str(denied.value)
    (item,) = store.tables["dispatch-location"].values()
    assert item["current_zone_id"] == {"N": "3"}, "the owner's value stays"


@pytest.mark.asyncio
async def test_the_same_server_reads_the_shared_view_and_takes_pushes_into_its_own(
    target: tuple[str, memory.MemoryStore],
) -> None:
    address, _ = target

    assert await _call(address, "push", "flags", ROWS) == 1
    result = await _call(
        address,
        "get_online_features",
        columns={"driver_id": [1]},
        features=["location_zone", "flags_zone"],
    )

    assert result.values == {"location_zone": [3], "flags_zone": [7]}
