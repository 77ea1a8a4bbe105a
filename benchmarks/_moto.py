"""moto (S3 and DynamoDB) for the benchmarks that need AWS without AWS."""

from __future__ import annotations

import sys
from pathlib import Path

from featurekube._platform import components, processes


def start(tmp: Path) -> tuple[int, dict[str, str]]:
    """Start moto on a free port, logging to ``tmp``; its pid and the AWS variables to reach it.

    Waits (up to a minute) until moto answers. The caller stops it with ``processes.stop``.
    """
    port = processes.free_port()
    ports = components.Ports(etcd_client=0, etcd_peer=0, apiserver=0, moto=port)
    pid = processes.spawn(components.moto_command(Path(sys.executable), ports), tmp / "moto.log")
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    processes.wait_until(lambda: processes.http_ok(env["AWS_ENDPOINT_URL"]), 60)
    return pid, env
