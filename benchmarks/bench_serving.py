"""Online serving: latency (p50, p99) and throughput of GetOnlineFeatures for 1, 10 and
100 entity rows of a service of 3 views and 20 features, side by side with:

- the same server over the in-memory store (the server's own cost),
- the raw store: the same items read with aiobotocore's BatchGetItem directly (one
  call per view, in parallel), without a feature server in between,
- a bare grpc.aio echo server answering a response of the same size: the floor any
  Python gRPC server stands on (the baseline of the ratios).

Every server runs in a process of its own, the load comes from this one, over
loopback, bounded in count and time. DynamoDB is moto's server, started here.
Feast's feature server is not measured in this run (see the report's notes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
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

from benchmarks import _harness

ENTITIES = 1000
ROW_COUNTS = (1, 10, 100)
SEQUENTIAL_REQUESTS = 1500
SEQUENTIAL_SECONDS = 8.0
IN_FLIGHT = 8
CONCURRENT_SECONDS = 4.0
WARMUP = 100
ECHO_METHOD = "/featurekube.serving.v1.FeatureServing/GetOnlineFeatures"

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
                "ttl": "7d",
                "features": [{"name": n, "source": n, "type": t} for n, t in features],
            }
            for view, features in VIEWS.items()
        ],
    }


def _items(view: str) -> list[dict[str, Any]]:
    from featurekube.online import keys, layout, values

    rng = random.Random(view)
    now = time.time_ns() // 1000
    samples: dict[str, Callable[[], Any]] = {
        "int64": lambda: rng.randrange(1000),
        "float64": lambda: rng.random() * 100,
        "string": lambda: rng.choice(["sedan", "suv", "van"]),
        "bool": lambda: rng.random() < 0.5,
    }
    items = []
    for driver in range(ENTITIES):
        item = {
            layout.ENTITY_KEY: {
                "S": keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": driver})
            },
            layout.EVENT_TIME: {"N": str(now)},
            layout.CREATED_TIME: {"N": str(now)},
        }
        for name, value_type in VIEWS[view]:
            item[name] = values.to_attribute(value_type, samples[value_type]())
        items.append(item)
    return items


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
                for item in _items(view.name):
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
def _process(arguments: list[str], ready: str, env: dict[str, str] | None = None) -> Iterator[None]:
    process = subprocess.Popen(
        arguments, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    try:
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if ready in line:
                break
            if process.poll() is not None:
                raise RuntimeError(f"{arguments} exited with {process.returncode}")
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _requests(rows: int, count: int) -> list[bytes]:
    from featurekube._proto.featurekube.serving.v1 import serving_pb2 as pb
    from featurekube.online import wire

    rng = random.Random(rows)
    made = []
    for _ in range(count):
        request = pb.GetOnlineFeaturesRequest(feature_service="bench")
        ids = [rng.randrange(ENTITIES) for _ in range(rows)]
        wire.fill_values(request.entities["driver_id"], "int64", ids)
        made.append(request.SerializeToString())
    return made


def _sequential(target: str, requests: list[bytes]) -> list[float]:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(ECHO_METHOD)
        for request in requests[:WARMUP]:
            call(request, timeout=10)
        latencies = []
        started = time.perf_counter()
        for request in requests:
            began = time.perf_counter()
            call(request, timeout=10)
            latencies.append(time.perf_counter() - began)
            if time.perf_counter() - started > SEQUENTIAL_SECONDS:
                break
    return latencies


async def _concurrent(target: str, requests: list[bytes]) -> float:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(ECHO_METHOD)
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


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _add(
    report: _harness.Report, subject: str, rows: int, latencies: list[float], rate: float
) -> None:
    label = f"{rows} row{'s' if rows > 1 else ''}"
    report.add(subject, f"p50 latency, {label}", "ms", [statistics.median(latencies) * 1000])
    report.add(subject, f"p99 latency, {label}", "ms", [_percentile(latencies, 0.99) * 1000])
    report.add(subject, f"throughput, {label}", "req/s", [rate])


def run() -> _harness.Report:
    report = _harness.Report(
        name="serving",
        description="GetOnlineFeatures, 3 views / 20 features, loopback, load from another process",
        baseline="grpc echo floor",
        notes={
            "load": f"sequential for p50/p99 (at most {SEQUENTIAL_REQUESTS} requests or "
            f"{SEQUENTIAL_SECONDS} s), then {IN_FLIGHT} in flight for {CONCURRENT_SECONDS} s "
            "for throughput",
            "feast": "not measured: Feast's feature server needs its own virtualenv and feature "
            "repository; not set up in this run",
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
        with _moto(python, moto_port, env):
            _fill(prefix)
            for kind, subject in (
                ("memory", "featurekube, memory store"),
                ("dynamodb", "featurekube, DynamoDB (moto)"),
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
                ):
                    target = f"127.0.0.1:{port}"
                    for rows in ROW_COUNTS:
                        requests = _requests(rows, SEQUENTIAL_REQUESTS)
                        latencies = _sequential(target, requests)
                        rate = asyncio.run(_concurrent(target, requests))
                        _add(report, subject, rows, latencies, rate)
                        if kind == "memory":
                            _echo(report, python, plan_path, target, rows, requests, env, tmp)
            for rows in ROW_COUNTS:
                latencies, rate = asyncio.run(_raw_store(prefix, rows))
                _add(report, "raw store (aiobotocore BatchGetItem)", rows, latencies, rate)
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
) -> None:
    with grpc.insecure_channel(target) as channel:
        answer = channel.unary_unary(ECHO_METHOD)(requests[0], timeout=10)
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
    ):
        echo_target = f"127.0.0.1:{port}"
        latencies = _sequential(echo_target, requests)
        rate = asyncio.run(_concurrent(echo_target, requests))
    _add(report, "grpc echo floor", rows, latencies, rate)


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


def _fill(prefix: str) -> None:
    from featurekube.online import layout

    dynamo = boto3.client("dynamodb")
    for view in VIEWS:
        table = f"{prefix}{view}"
        dynamo.create_table(**layout.table_definition(table, {}))
        dynamo.get_waiter("table_exists").wait(TableName=table)
        items = _items(view)
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
