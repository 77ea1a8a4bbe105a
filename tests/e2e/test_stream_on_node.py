"""A streaming FeatureView on the real node: the operator of the run's one install of
the chart (``node_system`` in tests/conftest.py) runs the view's stream as a
SparkApplication whose driver and executor pods the Kubeflow Spark Operator starts on
the node; they read the platform's Kafka on the machine's end of the node's link (the
chart's ``kafka.bootstrapServers``, from :func:`featurekube._platform.chart.node_values`)
while this process produces events to it on loopback, and write DynamoDB and Delta on
moto.

The fault is a real one: the stream's driver pod deleted while events are still being
produced. The restart policy ``Always`` brings the stream back from its checkpoint on
S3, and the test checks the data: every event produced is one offline row (key and
event time, none twice), each driver's newest value is online, and the view's status
says the stream runs again. The figures printed are the time from apply to the first
online value, and from the deletion to the first online write of the new driver and to
every event offline.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import deltalake
import pytest

from conftest import IMAGE_BUILD_SECONDS
from featurekube._platform import chart, node_config
from featurekube.online import keys, layout, values
from featurekube_operator import streams
from node_system import System
from stream_support import produce, to_json
from support import eventually, stream_view

_eventually = functools.partial(eventually, interval=1.0)
NODE_START_SECONDS = 900.0
STREAM_SECONDS = 900.0
"""A stream's first value, or its recovery: the Spark Operator submits the driver, the
driver asks for its executor, both JVMs start on two busy cores."""
pytestmark = pytest.mark.timeout(IMAGE_BUILD_SECONDS + NODE_START_SECONDS + 3 * STREAM_SECONDS)

VIEW = "driver-fares-live"
KEY_TYPES = {"driver_id": "int64"}
DRIVERS = range(2001, 2021)
BEFORE_KILL = 3
"""Events per driver appended before the driver pod is deleted."""
DURING_KILL = 6
"""Events per driver appended while the pod is deleted and the stream comes back."""
PRODUCE_INTERVAL_SECONDS = 2.0
"""Between two rounds of one event per driver while the driver pod is deleted."""


@dataclasses.dataclass
class Stream:
    """The streaming view under test and every event produced to its topic."""

    system: System
    bootstrap: str
    topic: str
    sent: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    first_value_after: float = 0.0
    """Seconds from the view's apply to its first value online."""
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def produce_round(self) -> None:
        """One event per driver, event times now and increasing, fares numbering them."""
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        with self.lock:
            last = self.sent[-1]["event_timestamp"] if self.sent else now
            base = max(now, last + dt.timedelta(seconds=1))
            events = [
                {
                    "driver_id": driver,
                    "fare": float(len(self.sent) + i),
                    "event_timestamp": base + dt.timedelta(milliseconds=i),
                }
                for i, driver in enumerate(DRIVERS)
            ]
            self.sent += events
        produce(self.bootstrap, self.topic, [to_json(e) for e in events])

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = self.system.get("featureviews", VIEW).get("status") or {}
        return found

    def application(self) -> dict[str, Any]:
        found: dict[str, Any] = self.system.custom.get_namespaced_custom_object(
            "sparkoperator.k8s.io",
            "v1beta2",
            self.system.namespace,
            "sparkapplications",
            streams.application_name(VIEW, 1),
        )
        return found

    def pods(self, role: str) -> list[Any]:
        app = streams.application_name(VIEW, 1)
        return [
            p
            for p in self.system.pods(f"sparkoperator.k8s.io/app-name={app},spark-role={role}")
            if p.metadata.deletion_timestamp is None
        ]

    def online(self) -> dict[int, tuple[int, float]]:
        """Each driver's stored event time (microseconds) and fare, from DynamoDB."""
        table = self.status().get("onlineTable")
        if not table:
            return {}
        client = boto3.client("dynamodb")
        by_key = {keys.encode_entity_key(KEY_TYPES, {"driver_id": d}): d for d in DRIVERS}
        found = {}
        try:
            items = [
                item
                for page in client.get_paginator("scan").paginate(TableName=table)
                for item in page["Items"]
            ]
        except client.exceptions.ResourceNotFoundException:
            return {}  # not made yet
        for item in items:
            driver = by_key.get(item[layout.ENTITY_KEY]["S"])
            if driver is not None:
                fare = values.from_attribute("float64", item.get("fare"))
                found[driver] = (int(item[layout.EVENT_TIME]["N"]), float(fare))
        return found

    def offline(self) -> list[tuple[int, dt.datetime]]:
        """The offline table's rows, as (driver, event time), in any order."""
        uri = self.status().get("offlineUri")
        if not uri:
            return []
        try:
            rows = deltalake.DeltaTable(uri).to_pyarrow_table(
                columns=["driver_id", "event_timestamp"]
            )
        except deltalake.exceptions.TableNotFoundError:
            return []
        times = [_utc(t) for t in rows.column("event_timestamp").to_pylist()]
        return list(zip(rows.column("driver_id").to_pylist(), times, strict=True))

    def expected_offline(self) -> list[tuple[int, dt.datetime]]:
        with self.lock:
            return [(e["driver_id"], e["event_timestamp"]) for e in self.sent]

    def expected_online(self) -> dict[int, tuple[int, float]]:
        newest: dict[int, tuple[int, float]] = {}
        with self.lock:
            for e in self.sent:
                micros = int(e["event_timestamp"].timestamp() * 1_000_000)
                newest[e["driver_id"]] = (micros, e["fare"])
        return newest


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _streaming(status: dict[str, Any], after: dt.datetime | None = None) -> bool:
    """Whether the view's one stream is Running (and has reported since ``after``)."""
    entries = status.get("streams") or []
    condition = [c for c in status.get("conditions") or [] if c["type"] == "Streaming"]
    if len(entries) != 1 or entries[0].get("state") != "Running":
        return False
    if not condition or condition[0]["status"] != "True":
        return False
    if after is None:
        return True
    reported = entries[0].get("reportedAt") or ""
    return bool(reported) and dt.datetime.fromisoformat(reported.replace("Z", "+00:00")) > after


@pytest.fixture(scope="module")
def stream(node_system: System, node_kafka_bootstrap_servers: str) -> Iterator[Stream]:
    """The view applied on the shared install, its first events produced right after,
    up to its first value online; deleted (its stream with it) after the module."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    topic = f"fares-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": node_kafka_bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1)]).values():
        future.result(timeout=60)
    running = Stream(node_system, node_kafka_bootstrap_servers, topic)
    # No bootstrapServers: the operator's brokers, which the chart's node values set.
    body = stream_view(topic=topic, startingOffsets="earliest", triggerInterval="1s")
    namespace = node_system.namespace
    body["metadata"] = {"name": VIEW, "namespace": namespace}
    body["spec"]["source"]["batch"]["path"] = f"s3://featurekube/{namespace}/raw/fares/"
    # The stream starts at the schedule's last tick; with the view's first window
    # starting there too, there is no history to backfill: the stream writes it all.
    tick = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    body["spec"]["materialization"] = {
        "schedule": "@hourly",
        "startTime": tick.isoformat().replace("+00:00", "Z"),
    }
    applied = time.monotonic()
    node_system.apply(body)
    try:
        for _ in range(BEFORE_KILL):
            running.produce_round()
        _eventually(
            running.online,
            STREAM_SECONDS,
            f"the stream's first value online\n{chart.describe_pods(node_system.core, namespace)}",
        )
        running.first_value_after = time.monotonic() - applied
        print(f"streaming view applied -> first value online: {running.first_value_after:.1f} s")
        yield running
    finally:
        node_system.custom.delete_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureviews", VIEW
        )
        admin.delete_topics([topic])


def test_the_stream_runs_its_driver_and_executor_on_the_node_and_reads_kafka_there(
    stream: Stream,
) -> None:
    app = stream.application()
    arguments = app["spec"]["arguments"]
    servers = arguments[arguments.index("--bootstrap-servers") + 1]
    # The pods read Kafka on the machine's end of the node's link, not on loopback.
    assert servers.startswith(f"{node_config.HOST_IP}:"), arguments
    assert app["spec"]["restartPolicy"]["type"] == "Always"
    for role in ("driver", "executor"):
        pods = _eventually(
            lambda role=role: [p for p in stream.pods(role) if p.status.phase == "Running"],
            STREAM_SECONDS,
            f"the stream's {role} pod Running",
        )
        assert pods[0].spec.node_name == node_config.NODE_NAME, role
    _eventually(lambda: _streaming(stream.status()), STREAM_SECONDS, "the stream reports Running")
    assert stream.first_value_after > 0


def test_a_deleted_driver_pod_resumes_the_stream_without_losing_or_double_counting_events(
    stream: Stream,
) -> None:
    # Everything produced so far is in before the fault, so the fault is mid-stream.
    _eventually(
        lambda: len(stream.offline()) == len(stream.expected_offline()),
        STREAM_SECONDS,
        "the first events offline",
    )
    [old] = stream.pods("driver")
    producing = threading.Thread(target=_produce_during_kill, args=(stream,), daemon=True)
    producing.start()
    time.sleep(PRODUCE_INTERVAL_SECONDS)  # the stream is reading while the pod goes
    killed_at_wall = dt.datetime.now(dt.UTC)
    stream.system.kill_pod(old.metadata.name)
    killed = time.monotonic()

    def new_driver() -> Any:
        pods = [p for p in stream.pods("driver") if p.metadata.uid != old.metadata.uid]
        return pods[0] if pods else None

    _eventually(new_driver, STREAM_SECONDS, "the Spark Operator submits a new driver")
    # Written by the new driver: an online event time newer than any there now.
    seen = max((t for t, _ in stream.online().values()), default=0)
    _eventually(
        lambda: any(t > seen for t, _ in stream.online().values()),
        STREAM_SECONDS,
        "an online write of the new driver\n"
        + chart.describe_pods(stream.system.core, stream.system.namespace),
    )
    first_write = time.monotonic() - killed
    producing.join(timeout=STREAM_SECONDS)
    assert not producing.is_alive(), "the producer did not finish"
    want = stream.expected_offline()
    _eventually(
        lambda: len(stream.offline()) >= len(want),
        STREAM_SECONDS,
        f"all {len(want)} events offline",
    )
    all_offline = time.monotonic() - killed
    _eventually(
        lambda: stream.online() == stream.expected_online(),
        STREAM_SECONDS,
        "each driver's newest event online",
    )
    _eventually(
        lambda: _streaming(stream.status(), killed_at_wall),
        STREAM_SECONDS,
        "the view reports its stream Running again",
    )

    got = stream.offline()
    print(
        f"driver pod deleted -> first online write of the new driver: {first_write:.1f} s; "
        f"-> all {len(want)} events offline: {all_offline:.1f} s "
        f"({len(got)} offline rows, {len(set(got))} distinct, {len(want)} produced)"
    )
    attempts = (stream.application().get("status") or {}).get("executionAttempts")
    print(f"the stream's application: {attempts} execution attempts")
    # Nothing lost, nothing twice: exactly the events produced, each once.
    assert len(got) == len(set(got)), "an event counted twice offline"
    assert sorted(got) == sorted(want)
    assert stream.online() == stream.expected_online()


def _produce_during_kill(stream: Stream) -> None:
    for _ in range(DURING_KILL):
        stream.produce_round()
        time.sleep(PRODUCE_INTERVAL_SECONDS)
