"""Streaming ingestion, Kafka to the online store: event-to-online latency (p50, p99)
at steady rates and the highest rate sustained with lag bounded, featurekube's stream
job side by side with Feast's ``SparkKafkaProcessor`` (the baseline of the ratios).

Both run in the same run on the same machine, one after the other, each in a process
of its own with one local Spark (``local[2]``, the Spark configuration featurekube's
stream job runs with, the same pyspark; Feast's from a virtualenv of its own,
benchmarks/peers/feast). Both read a fresh topic of the same loopback Kafka (the local
platform's broker: ``$FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS`` when set, as `featurekube
dev env` prints it, else one started here the way `dev up` starts it), 2 partitions,
from its earliest offset, with a 1 s trigger interval (``processingTime`` for Feast,
``triggerInterval`` for featurekube), and write only to their online store, each its
own table of the same moto DynamoDB server:

- featurekube: a plain streaming view (``driver_id``; features ``fare``, ``trips``) of
  JSON records, run by :func:`featurekube.materialize.stream_job.start` without an
  offline store (the stream job's offline Delta append is left out, as Feast's
  processor is run online only); its online write keeps the newer event time;
- Feast: a StreamFeatureView of the same fields over a KafkaSource with JsonFormat,
  ``ingest_stream_feature_view()`` (push mode online); its DynamoDB write replaces.

The events: a paced producer (confluent-kafka, its own process) sends JSON records
``{driver_id, fare, trips, event_timestamp}`` whose event time is their send time, over
``FEATUREKUBE_BENCH_STREAM_ENTITIES`` drivers (default 1000), keyed by driver. Among
them, 20 times a second, a *probe*: an event of one of 20 reserved drivers.

Latency, measured the same way for both from outside: a reader polls the probe drivers'
items with GetItem, round after round, as a feature server would read them; a probe's
latency is the time of the first poll that finds its driver's event time at or after
the probe's, minus its send time (benchmarks/_streaming.py). p50 and p99 are taken over
the probes sent in a step's measured interval (about 600 in 30 s, so p99 is the
sixth-largest); a probe still unseen 20 s after the step counts at its age then (a
lower bound), and how many there were is reported. Each
system's own figure beside it: Spark's duration of its micro-batches (both), and
featurekube's progress report (each batch's median Kafka-append-to-online latency);
Feast reports no latency of its own.

Sustained rate: the producer steps through ``FEATUREKUBE_BENCH_STREAM_RATES`` (events/s,
default 500,1000,2000,5000,10000,20000,50000), each for a warm-up then
``FEATUREKUBE_BENCH_STREAM_SECONDS`` (default 30) measured. Consumer lag is sampled four
times a second: the topic's end offsets minus the offsets the query's last finished
micro-batch read (Spark's progress). Over the measured interval, lag is *bounded*
unless its troughs (right after each micro-batch) rise faster than 10% of the rate, or
it ends more than 60 s of the rate behind, or no micro-batch finishes within its first
or last third (:func:`benchmarks._streaming.judge_lag`).
After a step without bounded lag the ramp waits (up to 90 s) for lag to drain, and it
ends at the second such step in a row (one alone can be a passing stall of a loaded
machine); 1000 and 10000 events/s are still run if they were not, for their
latencies. The highest sustained rate is the highest step with lag bounded. A step the
producer could not keep (under 95% of its rate) ends the ramp too, and is noted: the
sustained rate is then a lower bound.

Run time: a few minutes per side (Spark's start, then each step's warm-up, interval
and settling); shorten with ``FEATUREKUBE_BENCH_STREAM_RATES``,
``FEATUREKUBE_BENCH_STREAM_SECONDS``, ``FEATUREKUBE_BENCH_STREAM_WARMUP`` (default 5 s)
and ``FEATUREKUBE_BENCH_STREAM_SUBJECTS`` (``featurekube,feast``: which run, in that
order). Feast's virtualenv
(``feast[aws,spark]`` and featurekube's pyspark) is made on first use.

    python -m benchmarks stream
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import _harness, _moto, _streaming
from benchmarks.peers import feast as feast_peer

FEATUREKUBE = "featurekube stream job"
FEAST = "Feast SparkKafkaProcessor"
FEAST_ENV = "feast-0.67.0-spark"
PARTITIONS = 2
PROBES = tuple(range(20))
PROBE_HZ = 20.0
TRIGGER_SECONDS = 1
LATENCY_RATES = (1000, 10000)
START_TIMEOUT = 300.0
SETTLE_SECONDS = 20.0
DRAIN_SECONDS = 90.0
PRIME_RATE = 100
KEPT_RATE = 0.95
"""A step whose producer sent less than this share of its rate did not hold it."""
_PEER_SCRIPT = Path(feast_peer.__file__).parent / "stream.py"


@dataclass(frozen=True)
class Settings:
    """The benchmark's parameters (:func:`settings_from`)."""

    rates: tuple[int, ...] = (500, 1000, 2000, 5000, 10000, 20000, 50000)
    seconds: float = 30.0
    warmup: float = 5.0
    subjects: tuple[str, ...] = ("featurekube", "feast")
    entities: int = 1000


def settings_from(environ: Mapping[str, str]) -> Settings:
    """The settings ``FEATUREKUBE_BENCH_STREAM_*`` in ``environ`` give; raises
    ValueError naming the variable that is wrong.

    >>> settings_from({"FEATUREKUBE_BENCH_STREAM_RATES": "500,1000"}).rates
    (500, 1000)
    """
    default = Settings()

    def number(name: str, fallback: float, low: float, high: float) -> float:
        text = environ.get(f"FEATUREKUBE_BENCH_STREAM_{name}")
        if text is None:
            return fallback
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"FEATUREKUBE_BENCH_STREAM_{name}={text!r} is not a number") from None
        if not low <= value <= high:
            raise ValueError(f"FEATUREKUBE_BENCH_STREAM_{name}={text} is not in [{low}, {high}]")
        return value

    rates = default.rates
    text = environ.get("FEATUREKUBE_BENCH_STREAM_RATES")
    if text is not None:
        try:
            rates = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
        except ValueError:
            raise ValueError(
                f"FEATUREKUBE_BENCH_STREAM_RATES={text!r} is not a list of integers"
            ) from None
        if not rates or not all(1 <= r <= 1_000_000 for r in rates):
            raise ValueError(
                f"FEATUREKUBE_BENCH_STREAM_RATES={text!r}: give 1 to 1000000 events/s each"
            )
    subjects = default.subjects
    text = environ.get("FEATUREKUBE_BENCH_STREAM_SUBJECTS")
    if text is not None:
        subjects = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
        unknown = set(subjects) - set(default.subjects)
        if not subjects or unknown:
            raise ValueError(
                f"FEATUREKUBE_BENCH_STREAM_SUBJECTS={text!r}: name featurekube and/or feast"
            )
    return Settings(
        rates=rates,
        seconds=number("SECONDS", default.seconds, 3, 600),
        warmup=number("WARMUP", default.warmup, 0, 120),
        subjects=subjects,
        entities=int(number("ENTITIES", default.entities, 1, 10_000_000)),
    )


# --- the producer (python -m benchmarks.bench_stream produce ...) ----------------------


def _produce(bootstrap: str, topic: str, rate: float, seconds: float, entities: int) -> None:
    """Send ``rate`` events a second for ``seconds``; print each probe (``P entity
    micros``) as it is sent, then ``DONE sent elapsed``."""
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "queue.buffering.max.messages": 1_000_000}
    )
    began = time.time()
    sent, seq, probe_index = 0, 0, 0
    next_probe = began
    while True:
        now = time.time()
        elapsed = now - began
        if elapsed >= seconds:
            break
        micros = int(now * 1_000_000)
        due = int(rate * elapsed) - sent
        for _ in range(due):
            if now >= next_probe:
                entity = PROBES[probe_index % len(PROBES)]
                probe_index += 1
                next_probe += 1 / PROBE_HZ
                print(f"P {entity} {micros}", flush=True)
            else:
                entity = len(PROBES) + seq % entities
            seq += 1
            value = _streaming.render_event(entity, seq, micros)
            while True:
                try:
                    producer.produce(topic, value=value, key=str(entity).encode())
                    break
                except BufferError:
                    producer.poll(0.01)
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    left = producer.flush(60)
    print(f"DONE {sent - left} {time.time() - began:.3f}", flush=True)


# --- featurekube's side (python -m benchmarks.bench_stream featurekube SPEC.json) ------


def _view_body(topic: str, bootstrap: str) -> dict[str, Any]:
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": {"name": "trips", "namespace": "bench"},
        "spec": {
            "owner": "bench",
            "entities": [{"name": "driver_id", "type": "int64"}],
            "source": {
                "batch": {"path": "s3://bench/raw/trips/"},
                "stream": {
                    "kafka": {
                        "topic": topic,
                        "bootstrapServers": bootstrap,
                        "startingOffsets": "earliest",
                        "triggerInterval": f"{TRIGGER_SECONDS}s",
                        "fields": [
                            {"name": "driver_id", "type": "int64"},
                            {"name": "fare", "type": "float64"},
                            {"name": "trips", "type": "int64"},
                            {"name": "event_timestamp", "type": "timestamp"},
                        ],
                    }
                },
            },
            "features": [{"name": "fare", "type": "float64"}, {"name": "trips", "type": "int64"}],
            "ttl": "1d",
        },
    }


def _run_featurekube(spec_path: Path) -> None:
    """Run featurekube's stream job on the spec's topic and table until killed, writing
    the query's progress and the job's own report to the spec's status file."""
    from featurekube.materialize import spark_job, stream_job, stream_plan
    from featurekube.spec import v1alpha1

    spec = json.loads(spec_path.read_text())
    view = v1alpha1.FeatureView.model_validate(_view_body(spec["topic"], spec["bootstrap_servers"]))
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    plan = stream_plan.plan_stream(view, since)
    spark = spark_job.open_session("featurekube-bench-stream")
    run = stream_job.start(
        spark,
        plan,
        offline_uri=None,
        online_table=spec["table"],
        checkpoint=spec["checkpoint"],
        write_progress_document=False,
    )
    try:
        _report_until_stopped(run, Path(spec["status"]))
    except BaseException:
        # The query's threads would keep the process up, and the benchmark waiting.
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


def _report_until_stopped(run: Any, status: Path) -> None:
    batches: dict[int, dict[str, Any]] = {}
    own: dict[int, dict[str, Any]] = {}
    while run.query.isActive:
        snapshot = run.refresh()
        progress = _progress_of(run.query)
        if progress is not None:
            batches.setdefault(int(progress["batchId"]), _batch_figures(progress))
        if snapshot.batch_id is not None and snapshot.latency_p50_seconds is not None:
            own.setdefault(
                snapshot.batch_id,
                {
                    "batch_id": snapshot.batch_id,
                    "at": time.time(),
                    "latency_p50_seconds": snapshot.latency_p50_seconds,
                    "latency_max_seconds": snapshot.latency_max_seconds,
                },
            )
        _write_json(
            status,
            {
                "active": True,
                "progress": progress,
                "batches": list(batches.values()),
                "own": list(own.values()),
            },
        )
        time.sleep(0.25)
    raise SystemExit(f"the stream stopped: {run.query.exception()}")


def _progress_of(query: Any) -> dict[str, Any] | None:
    last = query.lastProgress
    if last is None:
        return None
    # pyspark's progress is a dict whose items are read through it, not held: its JSON.
    found: dict[str, Any] = json.loads(last.json)
    return found


def _batch_figures(progress: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "batch_id": progress["batchId"],
        "timestamp": progress["timestamp"],
        "rows": progress.get("numInputRows", 0),
        "trigger_ms": (progress.get("durationMs") or {}).get("triggerExecution"),
    }


def _write_json(path: Path, document: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(document))
    partial.replace(path)


# --- the run ----------------------------------------------------------------------------


@dataclass
class _Side:
    """One subject running: where it writes, how a probe's item is keyed and read."""

    subject: str
    pid: int
    log: Path
    status: Path
    table: str
    key_attribute: str
    keys: dict[str, int]
    """The item key of each probe entity -> the entity."""
    event_time: Callable[[dict[str, Any]], float | None]

    def state(self) -> dict[str, Any]:
        try:
            found: dict[str, Any] = json.loads(self.status.read_text())
            return found
        except (OSError, ValueError):
            return {}


@dataclass
class _Step:
    rate: int
    window: tuple[float, float]
    sent: int
    elapsed: float
    latencies: list[float]
    unseen: int
    lag: _streaming.LagVerdict
    batch_seconds: list[float]
    own_p50: list[float] = field(default_factory=list)

    @property
    def kept(self) -> bool:
        return self.sent >= KEPT_RATE * self.rate * self.elapsed

    def summary(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "achieved": round(self.sent / self.elapsed, 1),
            "probes": len(self.latencies),
            "unseen": self.unseen,
            "p50": _quantile(self.latencies, 0.5),
            "p99": _quantile(self.latencies, 0.99),
            "lag_bounded": self.lag.bounded,
            "lag_growth_per_second": self.lag.growth_per_second,
            "final_lag": self.lag.final_lag,
            "batches": len(self.batch_seconds),
        }


def _quantile(samples: list[float], q: float) -> float | None:
    return round(_harness.percentile(samples, q), 3) if samples else None


class _Watch:
    """Polls the probe items and samples consumer lag while a side runs."""

    def __init__(self, side: _Side, bootstrap: str, topic: str) -> None:
        import boto3
        from confluent_kafka import Consumer

        self.side = side
        self.topic = topic
        self.probes = _streaming.Probes()
        self.lags: list[tuple[float, int]] = []
        self.rounds: list[float] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._dynamodb = boto3.client("dynamodb")
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}"}
        )
        self._threads = [
            threading.Thread(target=self._poll, daemon=True),
            threading.Thread(target=self._sample_lag, daemon=True),
        ]

    def __enter__(self) -> _Watch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self._consumer.close()

    def sent(self, entity: int, at: float) -> None:
        with self.lock:
            self.probes.sent(entity, at)

    def _poll(self) -> None:
        side = self.side
        request = {side.table: {"Keys": [{side.key_attribute: {"S": k}} for k in side.keys]}}
        while not self._stop.is_set():
            began = time.time()
            # One BatchGetItem of every probe, as a feature server reads a request's rows.
            found = self._dynamodb.batch_get_item(RequestItems=request)
            at = time.time()
            with self.lock:
                for item in found["Responses"].get(side.table, ()):
                    entity = side.keys[item[side.key_attribute]["S"]]
                    self.probes.observed(entity, side.event_time(item), at)
            self.rounds.append(at - began)

    def _sample_lag(self) -> None:
        from confluent_kafka import TopicPartition

        while not self._stop.is_set():
            end = 0
            for partition in range(PARTITIONS):
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=5
                )
                end += max(high, 0)
            progress = self.side.state().get("progress") or {}
            read = 0
            for source in progress.get("sources") or ():
                offsets = source.get("endOffset") or {}
                if isinstance(offsets, str):
                    offsets = json.loads(offsets)
                read += sum(int(v) for v in (offsets.get(self.topic) or {}).values())
            with self.lock:
                self.lags.append((time.time(), max(0, end - read)))
            self._stop.wait(0.25)

    def lag_now(self) -> int | None:
        with self.lock:
            return self.lags[-1][1] if self.lags else None


def _step(
    watch: _Watch, bootstrap: str, topic: str, rate: int, settings: Settings, warmup: float
) -> _Step:
    began = time.time()
    sent, elapsed = _send(
        watch, bootstrap, topic, rate, warmup + settings.seconds, settings.entities
    )
    start, end = began + warmup, began + warmup + settings.seconds
    deadline = time.time() + SETTLE_SECONDS
    while time.time() < deadline:
        with watch.lock:
            if watch.probes.unseen(start, end) == 0:
                break
        time.sleep(0.2)
    with watch.lock:
        latencies = watch.probes.latencies(start, end, now=time.time())
        unseen = watch.probes.unseen(start, end)
        lags = [(t, lag) for t, lag in watch.lags if start <= t <= end]
    state = watch.side.state()
    batches = [
        b["trigger_ms"] / 1000
        for b in state.get("batches") or ()
        if b.get("trigger_ms") is not None and start <= _epoch(b["timestamp"]) <= end
    ]
    own = [o["latency_p50_seconds"] for o in state.get("own") or () if start <= o["at"] <= end]
    return _Step(
        rate=rate,
        window=(start, end),
        sent=sent,
        elapsed=elapsed,
        latencies=latencies,
        unseen=unseen,
        lag=_streaming.judge_lag(lags, rate),
        batch_seconds=batches,
        own_p50=own,
    )


def _send(
    watch: _Watch, bootstrap: str, topic: str, rate: float, seconds: float, entities: int
) -> tuple[int, float]:
    """Run the producer; its probes go to ``watch``. Events sent, and in how many seconds."""
    import subprocess

    command = [
        sys.executable, "-m", "benchmarks.bench_stream", "produce",
        "--bootstrap", bootstrap, "--topic", topic, "--rate", str(rate),
        "--seconds", str(seconds), "--entities", str(entities),
    ]  # fmt: skip
    sent, elapsed = 0, seconds
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as producer:
        assert producer.stdout is not None
        for line in producer.stdout:
            kind, first, second = line.split()
            if kind == "P":
                watch.sent(int(first), int(second) / 1e6)
            elif kind == "DONE":
                sent, elapsed = int(first), float(second)
        if producer.wait(60) != 0:
            raise RuntimeError(f"the producer at {rate}/s failed with {producer.returncode}")
    return sent, elapsed


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _ramp(watch: _Watch, bootstrap: str, topic: str, settings: Settings) -> list[_Step]:
    """Step through the rates (the first one's warm-up doubled: Spark's first batches
    compile) until :func:`_ends_ramp`, letting lag drain after a step without bounded
    lag; then still run the latency rates not run yet, once lag has drained."""
    _prime(watch, bootstrap, topic, settings)
    steps: list[_Step] = []
    stopped = False
    for rate in settings.rates:
        if stopped and rate not in LATENCY_RATES:
            continue
        if steps and not steps[-1].lag.bounded and not _drained(watch):
            break
        warmup = settings.warmup * (2 if not steps else 1)
        step = _step(watch, bootstrap, topic, rate, settings, warmup)
        steps.append(step)
        print(f"  {watch.side.subject}: {json.dumps(step.summary())}", flush=True)
        stopped = stopped or _ends_ramp(steps)
    return steps


def _ends_ramp(steps: list[_Step]) -> bool:
    """The ramp ends at a step the producer could not keep, or at the second step in a
    row without bounded lag: one alone can be a passing stall of a loaded machine."""
    last = steps[-1]
    if not last.kept:
        return True
    return len(steps) >= 2 and not last.lag.bounded and not steps[-2].lag.bounded


def _prime(watch: _Watch, bootstrap: str, topic: str, settings: Settings) -> None:
    """Send a trickle (100 events/s, 2 s at a time) until a probe is visible: Spark's
    start, its first micro-batches and the first writes are not measured."""
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        _send(watch, bootstrap, topic, PRIME_RATE, 2.0, settings.entities)
        with watch.lock:
            if watch.probes.seen:
                break
    else:
        raise RuntimeError(f"{watch.side.subject} made no event visible in {START_TIMEOUT:.0f} s")
    if not _drained(watch):
        raise RuntimeError(
            f"{watch.side.subject} did not catch up with {PRIME_RATE} events/s: lag "
            f"{watch.lag_now()}, progress {json.dumps(watch.side.state().get('progress'))}"
        )


def _drained(watch: _Watch) -> bool:
    deadline = time.time() + DRAIN_SECONDS
    while time.time() < deadline:
        lag = watch.lag_now()
        if lag is not None and lag <= PROBE_HZ * 10:
            return True
        time.sleep(0.5)
    return False


def _sustained(steps: list[_Step]) -> tuple[int | None, str]:
    """The highest rate held with lag bounded (and kept by the producer), and what
    ended the ramp."""
    held = [s.rate for s in steps if s.kept and s.lag.bounded]
    best = max(held) if held else None
    short = [s.rate for s in steps if not s.kept]
    if short:
        return best, f"the producer could not keep {short[0]}/s (a lower bound)"
    missed = [s.rate for s in steps if not s.lag.bounded]
    if missed:
        return best, "lag grew without bound at " + ", ".join(f"{r}/s" for r in missed)
    return best, "every rate was held (a lower bound)"


@contextlib.contextmanager
def _kafka(tmp: Path) -> Iterator[str]:
    """The platform's Kafka: the running one's address when it is set, else a broker
    started here as `featurekube dev up` starts it."""
    running = os.environ.get("FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS")
    if running:
        yield running
        return
    from featurekube._platform import kafka, processes

    log = tmp / "kafka.log"
    ports = kafka.KafkaPorts(processes.free_port(), processes.free_port())
    java = kafka.find_java()
    libs = kafka.resolve_jars(java, log)
    archives = kafka.class_archives(java, libs, log, START_TIMEOUT)
    layout = kafka.KafkaLayout(tmp / "kafka")
    kafka.prepare(
        layout, ports, java, libs, log,
        kafka.ClassArchive(archives.format) if archives is not None else None,
    )  # fmt: skip
    pid = kafka.spawn(
        layout, java, libs, log,
        kafka.ClassArchive(archives.broker) if archives is not None else None,
    )  # fmt: skip
    try:
        if not processes.wait_until(lambda: kafka.ready(ports), START_TIMEOUT, interval=0.1):
            raise RuntimeError(f"Kafka did not start: {processes.tail(log)}")
        yield kafka.bootstrap_servers(ports)
    finally:
        processes.stop(pid, "java")


def _topic(bootstrap: str, name: str) -> str:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, PARTITIONS, 1)]).values():
        future.result(60)
    return name


def _start_featurekube(tmp: Path, bootstrap: str, topic: str, env: dict[str, str]) -> _Side:
    import boto3

    from featurekube._platform import processes
    from featurekube.online import keys, layout

    table = f"bench-stream-{uuid.uuid4().hex[:8]}"
    client = boto3.client("dynamodb")
    client.create_table(**layout.table_definition(table, {}))
    client.get_waiter("table_exists").wait(TableName=table)
    spec = tmp / "featurekube.json"
    status = tmp / "featurekube-status.json"
    spec.write_text(
        json.dumps(
            {
                "topic": topic,
                "bootstrap_servers": bootstrap,
                "table": table,
                "checkpoint": str(tmp / "featurekube-checkpoint"),
                "status": str(status),
            }
        )
    )
    log = tmp / "featurekube.log"
    pid = processes.spawn(
        [sys.executable, "-m", "benchmarks.bench_stream", "featurekube", str(spec)], log, env
    )

    probe_keys = {
        keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": entity}): entity
        for entity in PROBES
    }

    def event_time(item: dict[str, Any]) -> float | None:
        found = item.get(layout.EVENT_TIME)
        return int(found["N"]) / 1e6 if found else None

    return _Side(FEATUREKUBE, pid, log, status, table, layout.ENTITY_KEY, probe_keys, event_time)


def _start_feast(tmp: Path, python: Path, bootstrap: str, topic: str, env: dict[str, str]) -> _Side:
    from featurekube import spark_session
    from featurekube._platform import processes

    ivy = spark_session.SparkSettings().ivy_dir
    conf = spark_session.render_spark_conf(
        spark_session.SparkSettings(
            app_name="feast-bench-stream",
            jars=spark_session.resolved_jars(ivy),
            python=str(python),
        ),
        env,
    )
    spec = tmp / "feast.json"
    status = tmp / "feast-status.json"
    spec.write_text(
        json.dumps(
            {
                "repo": str(tmp / "feast-repo"),
                "project": f"bench{uuid.uuid4().hex[:8]}",
                "endpoint": env["AWS_ENDPOINT_URL"],
                "region": env["AWS_REGION"],
                "bootstrap_servers": bootstrap,
                "topic": topic,
                "probes": list(PROBES),
                "trigger_seconds": TRIGGER_SECONDS,
                "spark_conf": conf,
                "checkpoint": str(tmp / "feast-checkpoint"),
                "status": str(status),
            }
        )
    )
    log = tmp / "feast.log"
    pid = processes.spawn([str(python), str(_PEER_SCRIPT), str(spec)], log, env)
    info: dict[str, Any] = {}

    def announced() -> bool:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith('{"table"'):
                info.update(json.loads(line))
                return True
        if not processes.is_running(pid):
            raise RuntimeError(f"Feast's stream stopped: {processes.tail(log)}")
        return False

    if not processes.wait_until(announced, START_TIMEOUT, interval=0.5):
        processes.stop(pid)
        raise RuntimeError(f"Feast's stream did not start: {processes.tail(log)}")
    probe_keys = {key: int(entity) for entity, key in info["keys"].items()}

    def event_time(item: dict[str, Any]) -> float | None:
        found = item.get("event_ts")
        return dt.datetime.fromisoformat(found["S"]).timestamp() if found else None

    return _Side(FEAST, pid, log, status, info["table"], "entity_id", probe_keys, event_time)


def _wait_active(side: _Side) -> float:
    """Seconds until the side's query runs."""
    from featurekube._platform import processes

    began = time.perf_counter()

    def active() -> bool:
        if not processes.is_running(side.pid):
            raise RuntimeError(f"{side.subject} stopped: {processes.tail(side.log)}")
        return bool(side.state().get("active"))

    if not processes.wait_until(active, START_TIMEOUT, interval=0.5):
        raise RuntimeError(f"{side.subject} did not start: {processes.tail(side.log)}")
    return time.perf_counter() - began


def _measure(
    subject: str,
    start: Callable[[str], _Side],
    bootstrap: str,
    settings: Settings,
) -> tuple[list[_Step], float]:
    from featurekube._platform import processes

    topic = _topic(bootstrap, f"bench-stream-{subject}-{uuid.uuid4().hex[:8]}")
    side = start(topic)
    try:
        started = _wait_active(side)
        with _Watch(side, bootstrap, topic) as watch:
            steps = _ramp(watch, bootstrap, topic, settings)
            rounds = list(watch.rounds)
        if not processes.is_running(side.pid):
            raise RuntimeError(f"{side.subject} stopped: {processes.tail(side.log)}")
        if not any(step.latencies for step in steps):
            print(f"  {side.subject} made nothing visible: {processes.tail(side.log)}")
        print(
            f"  {side.subject}: started in {started:.1f} s; a poll round of "
            f"{len(PROBES)} items took {statistics.median(rounds) * 1000:.0f} ms (median)",
            flush=True,
        )
        return steps, statistics.median(rounds)
    finally:
        processes.stop(side.pid, timeout=30)


def _add(report: _harness.Report, subject: str, steps: list[_Step]) -> dict[str, Any]:
    for step in steps:
        p50, p99 = _quantile(step.latencies, 0.5), _quantile(step.latencies, 0.99)
        if p50 is not None and p99 is not None:
            report.add(subject, f"latency p50 at {step.rate}/s", "s", [p50])
            report.add(subject, f"latency p99 at {step.rate}/s", "s", [p99])
        if step.batch_seconds:
            report.add(subject, f"batch duration at {step.rate}/s", "s", step.batch_seconds)
        if step.own_p50:
            report.add(
                f"{subject} (own report)", f"batch latency p50 at {step.rate}/s", "s", step.own_p50
            )
    sustained, ended = _sustained(steps)
    if sustained is not None:
        report.add(subject, "highest sustained rate", "ev/s", [float(sustained)])
    return {"steps": [s.summary() for s in steps], "sustained": sustained, "ended": ended}


def run() -> _harness.Report:
    settings = settings_from(os.environ)
    report = _harness.Report(
        name="stream",
        description="Kafka to online store: event-to-online latency (p50, p99, lower is "
        "better) and the highest rate with lag bounded (higher is better), "
        "featurekube's stream job beside Feast's SparkKafkaProcessor (baseline)",
        baseline=FEAST,
    )
    feast_python = None
    if "feast" in settings.subjects:
        pyspark = importlib.metadata.version("pyspark")
        feast_python = feast_peer.python(
            feast_peer.cache() / "bench" / FEAST_ENV, "aws,spark", pins=(f"pyspark=={pyspark}",)
        )
        report.peers[FEAST_ENV] = feast_peer.versions(feast_python, (*feast_peer.STACK, "pyspark"))
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        from featurekube._platform import processes

        moto_pid, aws = _moto.start(tmp)
        saved = dict(os.environ)
        os.environ.update(aws)
        # Spark's scratch space goes with this directory, even if a JVM is killed.
        env = {**os.environ, "SPARK_LOCAL_DIRS": str(tmp / "spark-local")}
        try:
            with _kafka(tmp) as bootstrap:
                starts: dict[str, tuple[str, Callable[[str], _Side]]] = {
                    "featurekube": (
                        FEATUREKUBE,
                        lambda topic: _start_featurekube(tmp, bootstrap, topic, env),
                    ),
                }
                if feast_python is not None:
                    python = feast_python
                    starts["feast"] = (
                        FEAST,
                        lambda topic: _start_feast(tmp, python, bootstrap, topic, env),
                    )
                for name in settings.subjects:  # in the order given
                    subject, start = starts[name]
                    steps, poll = _measure(name, start, bootstrap, settings)
                    found[subject] = {**_add(report, subject, steps), "poll_round": poll}
        finally:
            os.environ.clear()
            os.environ.update(saved)
            processes.stop(moto_pid)
    report.notes = {
        "settings": json.dumps(
            {
                "rates": settings.rates,
                "seconds": settings.seconds,
                "warmup": settings.warmup,
                "entities": settings.entities,
                "probes": len(PROBES),
                "probe_hz": PROBE_HZ,
                "partitions": PARTITIONS,
                "trigger_seconds": TRIGGER_SECONDS,
                "spark": "local[2], featurekube's Spark configuration, pyspark "
                + importlib.metadata.version("pyspark"),
                "order": settings.subjects,
                "writes": "online only (featurekube: no offline store; Feast: PushMode.ONLINE)",
            }
        ),
        **{f"{subject}: steps": json.dumps(value) for subject, value in found.items()},
    }
    return report


# --- entry points -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_stream")
    commands = parser.add_subparsers(dest="command", required=True)
    produce = commands.add_parser("produce", help="send paced events to a topic")
    produce.add_argument("--bootstrap", required=True)
    produce.add_argument("--topic", required=True)
    produce.add_argument("--rate", type=float, required=True)
    produce.add_argument("--seconds", type=float, required=True)
    produce.add_argument("--entities", type=int, required=True)
    featurekube = commands.add_parser("featurekube", help="run featurekube's stream job")
    featurekube.add_argument("spec", type=Path)
    arguments = parser.parse_args(argv)
    if arguments.command == "produce":
        _produce(
            arguments.bootstrap,
            arguments.topic,
            arguments.rate,
            arguments.seconds,
            arguments.entities,
        )
    else:
        _run_featurekube(arguments.spec)


if __name__ == "__main__":
    main()
