from __future__ import annotations

from pathlib import Path

import pytest

from featurekube.cli import main as cli


def test_dev_commands_parse_with_a_state_dir() -> None:
    args = cli.build_parser().parse_args(["dev", "up", "--state-dir", "/s", "--crds", "crds"])

    assert args.state_dir == Path("/s")
    assert args.crds == [Path("crds")]


def test_a_missing_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["dev"])

    assert exited.value.code == 2
    assert "up" in capsys.readouterr().err
