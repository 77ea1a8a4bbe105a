"""Which token the online client sends, and when it reads it again; files only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from featurekube import errors
from featurekube.online import client


def test_a_given_token_is_sent_as_is() -> None:
    assert client._TokenSource("abc", None, secure=False).read() == "abc"


def test_a_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    source = client._TokenSource(None, path, secure=False)
    assert source.read() == "first"
    path.write_text("second-and-longer\n")
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))
    assert source.read() == "second-and-longer"


def test_the_pod_token_is_sent_only_over_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod_token = tmp_path / "sa-token"
    pod_token.write_text("pod")
    monkeypatch.setattr(client, "SERVICE_ACCOUNT_TOKEN", pod_token)
    monkeypatch.delenv(client.TOKEN_FILE_ENV, raising=False)

    assert client._TokenSource(None, None, secure=False).read() is None
    assert client._TokenSource(None, None, secure=True).read() == "pod"

    named = tmp_path / "named"
    named.write_text("named")
    monkeypatch.setenv(client.TOKEN_FILE_ENV, str(named))
    assert client._TokenSource(None, None, secure=False).read() == "named"


def test_a_missing_token_file_or_ca_file_is_named(tmp_path: Path) -> None:
    source = client._TokenSource(None, tmp_path / "gone", secure=True)
    with pytest.raises(errors.FeaturekubeError, match=r"cannot read the token file .*gone"):
        source.read()
    with pytest.raises(errors.FeaturekubeError, match=r"cannot read the CA file .*nope\.crt"):
        client.OnlineClient("localhost:1", ca_file=tmp_path / "nope.crt")
