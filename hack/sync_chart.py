"""Copy the chart's generated inputs into charts/featurekube, or check they are current.

The chart holds copies, never its own versions, of:

- the featurekube CRDs generated into ``crds/`` (``make crds``);
- kopf's peering CRDs, ``operator/manifests/kopf-peering-crds.yaml``;
- the operator's ClusterRole, ``operator/manifests/rbac.yaml``, whose rules the
  chart's ClusterRole template reads with ``.Files.Get``.

    python hack/sync_chart.py          # copy; prints what changed
    python hack/sync_chart.py --check  # exit 1, naming each stale copy, if any differs

Reads and writes files under the repository only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "featurekube"


def copies(repo: Path = REPO) -> dict[Path, Path]:
    """Each copy in the chart, mapped to its source; paths relative to ``repo``."""
    chart = CHART.relative_to(REPO)
    pairs = {
        chart / "crds" / source.name: source.relative_to(repo)
        for source in sorted((repo / "crds").glob("*.yaml"))
    }
    manifests = Path("operator") / "manifests"
    pairs[chart / "crds" / "kopf.dev_peerings.yaml"] = manifests / "kopf-peering-crds.yaml"
    pairs[chart / "files" / "operator-rbac.yaml"] = manifests / "rbac.yaml"
    return pairs


def stale(repo: Path = REPO) -> list[str]:
    """What differs between the chart and its sources, one line each; empty when current."""
    pairs = copies(repo)
    problems = [
        f"{copy} differs from {source}"
        for copy, source in pairs.items()
        if not (repo / copy).is_file() or (repo / copy).read_bytes() != (repo / source).read_bytes()
    ]
    wanted = {copy for copy in pairs if copy.parent.name == "crds"}
    problems += [
        f"{path.relative_to(repo)} has no source"
        for path in sorted((repo / CHART.relative_to(REPO) / "crds").glob("*"))
        if path.relative_to(repo) not in wanted
    ]
    return problems


def sync(repo: Path = REPO) -> list[str]:
    """Make the chart's copies equal their sources; return the paths changed."""
    changed = []
    pairs = copies(repo)
    for copy, source in pairs.items():
        target = repo / copy
        data = (repo / source).read_bytes()
        if not target.is_file() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            changed.append(str(copy))
    for path in sorted((repo / CHART.relative_to(REPO) / "crds").glob("*")):
        if path.relative_to(repo) not in pairs:
            path.unlink()
            changed.append(f"{path.relative_to(repo)} (removed)")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for line in problems:
            print(f"stale: {line} (run: python hack/sync_chart.py)", file=sys.stderr)
        return 1 if problems else 0
    for line in sync():
        print(f"updated {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
