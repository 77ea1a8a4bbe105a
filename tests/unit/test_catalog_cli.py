"""``featurekube ui``: its options, and the refusals it makes before connecting; no I/O."""

from __future__ import annotations

import pytest

from featurekube import errors
from featurekube.cli import main, ui


def parse(*argv: str) -> object:
    return main.build_parser().parse_args(["ui", *argv])


def test_defaults_listen_on_the_loopback_and_list_every_namespace() -> None:
    args = parse()
    assert (args.host, args.port, args.namespace, args.refresh) == ("127.0.0.1", 8080, [], 5.0)


def test_namespaces_repeat() -> None:
    args = parse("--port", "9000", "--namespace", "rides", "--namespace", "payments")
    assert (args.port, args.namespace) == (9000, ["rides", "payments"])


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (("--port", "0"), "--port 0: expected a TCP port"),
        (("--refresh", "0.1"), "--refresh 0.1: expected 0.5 to 600 seconds"),
        (("--prometheus", "prometheus:9090"), "expected an http:// or https:// URL"),
        (("--host", "my host"), "--host 'my host': expected an IP address"),
    ],
)
def test_bad_options_are_refused_before_connecting(argv: tuple[str, ...], complaint: str) -> None:
    with pytest.raises(errors.FeaturekubeError, match=complaint):
        ui._check(parse(*argv))  # type: ignore[arg-type]


def test_a_refusal_is_one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["ui", "--port", "70000"]) == 1
    assert capsys.readouterr().err == (
        "featurekube: error: --port 70000: expected a TCP port, 1 to 65535\n"
    )
