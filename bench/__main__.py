"""Run every benchmark module of this package (each exposes `run(echo)`), printing their figures."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from collections.abc import Callable
from typing import Protocol, cast

import bench


class Benchmark(Protocol):
    def run(self, echo: Callable[[str], None]) -> None: ...


def main(selected: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))
    unknown = set(selected) - set(names)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; available: {', '.join(names)}")
        return 2
    for name in selected or names:
        module = cast(Benchmark, importlib.import_module(f"bench.{name}"))
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        module.run(lambda line: print(line, flush=True))
        print(f"== {name} done in {time.perf_counter() - started:.1f} s\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
