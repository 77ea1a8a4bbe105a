"""``python -m benchmarks [NAME ...]``: run all benchmarks, or those named."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks
from benchmarks import _harness


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
        _harness.write(module.run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
