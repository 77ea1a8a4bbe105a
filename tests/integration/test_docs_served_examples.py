"""The documentation's examples that need a feature server, run against the one the
same page starts: its `featurekube serve` command, with its rows, on a free port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from featurekube._platform import processes
from featurekube.cli import main as cli

if TYPE_CHECKING:
    from featurekube._platform.platform import Endpoints

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "hack" / "docs"))

import examples  # noqa: E402

BLOCKS = examples.read_blocks(REPO / "docs")
PAGES = sorted({b.page for b in BLOCKS if b.needs_server})
DOCUMENTED_PORT = "50051"


def _serve_command(page: str) -> list[str]:
    for block in BLOCKS:
        if block.page == page and block.language == "sh":
            for words in examples.iter_commands(block.code):
                if words[:2] == ["featurekube", "serve"]:
                    return words
    raise AssertionError(f"{page} needs a feature server but starts none with featurekube serve")


def _rows(page: str) -> str:
    found = [
        b.code
        for b in BLOCKS
        if b.page == page and b.language == "yaml" and b.code.startswith("featureView:")
    ]
    assert found, f"{page}: no rows for --data"
    return found[0]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(params=PAGES)
def served_page(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, int]]:
    page: str = request.param
    port = processes.free_port()
    (tmp_path / "rows.yaml").write_text(_rows(page), encoding="utf-8")
    words = _serve_command(page)
    args = [
        str(tmp_path / "rows.yaml") if w == "rows.yaml" else str(port) if w == "50051" else w
        for w in words[1:]
    ]
    server = subprocess.Popen(
        [sys.executable, "-m", "featurekube.cli.main", *args], cwd=REPO, stderr=subprocess.PIPE
    )
    try:
        ready = processes.wait_until(
            lambda: _port_open(port), 60, abort=lambda: server.poll() is not None
        )
        assert ready, server.stderr.read().decode() if server.stderr else "not ready"
        yield page, port
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


def test_examples_that_need_a_server_run_against_the_page_s_own(
    served_page: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    page, port = served_page
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for block in BLOCKS:
        if block.page == page and block.language == "python" and block.needs_server:
            code = block.code.replace(f"localhost:{DOCUMENTED_PORT}", f"localhost:{port}")
            exec(compile(code, block.where, "exec"), namespace)
    for block in BLOCKS:
        if block.page == page and block.language == "sh":
            for words in examples.iter_commands(block.code):
                if words[:2] == ["featurekube", "get"]:
                    args = [w.replace(DOCUMENTED_PORT, str(port)) for w in words[1:]]
                    assert cli.main(args) == 0
                    assert "PRESENT" in capsys.readouterr().out


def test_plan_commands_of_the_docs_run_against_a_cluster(
    platform: Endpoints, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    commands = [
        words
        for block in BLOCKS
        if block.language == "sh"
        for words in examples.iter_commands(block.code)
        if words[:2] == ["featurekube", "plan"]
    ]
    assert commands

    for words in commands:
        status = cli.main(words[1:])
        out = capsys.readouterr().out

        # 2: DIR would change the cluster (these namespaces hold none of it yet).
        assert status == 2, f"`{' '.join(words)}`"
        assert "Plan: " in out
