"""The local platform's Kafka: its start, cold and warm, its idle memory, and what it
adds to `featurekube dev up`, beside the platform started without it.

The baseline is the platform with ``kafka=False`` (`dev up --no-kafka`): the ratio of
the whole platform's start shows what Kafka, started beside the other parts, adds.
Kafka alone is measured three ways: cold (an empty jar cache: the download from Maven
Central and the recording of its class archives included), warm without the class
archives, and warm with them, as `dev up` starts it.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks import _harness, _memory
from featurekube._platform import kafka, platform, processes

REPEAT = 3
START_TIMEOUT = 300.0


def _kafka_alone(*, archives: bool) -> tuple[float, float]:
    """Seconds from nothing to a broker answering, and its resident MiB once idle."""
    with tempfile.TemporaryDirectory() as tmp:
        layout = kafka.KafkaLayout(Path(tmp, "kafka"))
        log = Path(tmp, "kafka.log")
        ports = kafka.KafkaPorts(processes.free_port(), processes.free_port())
        began = time.perf_counter()
        java = kafka.find_java()
        libs = kafka.resolve_jars(java, log)
        recorded = kafka.class_archives(java, libs, log, START_TIMEOUT) if archives else None
        kafka.prepare(
            layout,
            ports,
            java,
            libs,
            log,
            kafka.ClassArchive(recorded.format) if recorded is not None else None,
        )
        pid = kafka.spawn(
            layout,
            java,
            libs,
            log,
            kafka.ClassArchive(recorded.broker) if recorded is not None else None,
        )
        try:
            ready = processes.wait_until(lambda: kafka.ready(ports), START_TIMEOUT, interval=0.05)
            elapsed = time.perf_counter() - began
            if not ready:
                raise RuntimeError(f"Kafka did not start: {processes.tail(log)}")
            time.sleep(5)  # let start-up work settle before reading memory
            return elapsed, _memory.rss_mib(pid) or 0.0
        finally:
            processes.stop(pid, "java")


def _platform_start(*, with_kafka: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        local = platform.LocalPlatform(
            platform.PlatformSettings(state_dir=Path(tmp), kafka=with_kafka)
        )
        began = time.perf_counter()
        local.start()
        elapsed = time.perf_counter() - began
        local.stop()
        return elapsed


def run() -> _harness.Report:
    report = _harness.Report(
        name="kafka",
        description="the local platform's Kafka: start cold and warm, idle memory, and "
        "what it adds to dev up (the platform without Kafka as the baseline)",
        baseline="platform without Kafka",
    )
    saved = os.environ.get("FEATUREKUBE_CACHE")
    with tempfile.TemporaryDirectory() as empty_cache:
        os.environ["FEATUREKUBE_CACHE"] = empty_cache
        try:
            cold, _ = _kafka_alone(archives=True)
        finally:
            if saved is None:
                os.environ.pop("FEATUREKUBE_CACHE", None)
            else:
                os.environ["FEATUREKUBE_CACHE"] = saved
    report.add("Kafka alone", "start (cold: download and class archives)", "s", [cold])
    plain = [_kafka_alone(archives=False) for _ in range(REPEAT)]
    shared = [_kafka_alone(archives=True) for _ in range(REPEAT)]
    report.add("Kafka alone, no class archives", "start (warm)", "s", [s for s, _ in plain])
    report.add("Kafka alone", "start (warm)", "s", [s for s, _ in shared])
    report.add(
        "Kafka alone, no class archives", "idle resident memory", "MiB", [m for _, m in plain]
    )
    report.add("Kafka alone", "idle resident memory", "MiB", [m for _, m in shared])
    # Interleaved, so a change in the machine's load falls on both alike.
    with_kafka, without = [], []
    for _ in range(REPEAT):
        without.append(_platform_start(with_kafka=False))
        with_kafka.append(_platform_start(with_kafka=True))
    report.add("platform without Kafka", "dev up (warm)", "s", without)
    report.add("platform with Kafka", "dev up (warm)", "s", with_kafka)
    return report
