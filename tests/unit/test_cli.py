from __future__ import annotations

from pathlib import Path

import pytest

from featurekube import errors
from featurekube.cli import main as cli


def test_dev_commands_parse_with_a_state_dir() -> None:
    args = cli.build_parser().parse_args(["dev", "up", "--state-dir", "/s", "--crds", "crds"])

    assert args.state_dir == Path("/s")
    assert args.crds == [Path("crds")]


def test_dev_up_node_says_whether_the_spark_operator_runs_and_how_to_get_it(
    tmp_path: Path,
) -> None:
    from featurekube._platform import platform
    from featurekube.cli import dev

    def described(*flags: str, installed: str = "") -> str:
        args = cli.build_parser().parse_args(["dev", "up", "--node", *flags])
        local = dev._platform(args)
        endpoints = platform.Endpoints(
            kubeconfig=tmp_path / "kubeconfig",
            kubeconfig_unprivileged=tmp_path / "kubeconfig-unprivileged",
            apiserver_url="https://10.250.0.1:6443",
            aws_endpoint_url="http://10.250.0.1:4566",
            region="us-east-1",
            pids={},
            log_dir=tmp_path,
            node="featurekube-node",
            spark_operator=installed,
        )
        return dev._describe_spark_operator(local, endpoints)

    assert described(installed="v2.5.0") == "v2.5.0 in namespace spark-operator"
    assert described().startswith("not installed: its image is not built: `make spark-operator`")
    assert described("--no-spark-operator") == "not installed (--no-spark-operator)"


def test_a_missing_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["dev"])

    assert exited.value.code == 2
    assert "up" in capsys.readouterr().err


def test_materialize_help_says_how_windows_meet_aggregation_boundaries(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["materialize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "need not be on an aggregationInterval boundary" in text
    assert "start <= t < end" in text


def test_materialize_help_states_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["materialize", "--help"])
    text = " ".join(capsys.readouterr().out.split())

    assert "see above" not in text
    assert "$FEATUREKUBE_OFFLINE_URI=s3://featurekube/offline" in text
    assert "$FEATUREKUBE_TABLE_PREFIX=featurekube." in text


def test_verbose_is_taken_before_or_after_the_subcommand() -> None:
    parser = cli.build_parser()

    assert parser.parse_args(["-v", "validate", "x"]).verbose
    assert parser.parse_args(["validate", "x", "--verbose"]).verbose
    assert not parser.parse_args(["validate", "x"]).verbose


def test_an_error_is_one_line_and_verbose_adds_its_detail_and_cause() -> None:
    try:
        try:
            raise OSError("connection refused")
        except OSError as cause:
            raise errors.SourceError("View a/b: spec.source: unreadable: check it\nlisting") from (
                cause
            )
    except errors.SourceError as exc:
        error = exc

    assert cli.render_error(error, verbose=False) == (
        "featurekube: error: View a/b: spec.source: unreadable: check it (more with --verbose)"
    )
    verbose = cli.render_error(error, verbose=True)
    assert verbose.startswith("featurekube: error: View a/b: spec.source: unreadable: check it\n")
    assert "listing\ncaused by: OSError: connection refused" in verbose


def test_get_without_a_server_says_where_it_looked_and_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from featurekube._platform import processes

    target = f"127.0.0.1:{processes.free_port()}"  # nothing listens there

    status = cli.main(["get", "--target", target, "--entity", "driver_id=1", "--timeout", "2"])

    assert status == 1
    assert capsys.readouterr().err == (
        f"featurekube: error: UNAVAILABLE: no feature server answered at {target} within 2.0 s: "
        "pass --target HOST:PORT (a FeatureService's status.endpoint), or start one with "
        "`featurekube serve` (more with --verbose)\n"
    )
