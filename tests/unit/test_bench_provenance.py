"""Every benchmark report says what was measured, with what, and on how busy a machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from benchmarks import _harness, _provenance
from benchmarks.peers import feast as feast_peer

REPO = Path(__file__).resolve().parents[2]


def _provenance_of(before: float, peak: float, after: float) -> dict[str, Any]:
    return {
        "git": {
            "commit": "0123456789abcdef0123",
            "branch": "main",
            "dirty": True,
            "dirty_paths": ["sdk/x.py"],
            "dirty_path_count": 1,
        },
        "versions": {"project": {"featurekube": "0.1.0"}, "java": None, "peers": {}},
        "machine": {"cpus": 2, "memory_mib": 24105},
        "load": {"before": [before, 0.0, 0.0], "peak": peak, "after": [after, 0.0, 0.0]},
    }


def _report() -> _harness.Report:
    report = _harness.Report(name="bench", description="a benchmark", baseline="peer")
    report.add("featurekube", "peak memory", "MiB", [100.0])
    report.add("peer", "peak memory", "MiB", [200.0])
    return report


def test_a_run_is_loaded_when_the_load_goes_above_the_core_count() -> None:
    assert not _provenance.is_loaded([0.4, 2.0, 1.9], cores=2)
    assert _provenance.is_loaded([0.4, 2.01], cores=2)
    assert not _provenance.is_loaded([], cores=2)


def test_the_table_marks_a_run_on_a_loaded_machine() -> None:
    quiet = _harness.render(_report(), _provenance_of(0.5, 1.5, 1.0))
    loaded = _harness.render(_report(), _provenance_of(0.5, 3.2, 1.0))

    assert "LOADED MACHINE" not in quiet
    assert "1-minute load 0.50 before, 1.50 at most during, 1.00 after, on 2 cores" in quiet
    assert "LOADED MACHINE: 1-minute load 0.50 before, 3.20 at most during" in loaded
    assert "commit 0123456789ab, 1 paths uncommitted" in loaded


def test_the_table_still_prints_without_provenance() -> None:
    table = _harness.render(_report(), None)

    assert "featurekube" in table
    assert "0.50" in table  # featurekube at half the peer's figure


def test_the_document_carries_the_provenance_beside_the_figures() -> None:
    provenance = _provenance_of(0.5, 1.5, 1.0)

    doc = _harness.document(_report(), provenance)

    assert doc["provenance"] == provenance
    assert [m["ratio_to_baseline"] for m in doc["measurements"]] == [0.5, None]
    json.dumps(doc)


def test_collect_records_the_machine_versions_and_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_provenance, "_java", lambda: "openjdk 17")  # no JVM in unit tests
    with _provenance.LoadWatch() as load:
        pass
    git = {"commit": None, "branch": None, "dirty": False, "dirty_paths": [], "dirty_path_count": 0}

    found = _provenance.collect(git, load, {"feast venv": {"feast": "0.67.0"}})

    assert found["git"] is git
    assert found["machine"]["cpus"] >= 1
    assert found["machine"]["memory_mib"] > 0
    assert found["versions"]["project"]["featurekube"]
    assert set(found["versions"]["project"]) == set(_provenance.PACKAGES)
    assert found["versions"]["peers"] == {"feast venv": {"feast": "0.67.0"}}
    assert found["versions"]["java"] == "openjdk 17"
    assert len(found["load"]["before"]) == 3
    assert found["load"]["loaded"] == _provenance.is_loaded(
        [found["load"]["before"][0], found["load"]["peak"], found["load"]["after"][0]],
        found["machine"]["cpus"],
    )
    json.dumps(found)


def test_porcelain_lists_changed_and_untracked_paths() -> None:
    text = " M benchmarks/_harness.py\nA  new.py\n?? scratch/\n"

    assert _provenance.parse_porcelain(text) == ["benchmarks/_harness.py", "new.py", "scratch/"]
    assert _provenance.parse_porcelain("") == []


def test_total_memory_is_read_in_mib() -> None:
    assert _provenance.parse_meminfo_mib("MemFree: 1 kB\nMemTotal:  2097152 kB\n") == 2048
    with pytest.raises(ValueError, match="MemTotal"):
        _provenance.parse_meminfo_mib("MemFree: 1 kB\n")


def test_git_state_names_the_commit_and_whether_the_tree_differs(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(tmp_path), "-c", "user.name=b", "-c", "user.email=b@b", *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    git("init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git("add", "a.txt")
    git("commit", "-q", "-m", "a")
    clean = _provenance.git_state(tmp_path)
    (tmp_path / "a.txt").write_text("b")

    dirty = _provenance.git_state(tmp_path)

    assert clean["commit"] == git("rev-parse", "HEAD")
    assert not clean["dirty"]
    assert dirty["dirty"]
    assert dirty["dirty_paths"] == ["a.txt"]


def test_peer_versions_are_read_from_the_peer_virtualenv(tmp_path: Path) -> None:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    for name in ("feast-0.67.0", "dask-2025.1.0", "Flask_Cors-5.0.0", "duckdb-1.2.3"):
        (site / f"{name}.dist-info").mkdir(parents=True)

    found = feast_peer.versions(tmp_path / "venv" / "bin" / "python")

    assert found == {"dask": "2025.1.0", "duckdb": "1.2.3", "feast": "0.67.0"}
