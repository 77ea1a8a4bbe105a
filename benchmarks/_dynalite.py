"""dynalite, a second DynamoDB for the benchmarks whose figures the store bounds.

moto serves DynamoDB from one Python process: on this kind of machine about 4,000
written items a second, so a window that writes a few thousand items spends most of
its time waiting for moto. dynalite (Apache-2.0) implements DynamoDB's API on Node,
its tables in memory; it is not DynamoDB either, but it is not bound by the
interpreter that runs the job, so a figure measured on both tells how much of it the
store sets. It is installed once with ``npm ci`` from the lockfile beside this module
into ``$FEATUREKUBE_CACHE/bench/dynalite-<version>``; without Node the benchmarks
that use it say so and measure on moto alone.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from benchmarks.peers import feast as feast_peer
from featurekube._platform import processes

__all__ = ["VERSION", "available", "start"]

VERSION = "4.0.0"
"""The dynalite release, as ``dynalite/package.json`` pins it."""
_LOCK = Path(__file__).parent / "dynalite"


def available() -> str | None:
    """None when dynalite can be installed and run here, else why not."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not found on PATH" if missing else None


def _install() -> Path:
    """dynalite's command-line entry point, installed first if it is not yet."""
    home = feast_peer.cache() / "bench" / f"dynalite-{VERSION}"
    cli = home / "node_modules" / "dynalite" / "cli.js"
    if cli.exists():
        return cli
    home.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(_LOCK / name, home / name)
    # Its tables live in memory (memory-level): no native module needs building.
    subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=home,
        check=True,
        timeout=600,
    )
    return cli


def start(tmp: Path) -> tuple[int, str]:
    """Start dynalite on a free loopback port, logging to ``tmp``; its pid and endpoint.

    Tables are active as soon as they are created, as moto's are. Waits (up to a
    minute) until it answers; the caller stops it with ``processes.stop``.
    """
    cli = _install()
    port = processes.free_port()
    argv = ["node", str(cli), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"]
    pid = processes.spawn(argv, tmp / "dynalite.log")
    endpoint = f"http://127.0.0.1:{port}"
    if not processes.wait_until(lambda: processes.http_ok(endpoint), 60):
        processes.stop(pid)
        raise RuntimeError(
            f"dynalite did not answer at {endpoint}: {processes.tail(tmp / 'dynalite.log')}"
        )
    return pid, endpoint
