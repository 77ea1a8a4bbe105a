"""helm for the chart's tests: built once (cached) and run with caches of its own
(importable as ``chart_support``: pytest puts this folder on sys.path with its
conftest)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

__all__ = ["CHART", "Helm", "helm_binary"]

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "featurekube"


def helm_binary() -> Path:
    """helm from ``$FEATUREKUBE_HELM``, else built (once, cached) by hack/helm/build.sh."""
    if os.environ.get("FEATUREKUBE_HELM"):
        binary = Path(os.environ["FEATUREKUBE_HELM"])
    else:
        built = subprocess.run(
            [str(REPO / "hack" / "helm" / "build.sh")], stdout=subprocess.PIPE, text=True
        )
        assert built.returncode == 0, "hack/helm/build.sh failed: its output above says why"
        binary = Path(built.stdout.strip().splitlines()[-1])
    assert binary.is_file(), f"no helm at {binary}"
    return binary


@dataclasses.dataclass(frozen=True)
class Helm:
    """helm, with its caches and settings in a directory of the test run's own."""

    binary: Path
    home: Path

    def environment(self) -> dict[str, str]:
        """The process environment helm runs with: its caches and settings here."""
        return {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }

    def run(
        self,
        *args: str,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """``helm args``; with ``check``, a failure fails the test with helm's stderr."""
        env = self.environment()
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        done = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=env, timeout=timeout
        )
        if check and done.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done

    def template(
        self,
        values: dict[str, Any],
        tmp_path: Path,
        namespace: str = "featurekube",
        release: str = "fk",
        *extra: str,
    ) -> list[dict[str, Any]]:
        """The chart's documents rendered with ``values``."""
        path = tmp_path / f"values-{release}-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(values))
        out = self.run("template", release, str(CHART), "-n", namespace, "-f", str(path), *extra)
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]
