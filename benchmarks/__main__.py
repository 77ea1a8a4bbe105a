"""``python -m benchmarks [NAME ...]``: run all benchmarks, or those named."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks
from benchmarks import _harness, _provenance


def main(names: list[str]) -> int:
    found = sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    chosen = [n for n in found if not names or n.removeprefix("bench_") in names]
    if not chosen:
        print(f"no benchmark matches {names}; there are: {', '.join(found)}", file=sys.stderr)
        return 2
    for name in chosen:
        module = importlib.import_module(f"benchmarks.{name}")
        # The tree as it is when the run starts is what gets measured.
        git = _provenance.git_state()
        with _provenance.LoadWatch() as load:
            report = module.run()
        _harness.write(report, _provenance.collect(git, load, report.peers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
