"""The local platform: warm start time and idle memory, beside a bare etcd start.

The peer is etcd alone, the floor any Kubernetes API start stands on; the ratio shows
what the API server, controller-manager and moto add on top of it.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks import _harness, _memory
from featurekube._platform import components, platform, processes

REPEAT = 3


def _etcd_alone(bin_dir: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        layout = components.Layout(Path(tmp))
        ports = components.Ports(*(processes.free_port() for _ in range(4)))
        start = time.perf_counter()
        pid = processes.spawn(
            components.etcd_command(bin_dir / "etcd", layout, ports), Path(tmp, "etcd.log")
        )
        health = f"http://127.0.0.1:{ports.etcd_client}/health"
        processes.wait_until(lambda: processes.http_ok(health), 60, interval=0.05)
        elapsed = time.perf_counter() - start
        processes.stop(pid)
        return elapsed


def run() -> _harness.Report:
    report = _harness.Report(
        name="platform",
        description="local platform warm start and idle memory (etcd alone as the floor)",
        baseline="etcd alone",
    )
    bin_dir = platform.resolve_k8s_bin_dir(platform.PlatformSettings())
    starts, stops, rss = [], [], []
    for _ in range(REPEAT):
        with tempfile.TemporaryDirectory() as tmp:
            local = platform.LocalPlatform(platform.PlatformSettings(state_dir=Path(tmp)))
            began = time.perf_counter()
            endpoints = local.start()
            starts.append(time.perf_counter() - began)
            time.sleep(5)  # let start-up work settle before reading memory
            # Resident now, not a peak: the figure is the platform's idle size.
            rss.append(sum(_memory.rss_mib(pid) or 0.0 for pid in endpoints.pids.values()))
            began = time.perf_counter()
            local.stop()
            stops.append(time.perf_counter() - began)
    report.add("featurekube dev platform", "start (warm)", "s", starts)
    report.add("featurekube dev platform", "stop", "s", stops)
    report.add("featurekube dev platform", "idle resident memory", "MiB", rss)
    report.add("etcd alone", "start (warm)", "s", [_etcd_alone(bin_dir) for _ in range(REPEAT)])
    return report
