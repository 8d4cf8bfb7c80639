"""CPU time a process has spent, read from Linux's /proc, so a benchmark can say where its time went."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads); 0 where /proc is unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU milliseconds each of several processes spends between `start()` and `per(count)`."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = processes
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = {name: cpu_seconds(pid) for name, pid in self.processes.items()}

    def per(self, count: int) -> dict[str, float]:
        """Each process's CPU ms since `start()`, divided by `count` (calls, steps)."""
        return {
            name: (cpu_seconds(pid) - self._before[name]) * 1000 / max(count, 1)
            for name, pid in self.processes.items()
        }
