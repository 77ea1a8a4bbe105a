"""Every code example of the documentation runs or is checked here (the site's pages
under docs/, and the docstring examples of the Python API pages).

- ``python``: a page's blocks run in order, in one namespace, from the repository root;
  blocks that need a feature server run in tests/integration/test_docs_served_examples.py,
  and blocks that read a cluster's stores are only compiled.
- ``yaml``: a page's FeatureViews and FeatureServices are validated as one feature repo,
  as ``featurekube validate`` does; other documents must parse.
- ``sh``: ``featurekube validate`` runs; every other ``featurekube`` command must parse;
  make targets must exist; files of the repository that a command names must exist, and
  the chart's values that ``helm --set`` sets must be values of the chart.
"""

from __future__ import annotations

import doctest
import importlib
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from featurekube import validation
from featurekube.cli import main as cli

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "hack" / "docs"))

import examples  # noqa: E402

BLOCKS = examples.read_blocks(REPO / "docs")
PAGES = sorted({block.page for block in BLOCKS})
RESOURCE_KINDS = {"FeatureView", "FeatureService"}
OUR_CHART = "charts/featurekube"


def _blocks(page: str, language: str) -> list[examples.Block]:
    return [b for b in BLOCKS if b.page == page and b.language == language]


def _pages_with(language: str) -> list[str]:
    return [page for page in PAGES if _blocks(page, language)]


def test_the_pages_have_examples_of_every_kind() -> None:
    languages = {block.language for block in BLOCKS}

    assert {"python", "yaml", "sh"} <= languages


@pytest.mark.parametrize("page", _pages_with("python"))
def test_python_examples_run(page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for block in _blocks(page, "python"):
        code = compile(block.code, block.where, "exec")
        if block.needs_server or block.needs_cluster:
            continue
        exec(code, namespace)


@pytest.mark.parametrize("page", _pages_with("yaml"))
def test_yaml_examples_are_valid(page: str, tmp_path: Path) -> None:
    resources = []
    for block in _blocks(page, "yaml"):
        documents = [d for d in yaml.safe_load_all(block.code) if d is not None]
        assert documents, f"{block.where}: an empty YAML example"
        if any(isinstance(d, dict) and d.get("kind") in RESOURCE_KINDS for d in documents):
            resources.append(block)
    for index, block in enumerate(resources):
        (tmp_path / f"{index}.yaml").write_text(block.code, encoding="utf-8")

    report = validation.validate_path(tmp_path)

    assert [str(p) for p in report.problems] == []


def _chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((REPO / OUR_CHART / "values.yaml").read_text())
    return values


def _check_helm(words: list[str]) -> None:
    if OUR_CHART not in words:
        return
    values = _chart_values()
    for index, word in enumerate(words):
        if word == "--set":
            key = words[index + 1].split("=", 1)[0]
            node: Any = values
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"no chart value {key}"
                node = node[part]


def _check_command(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    program = Path(words[0]).name
    if program == "featurekube":
        args = words[1:]
        try:
            cli.build_parser().parse_args(args)
        except SystemExit as exited:
            pytest.fail(f"`{' '.join(words)}` does not parse: {capsys.readouterr().err}")
            del exited
        if args[0] == "validate":
            assert cli.main(args) == 0, capsys.readouterr()
    elif program == "make":
        targets = re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), re.MULTILINE)
        assert set(words[1:]) <= set(targets)
    elif program == "helm":
        _check_helm(words)
    for word in words[1:]:
        value = word.split("=", 1)[-1]
        if re.match(r"^(examples|docs|charts|crds|hack)/", value):
            assert (REPO / value).exists(), f"`{' '.join(words)}`: no {value}"


@pytest.mark.parametrize("page", _pages_with("sh"))
def test_shell_examples_run_or_name_what_exists(
    page: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    for block in _blocks(page, "sh"):
        for words in examples.iter_commands(block.code):
            _check_command(words, capsys)


def _documented_objects() -> list[str]:
    found = []
    for page in ("python.md", "errors.md"):
        text = (REPO / "docs" / "reference" / page).read_text(encoding="utf-8")
        found += re.findall(r"^::: ([\w.]+)$", text, re.MULTILINE)
    return found


@pytest.mark.parametrize("name", _documented_objects())
def test_docstring_examples_of_the_api_pages_run(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    module_name, _, attribute = name.rpartition(".")
    try:
        target: Any = importlib.import_module(name)
    except ModuleNotFoundError:
        target = getattr(importlib.import_module(module_name), attribute)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(target, name):
        runner.run(test)

    assert runner.failures == 0


def test_blocks_are_found_with_their_language_and_line() -> None:
    text = "intro\n\n```python\nx = 1\n```\n\n" + examples.NEEDS_SERVER + "\n\n```sh\nls\n```\n"

    found = list(examples.iter_blocks("p.md", text))

    assert [(b.language, b.line, b.code, b.needs_server) for b in found] == [
        ("python", 3, "x = 1\n", False),
        ("sh", 9, "ls\n", True),
    ]


def test_shell_commands_join_continuations_and_drop_comments() -> None:
    code = 'make up   # start\neval "$(x)"\nfeaturekube get \\\n    --entity a=1\n'

    assert list(examples.iter_commands(code)) == [
        ["make", "up"],
        ["featurekube", "get", "--entity", "a=1"],
    ]
