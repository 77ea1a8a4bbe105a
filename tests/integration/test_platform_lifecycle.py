"""Starting, finding and stopping the local platform, and how a failed start reads."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from featurekube import errors
from featurekube._platform import platform as local
from featurekube._platform import processes
from featurekube._platform.platform import Endpoints
from featurekube.cli import main as cli


def _fake_binaries(directory: Path, etcd_script: str) -> Path:
    directory.mkdir()
    for name in local.K8S_BINARIES:
        script = etcd_script if name == "etcd" else "#!/bin/sh\nsleep 60\n"
        path = directory / name
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


def test_a_component_that_fails_is_named_with_its_log_and_the_rest_are_stopped(
    tmp_path: Path,
) -> None:
    bin_dir = _fake_binaries(
        tmp_path / "bin",
        "#!/bin/sh\necho 'listen tcp 127.0.0.1:2379: bind: address already in use' >&2\nexit 1\n",
    )
    settings = local.PlatformSettings(
        state_dir=tmp_path / "state", k8s_bin_dir=bin_dir, start_timeout=30
    )
    started: list[int] = []
    real_spawn = processes.spawn

    def spy(*args: object, **kwargs: object) -> int:
        pid = real_spawn(*args, **kwargs)  # type: ignore[arg-type]
        started.append(pid)
        return pid

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(processes, "spawn", spy)
        with pytest.raises(errors.ComponentStartError) as failed:
            local.LocalPlatform(settings).start()

    assert failed.value.component == "etcd"
    assert "it exited" in str(failed.value)
    assert "address already in use" in str(failed.value)
    assert started, "moto and etcd were spawned"
    assert not any(processes.is_running(pid) for pid in started), "nothing is left running"
    assert local.LocalPlatform(settings).endpoints() is None


def test_missing_binaries_are_reported_with_the_way_to_build_them(tmp_path: Path) -> None:
    settings = local.PlatformSettings(state_dir=tmp_path / "state", k8s_bin_dir=tmp_path)

    with pytest.raises(errors.PlatformError, match="make platform-bin"):
        local.LocalPlatform(settings).start()


def test_dev_up_finds_the_running_platform_and_env_prints_its_variables(
    platform: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = str(platform.kubeconfig.parent)

    assert cli.main(["dev", "up", "--state-dir", state_dir]) == 0
    up = capsys.readouterr()
    assert "already running" in up.err
    assert cli.main(["dev", "env", "--state-dir", state_dir]) == 0
    env = capsys.readouterr().out

    assert f"export KUBECONFIG={platform.kubeconfig}" in env.splitlines()
    assert f"export AWS_ENDPOINT_URL={platform.aws_endpoint_url}" in env.splitlines()
    assert env == up.out
    assert all(processes.is_running(pid) for pid in platform.pids.values())


def test_dev_env_without_a_platform_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["dev", "env", "--state-dir", str(tmp_path)]) == 1
    assert "featurekube dev up" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_dev_up_then_down_from_the_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    featurekube = [sys.executable, "-m", "featurekube.cli.main"]
    state = ["--state-dir", str(tmp_path / "state")]

    up = subprocess.run(
        [*featurekube, "dev", "up", *state], capture_output=True, text=True, timeout=300
    )
    assert up.returncode == 0, up.stderr
    endpoints = local.LocalPlatform(
        local.PlatformSettings(state_dir=tmp_path / "state")
    ).endpoints()
    assert endpoints is not None
    assert f"export KUBECONFIG={endpoints.kubeconfig}" in up.stdout.splitlines()
    # The platform outlives the command that started it.
    assert all(processes.is_running(pid) for pid in endpoints.pids.values())

    down = subprocess.run(
        [*featurekube, "dev", "down", *state], capture_output=True, text=True, timeout=120
    )

    assert down.returncode == 0, down.stderr
    assert not any(processes.is_running(pid) for pid in endpoints.pids.values())
    assert (tmp_path / "state" / "logs" / "kube-apiserver.log").stat().st_size > 0
