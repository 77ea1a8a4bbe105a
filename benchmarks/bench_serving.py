"""Online serving: latency (p50, p99) and throughput of GetOnlineFeatures for 1, 10 and
100 entity rows of a service of 3 views and 20 features, side by side with:

- the same server over the in-memory store (the server's own cost),
- the raw store: the same items read with aiobotocore's BatchGetItem directly (one
  call per view, in parallel), without a feature server in between,
- a bare grpc.aio echo server answering a response of the same size: the floor any
  Python gRPC server stands on (the baseline of the ratios),
- Feast's Python feature server (``feast serve``: one gunicorn worker, worker recycling
  off) over the same rows in the same moto server, written into its own tables by Feast
  itself (``write_to_online_store``), asked over HTTP/1.1 with JSON for the same
  entities through a feature service of the same 3 views and 20 features. Feast runs
  from a virtualenv of its own (benchmarks/peers/feast).

Every server runs in a process of its own, the load comes from this one, over
loopback, bounded in count and time. Each server's peak memory is its process tree's
(benchmarks/_memory.py; gunicorn's master and worker for Feast), read just before it
is stopped, after the load of every row count. DynamoDB is moto's server, started here. The
HTTP load is written on bare asyncio streams over kept-alive connections (and
http.client for the sequential run): it costs the client less per request than
grpc's Python client does, so it does not hold Feast back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import grpc
import yaml

from benchmarks import _harness, _memory
from benchmarks.peers import feast as feast_peer

ENTITIES = 1000
ROW_COUNTS = (1, 10, 100)
SEQUENTIAL_REQUESTS = 1500
SEQUENTIAL_SECONDS = 8.0
IN_FLIGHT = 8
CONCURRENT_SECONDS = 4.0
WARMUP = 100
ECHO_METHOD = "/featurekube.serving.v1.FeatureServing/GetOnlineFeatures"
TTL_SECONDS = 7 * 86400
FEAST_PROJECT = "bench"
FEAST_SUBJECT = "Feast feature server, DynamoDB (moto)"
FEATUREKUBE_DYNAMODB = "featurekube, DynamoDB (moto)"
ECHO_SUBJECT = "grpc echo floor"
PEAK_MEMORY = "server peak memory"

VIEWS = {
    "stats": [(f"stat_{i}", "float64" if i % 2 else "int64") for i in range(10)],
    "profile": [
        ("years_active", "int64"),
        ("vehicle_type", "string"),
        ("rating", "float64"),
        ("is_premium", "bool"),
        ("seats", "int64"),
    ],
    "live": [
        ("zone_id", "int64"),
        ("speed_kmh", "float64"),
        ("heading", "float64"),
        ("battery", "float64"),
        ("online", "bool"),
    ],
}


def _plan(prefix: str) -> dict[str, Any]:
    return {
        "featureService": "bench",
        "namespace": "bench",
        "featureViews": [
            {
                "name": view,
                "namespace": "bench",
                "onlineTable": f"{prefix}{view}",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "ttl": f"{TTL_SECONDS}s",
                "features": [{"name": n, "source": n, "type": t} for n, t in features],
                "storedFeatures": [n for n, _ in features],  # as the operator renders it
            }
            for view, features in VIEWS.items()
        ],
    }


def _columns(view: str) -> dict[str, list[Any]]:
    """The rows of ``view``, column-wise: ``driver_id``, then each feature; the same on
    every call."""
    rng = random.Random(view)
    samples: dict[str, Callable[[], Any]] = {
        "int64": lambda: rng.randrange(1000),
        "float64": lambda: rng.random() * 100,
        "string": lambda: rng.choice(["sedan", "suv", "van"]),
        "bool": lambda: rng.random() < 0.5,
    }
    columns: dict[str, list[Any]] = {"driver_id": list(range(ENTITIES))}
    columns.update({name: [] for name, _ in VIEWS[view]})
    for _ in range(ENTITIES):
        for name, value_type in VIEWS[view]:
            columns[name].append(samples[value_type]())
    return columns


def _items(view: str, now: int) -> list[dict[str, Any]]:
    """The rows of ``view`` as featurekube's online items, written at ``now`` (microseconds
    since the epoch)."""
    from featurekube.online import keys, layout, values

    columns = _columns(view)
    items = []
    for row, driver in enumerate(columns["driver_id"]):
        item: dict[str, Any] = {
            layout.ENTITY_KEY: {
                "S": keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": driver})
            },
            layout.EVENT_TIME: {"N": str(now)},
            layout.CREATED_TIME: {"N": str(now)},
        }
        for name, value_type in VIEWS[view]:
            item[name] = values.to_attribute(value_type, columns[name][row])
        items.append(item)
    return items


def _now() -> int:
    return time.time_ns() // 1000


# --- the server processes (python -m benchmarks.bench_serving serve ...) ------------


async def _serve(kind: str, port: int, plan_path: Path, echo_file: Path | None) -> None:
    if kind == "echo":
        answer = echo_file.read_bytes() if echo_file else b""

        async def echo(request: bytes, context: Any) -> bytes:
            return answer

        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "featurekube.serving.v1.FeatureServing",
            {"GetOnlineFeatures": grpc.unary_unary_rpc_method_handler(echo)},
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()
        return
    from featurekube_server import plan
    from featurekube_server import server as feature_server
    from featurekube_server.stores import dynamodb, memory

    serving = plan.load_plan(plan_path)
    async with contextlib.AsyncExitStack() as stack:
        store: Any
        if kind == "memory":
            store = memory.MemoryStore()
            for view in serving.feature_views:
                for item in _items(view.name, _now()):
                    store.put_item(view.online_table, item)
        else:
            store = await stack.enter_async_context(dynamodb.DynamoDBStore())
        running = feature_server.FeatureServer(serving, store)
        await running.start(f"127.0.0.1:{port}")
        await running.ready.wait()
        print("ready", flush=True)
        await running.wait_for_termination()


# --- load -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _process(
    arguments: list[str], ready: str, env: dict[str, str] | None = None
) -> Iterator[_memory.TreeWatch]:
    """A server started from ``arguments``, ready once it prints ``ready``; yields the
    watch of its memory, read a last time just before the server is stopped."""
    process = subprocess.Popen(
        arguments, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    memory = _memory.TreeWatch(process.pid).start()
    try:
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if ready in line:
                break
            if process.poll() is not None:
                raise RuntimeError(f"{arguments} exited with {process.returncode}")
        yield memory
    finally:
        memory.stop()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _entity_ids(rows: int, count: int) -> list[list[int]]:
    """The entities of ``count`` requests of ``rows`` rows each; the same on every call."""
    rng = random.Random(rows)
    return [[rng.randrange(ENTITIES) for _ in range(rows)] for _ in range(count)]


def _requests(rows: int, count: int) -> list[bytes]:
    from featurekube._proto.featurekube.serving.v1 import serving_pb2 as pb
    from featurekube.online import wire

    made = []
    for ids in _entity_ids(rows, count):
        request = pb.GetOnlineFeaturesRequest(feature_service="bench")
        wire.fill_values(request.entities["driver_id"], "int64", ids)
        made.append(request.SerializeToString())
    return made


def _sequential(target: str, requests: list[bytes]) -> list[float]:
    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO_METHOD)
        return _timed(lambda request: call(request, timeout=10), requests)


def _timed(call: Callable[[bytes], object], requests: list[bytes]) -> list[float]:
    """Seconds of each of ``requests`` made one after the other (after a warm-up), for
    at most SEQUENTIAL_SECONDS."""
    for request in requests[:WARMUP]:
        call(request)
    latencies = []
    started = time.perf_counter()
    for request in requests:
        began = time.perf_counter()
        call(request)
        latencies.append(time.perf_counter() - began)
        if time.perf_counter() - started > SEQUENTIAL_SECONDS:
            break
    return latencies


async def _concurrent(target: str, requests: list[bytes]) -> float:
    async with grpc.aio.insecure_channel(target) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO_METHOD)
        done = 0
        stop = time.perf_counter() + CONCURRENT_SECONDS

        async def worker(offset: int) -> None:
            nonlocal done
            i = offset
            while time.perf_counter() < stop:
                await call(requests[i % len(requests)], timeout=10)
                done += 1
                i += IN_FLIGHT

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(IN_FLIGHT)))
        return done / (time.perf_counter() - started)


async def _raw_store(prefix: str, rows: int) -> tuple[list[float], float]:
    import aiobotocore.session

    from featurekube.online import keys

    rng = random.Random(rows)
    session = aiobotocore.session.get_session()
    async with session.create_client("dynamodb") as dynamo:

        async def one() -> None:
            ids = {rng.randrange(ENTITIES) for _ in range(rows)}
            wanted = [
                {
                    "entity_key": {
                        "S": keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": i})
                    }
                }
                for i in ids
            ]
            await asyncio.gather(
                *(
                    dynamo.batch_get_item(RequestItems={f"{prefix}{view}": {"Keys": wanted}})
                    for view in VIEWS
                )
            )

        for _ in range(WARMUP):
            await one()
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(SEQUENTIAL_REQUESTS):
            began = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - began)
            if time.perf_counter() - started > SEQUENTIAL_SECONDS:
                break
        done = 0
        stop = time.perf_counter() + CONCURRENT_SECONDS

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await one()
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        return latencies, done / (time.perf_counter() - began)


# --- Feast ----------------------------------------------------------------------------

FEAST_PATH = "/get-online-features"


def _feast_repository(tmp: Path, env: dict[str, str], now: int) -> Path:
    """Feast's repository over the same rows as featurekube's tables, its online items
    written by Feast into its own tables on the same moto server."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stamps = pa.array([now] * ENTITIES, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    views = {}
    for view, features in VIEWS.items():
        columns = _columns(view)
        table = pa.table(
            {
                "driver_id": pa.array(columns["driver_id"], pa.int64()),
                "event_timestamp": stamps,
                "created_timestamp": stamps,
                **{name: columns[name] for name, _ in features},
            }
        )
        path = tmp / f"feast-{view}.parquet"
        pq.write_table(table, path)
        views[view] = {"features": dict(features), "data": str(path)}
    repo = tmp / "feast-repo"
    spec = tmp / "feast-online.json"
    spec.write_text(
        json.dumps(
            {
                "repo": str(repo),
                "project": FEAST_PROJECT,
                "endpoint": env["AWS_ENDPOINT_URL"],
                "region": env["AWS_REGION"],
                "ttl_seconds": TTL_SECONDS,
                "views": views,
            }
        )
    )
    script = Path(__file__).parent / "peers" / "feast" / "online.py"
    done = subprocess.run(
        [str(_feast_python()), str(script), str(spec)], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"Feast's repository setup failed:\n{done.stderr[-4000:]}")
    return repo


def _feast_python() -> Path:
    return feast_peer.python(feast_peer.cache() / "bench" / f"feast-{feast_peer.VERSION}", "aws")


@contextlib.contextmanager
def _feast_server(
    repo: Path, port: int, env: dict[str, str], log: Path
) -> Iterator[_memory.TreeWatch]:
    """``feast serve`` on ``port``: one worker (as featurekube's server is one process),
    worker recycling off (``--max-requests 0``; its default restarts the worker every
    1,000 requests), no access log. Yields the watch of its memory (master and
    worker), read a last time just before the server is stopped."""
    feast = _feast_python().parent / "feast"
    command = [
        str(feast), "-c", str(repo), "serve", "-h", "127.0.0.1", "-p", str(port),
        "--workers", "1", "--max-requests", "0", "--max-requests-jitter", "0",
        "--no-access-log",
    ]  # fmt: skip
    with log.open("w") as output:
        # A session of its own: gunicorn's worker is stopped with its master.
        process = subprocess.Popen(
            command, stdout=output, stderr=output, env=env, start_new_session=True
        )
    memory = _memory.TreeWatch(process.pid).start()
    try:
        deadline = time.monotonic() + 180
        while not _answers_http(port, "/health"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"feast serve did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield memory
    finally:
        memory.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _answers_http(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _feast_bodies(rows: int, count: int) -> list[bytes]:
    """The same entities as :func:`_requests`, as Feast's JSON requests."""
    return [
        json.dumps({"feature_service": "bench", "entities": {"driver_id": ids}}).encode()
        for ids in _entity_ids(rows, count)
    ]


def _feast_sequential(port: int, bodies: list[bytes]) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}

    def call(body: bytes) -> None:
        connection.request("POST", FEAST_PATH, body, headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"Feast answered {answer.status}")

    try:
        return _timed(call, bodies)
    finally:
        connection.close()


async def _feast_concurrent(port: int, bodies: list[bytes]) -> float:
    """Requests per second with IN_FLIGHT kept-alive connections, each with one request
    in flight, as :func:`_concurrent` keeps IN_FLIGHT gRPC calls in flight."""
    framed = [
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (FEAST_PATH.encode(), port, len(body), body)
        for body in bodies
    ]
    done = 0
    stop = time.perf_counter() + CONCURRENT_SECONDS

    async def worker(offset: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            i = offset
            while time.perf_counter() < stop:
                writer.write(framed[i % len(framed)])
                async with asyncio.timeout(10):
                    await _http_answer(reader)
                done += 1
                i += IN_FLIGHT
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(IN_FLIGHT)))
    return done / (time.perf_counter() - started)


async def _http_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    if head[9:12] != b"200":
        raise RuntimeError(f"Feast answered {head[:200]!r}")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return await reader.readexactly(int(value))
    raise RuntimeError(f"Feast answered without a Content-Length: {head[:400]!r}")


def _check_feast(port: int) -> None:
    """Feast answers the rows it was given, every value PRESENT: it reads its own
    items, and the same values as featurekube's."""
    (ids,) = _entity_ids(10, 1)
    expected = {}
    for view, features in VIEWS.items():
        columns = _columns(view)
        expected.update({name: [columns[name][i] for i in ids] for name, _ in features})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"feature_service": "bench", "entities": {"driver_id": ids}})
    connection.request("POST", FEAST_PATH, body, {"Content-Type": "application/json"})
    answer = json.loads(connection.getresponse().read())
    connection.close()
    names = answer["metadata"]["feature_names"]
    for name, result in zip(names, answer["results"], strict=True):
        if name == "driver_id":
            continue
        if result["values"] != expected[name] or set(result["statuses"]) != {"PRESENT"}:
            raise RuntimeError(
                f"Feast answered {name} = {result['values']} ({result['statuses']}), "
                f"expected {expected[name]}"
            )
    if set(names) - {"driver_id"} != set(expected):
        raise RuntimeError(f"Feast answered features {names}, expected {sorted(expected)}")


def _feast(report: _harness.Report, tmp: Path, env: dict[str, str], now: int) -> None:
    repo = _feast_repository(tmp, env, now)
    port = _free_port()
    with _feast_server(repo, port, env, tmp / "feast-serve.log") as memory:
        _check_feast(port)
        for rows in ROW_COUNTS:
            bodies = _feast_bodies(rows, SEQUENTIAL_REQUESTS)
            latencies = _feast_sequential(port, bodies)
            rate = asyncio.run(_feast_concurrent(port, bodies))
            _add(report, FEAST_SUBJECT, rows, latencies, rate)
    report.add(FEAST_SUBJECT, PEAK_MEMORY, "MiB", [memory.total_mib()])
    report.notes[f"{FEAST_SUBJECT}, {PEAK_MEMORY}"] = _memory.describe(memory.at_peak())


def _compare_with_feast(report: _harness.Report) -> None:
    """Notes putting featurekube over DynamoDB beside Feast: throughput ratio, p99s."""
    found = {(m.subject, m.metric): m.median for m in report.measurements}
    for rows in ROW_COUNTS:
        label = f"{rows} row{'s' if rows > 1 else ''}"
        try:
            rate = found[FEATUREKUBE_DYNAMODB, f"throughput, {label}"]
            p99 = found[FEATUREKUBE_DYNAMODB, f"p99 latency, {label}"]
            feast_rate = found[FEAST_SUBJECT, f"throughput, {label}"]
            feast_p99 = found[FEAST_SUBJECT, f"p99 latency, {label}"]
        except KeyError:
            continue
        report.notes[f"featurekube vs Feast, {label}"] = (
            f"throughput {rate / feast_rate:.1f}x Feast's ({rate:.0f} vs {feast_rate:.0f} "
            f"req/s); p99 {p99:.1f} ms vs Feast's {feast_p99:.1f} ms"
        )


def _add(
    report: _harness.Report, subject: str, rows: int, latencies: list[float], rate: float
) -> None:
    label = f"{rows} row{'s' if rows > 1 else ''}"
    report.add(subject, f"p50 latency, {label}", "ms", [statistics.median(latencies) * 1000])
    report.add(
        subject, f"p99 latency, {label}", "ms", [_harness.percentile(latencies, 0.99) * 1000]
    )
    report.add(subject, f"throughput, {label}", "req/s", [rate])


def run() -> _harness.Report:
    report = _harness.Report(
        name="serving",
        description="GetOnlineFeatures, 3 views / 20 features, loopback, load from another process",
        baseline=ECHO_SUBJECT,
        notes={
            "load": f"sequential for p50/p99 (at most {SEQUENTIAL_REQUESTS} requests or "
            f"{SEQUENTIAL_SECONDS} s), then {IN_FLIGHT} in flight for {CONCURRENT_SECONDS} s "
            "for throughput",
            "feast": f"Feast {feast_peer.VERSION}, feast serve --workers 1 --max-requests 0 "
            "(worker recycling off), DynamoDB online store on the same moto server, items "
            "written by Feast's write_to_online_store; POST /get-online-features with JSON "
            "for the feature service bench",
        },
    )
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        moto_port = _free_port()
        endpoint = f"http://127.0.0.1:{moto_port}"
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        os.environ.update(env)
        prefix = "bench-"
        plan_path = Path(tmp, "plan.yaml")
        plan_path.write_text(yaml.safe_dump(_plan(prefix)))
        now = _now()
        with _moto(python, moto_port, env):
            _fill(prefix, now)
            echo_peaks: list[float] = []
            for kind, subject in (
                ("memory", "featurekube, memory store"),
                ("dynamodb", FEATUREKUBE_DYNAMODB),
            ):
                port = _free_port()
                with _process(
                    [
                        python,
                        "-m",
                        "benchmarks.bench_serving",
                        "serve",
                        kind,
                        str(port),
                        str(plan_path),
                    ],
                    "ready",
                    env,
                ) as memory:
                    target = f"127.0.0.1:{port}"
                    for rows in ROW_COUNTS:
                        requests = _requests(rows, SEQUENTIAL_REQUESTS)
                        latencies = _sequential(target, requests)
                        rate = asyncio.run(_concurrent(target, requests))
                        _add(report, subject, rows, latencies, rate)
                        if kind == "memory":
                            echo_peaks.append(
                                _echo(report, python, plan_path, target, rows, requests, env, tmp)
                            )
                report.add(subject, PEAK_MEMORY, "MiB", [memory.total_mib()])
                report.notes[f"{subject}, {PEAK_MEMORY}"] = _memory.describe(memory.at_peak())
            # An echo server per row count, each answering one size: the median of the three.
            report.add(ECHO_SUBJECT, PEAK_MEMORY, "MiB", echo_peaks)
            for rows in ROW_COUNTS:
                latencies, rate = asyncio.run(_raw_store(prefix, rows))
                _add(report, "raw store (aiobotocore BatchGetItem)", rows, latencies, rate)
            try:
                feast_python = _feast_python()
                report.peers[f"Feast's virtualenv, {feast_python.parent.parent}"] = (
                    feast_peer.versions(feast_python)
                )
                _feast(report, Path(tmp), env, now)
            except Exception as exc:  # keep what the other subjects measured
                report.notes["feast"] = f"failed: {exc}"[:4000]
                print(f"serving benchmark: Feast failed: {exc}", file=sys.stderr)
    _compare_with_feast(report)
    return report


def _echo(
    report: _harness.Report,
    python: str,
    plan_path: Path,
    target: str,
    rows: int,
    requests: list[bytes],
    env: dict[str, str],
    tmp: str,
) -> float:
    """Measure the echo floor for ``rows``; answers the echo server's peak memory (MiB)."""
    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO_METHOD)
        answer = call(requests[0], timeout=10)
    echo_file = Path(tmp, f"echo-{rows}.bin")
    echo_file.write_bytes(answer)
    port = _free_port()
    with _process(
        [
            python,
            "-m",
            "benchmarks.bench_serving",
            "serve",
            "echo",
            str(port),
            str(plan_path),
            str(echo_file),
        ],
        "ready",
        env,
    ) as memory:
        echo_target = f"127.0.0.1:{port}"
        latencies = _sequential(echo_target, requests)
        rate = asyncio.run(_concurrent(echo_target, requests))
    _add(report, ECHO_SUBJECT, rows, latencies, rate)
    return memory.total_mib()


@contextlib.contextmanager
def _moto(python: str, port: int, env: dict[str, str]) -> Iterator[None]:
    process = subprocess.Popen(
        [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def _fill(prefix: str, now: int) -> None:
    from featurekube.online import layout

    dynamo = boto3.client("dynamodb")
    for view in VIEWS:
        table = f"{prefix}{view}"
        dynamo.create_table(**layout.table_definition(table, {}))
        dynamo.get_waiter("table_exists").wait(TableName=table)
        items = _items(view, now)
        for start in range(0, len(items), 25):
            batch = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
            answer = dynamo.batch_write_item(RequestItems={table: batch})
            while answer.get("UnprocessedItems"):
                answer = dynamo.batch_write_item(RequestItems=answer["UnprocessedItems"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("kind", choices=["memory", "dynamodb", "echo"])
    serve.add_argument("port", type=int)
    serve.add_argument("plan", type=Path)
    serve.add_argument("echo_file", type=Path, nargs="?")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.kind, args.port, args.plan, args.echo_file))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
