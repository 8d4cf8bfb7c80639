"""Step deadlines learned from how long agents take.

A step that sets no `timeout_s` gets a deadline from its agents' observed latency for its skill (one agent's
skills may differ by orders of magnitude): `factor` times the p95 of their recent calls (the slowest
candidate's, since the step may fail over to it), never below `floor_s`
nor above the configured default (`ACCORD_STEP_TIMEOUT_S`), which also applies until an agent has
`min_samples` calls behind it: a slow first call (cold caches, a model warming up) must not set a
deadline that later calls cannot meet.

Only whole, good answers are observed (a burst of fast failures must not shorten the deadline), and a
call that timed out is observed at its deadline: it took at least that long. Enough of them raise the
p95, and with it the next deadlines, so an agent that became slower for good is not timed out forever;
and a step retried after timing out on a learned deadline gets the default one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_WINDOW = 100


@dataclass(frozen=True)
class Deadline:
    """A step's deadline in seconds, and where it came from (`workflow`, `observed` or `default`)."""

    seconds: float
    source: str


class ObservedLatency:
    """Recent call durations per agent and skill, and the deadlines they suggest."""

    def __init__(
        self,
        *,
        factor: float = 4.0,
        floor_s: float = 2.0,
        min_samples: int = 20,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self._factor = factor
        self._floor_s = floor_s
        self._min_samples = min_samples
        self._window = window
        self._seconds: dict[tuple[str, str], deque[float]] = {}

    def observe(self, agent: str, skill: str, seconds: float) -> None:
        samples = self._seconds.setdefault((agent, skill), deque(maxlen=self._window))
        samples.append(max(0.0, seconds))

    def p95(self, agent: str, skill: str) -> float | None:
        """The 95th percentile of the agent's recent calls of the skill (nearest rank); None with too few."""
        samples = self._seconds.get((agent, skill))
        if samples is None or len(samples) < self._min_samples:
            return None
        ordered = sorted(samples)
        return ordered[math.ceil(0.95 * len(ordered)) - 1]

    def deadline(
        self, step_timeout_s: float | None, agents: Iterable[str], skill: str, default_s: float
    ) -> Deadline:
        """The step's own timeout if it sets one; else one learned from the candidates; else the default."""
        if step_timeout_s is not None:
            return Deadline(step_timeout_s, "workflow")
        known = [self.p95(agent, skill) for agent in agents]
        if not known or any(p is None for p in known):
            # A candidate it knows too little about may be the slow one: the step may fail over to it.
            return Deadline(default_s, "default")
        learned = max(self._floor_s, self._factor * max(p for p in known if p is not None))
        return Deadline(round(min(learned, default_s), 3), "observed")
