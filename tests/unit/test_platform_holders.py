"""A platform held by another live process is not stopped by someone else's `dev down`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from featurekube import errors
from featurekube._platform import holders, platform, processes
from featurekube.cli import main as cli

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(SLEEP)
    processes.wait_until(lambda: holders.process_command(child.pid) != "", 5)
    yield child
    child.kill()
    child.wait()


def _fake_platform(state_dir: Path) -> platform.LocalPlatform:
    """A state directory whose recorded "moto" is a sleeping Python process."""
    moto = processes.spawn(SLEEP, state_dir / "logs" / "moto.log")
    processes.wait_until(lambda: holders.process_command(moto) != "", 5)
    endpoints = platform.Endpoints(
        kubeconfig=state_dir / "kubeconfig",
        kubeconfig_unprivileged=state_dir / "kubeconfig-unprivileged",
        apiserver_url="https://127.0.0.1:1",
        aws_endpoint_url="http://127.0.0.1:2",
        region="us-east-1",
        pids={"moto": moto},
        log_dir=state_dir / "logs",
        started_by="make demo",
        started_at="2026-12-03T07:00:00+00:00",
    )
    (state_dir / "platform.json").write_text(endpoints.to_json())
    return platform.LocalPlatform(platform.PlatformSettings(state_dir=state_dir))


def test_a_holder_counts_while_it_runs_and_is_forgotten_when_it_dies(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    with holders.hold(tmp_path, pid=sleeper.pid):
        assert [h.pid for h in holders.live_holders(tmp_path)] == [sleeper.pid]
        sleeper.kill()
        sleeper.wait()

        assert holders.live_holders(tmp_path) == []


def test_this_process_s_own_hold_does_not_stop_it_from_stopping(tmp_path: Path) -> None:
    local = _fake_platform(tmp_path)
    moto = local.endpoints().pids["moto"]  # type: ignore[union-attr]

    with local.hold():
        assert local.stop() is True

    assert not processes.is_running(moto)


def test_down_refuses_a_platform_another_process_holds_and_names_it(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    local = _fake_platform(tmp_path)
    moto = local.endpoints().pids["moto"]  # type: ignore[union-attr]

    with holders.hold(tmp_path, pid=sleeper.pid):
        status = cli.main(["dev", "down", "--state-dir", str(tmp_path)])
        err = capsys.readouterr().err
        with pytest.raises(errors.PlatformInUseError):
            local.stop()
        assert processes.is_running(moto)
        assert cli.main(["dev", "down", "--state-dir", str(tmp_path), "--force"]) == 0

    assert status == 1
    assert err.startswith(
        f"featurekube: error: the local platform in {tmp_path} is in use by pid {sleeper.pid} "
        f"(`{' '.join(SLEEP)}`, since "
    )
    assert err.rstrip().endswith(
        "stop that first, or run `featurekube dev down --force` to stop the platform anyway"
    )
    assert not processes.is_running(moto)
    assert f"stopped the local platform in {tmp_path}" in capsys.readouterr().err


def test_up_says_it_reuses_a_running_platform_and_whose_it_is(tmp_path: Path) -> None:
    local = _fake_platform(tmp_path)
    running = local.endpoints()
    assert running is not None

    from featurekube.cli import dev

    line = dev.describe_reuse(tmp_path, running)
    local.stop()

    assert line == (
        f"already running: reusing the local platform in {tmp_path} (started at "
        "2026-12-03T07:00:00+00:00 by `make demo`); it is shared with whoever else uses "
        "this state directory (--state-dir or $FEATUREKUBE_STATE_DIR picks another)"
    )


def test_down_of_an_empty_state_directory_says_nothing_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["dev", "down", "--state-dir", str(tmp_path)]) == 0
    assert f"no local platform was running in {tmp_path}" in capsys.readouterr().err
