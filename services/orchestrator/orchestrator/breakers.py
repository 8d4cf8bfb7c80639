"""Circuit breakers per agent: an agent that keeps failing is taken out of rotation, then probed.

`closed`: the agent gets steps. After `threshold` failures in a row (unreachable, timed out, failed the
step, broke its contract: never a refusal of the caller's own bad input) it is `open` for `open_s`: no step
is sent to it, the next agent offering the skill gets it instead. Then it is `half_open`: one step is let
through as a probe; its success closes the breaker, its failure opens it again for another `open_s`.
State lives in this process (each replica judges the agents it uses); every change is reported to
`on_change` (the `/metrics` gauge).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)


@dataclass
class _Breaker:
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False


class CircuitBreakers:
    def __init__(
        self,
        threshold: int = 3,
        open_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        if threshold < 1 or open_s <= 0:
            raise ValueError("a breaker needs a threshold >= 1 and a positive open time")
        self._threshold = threshold
        self._open_s = open_s
        self._clock = clock
        self._breakers: dict[str, _Breaker] = {}
        self.on_change = on_change

    def state(self, agent: str) -> str:
        breaker = self._breakers.get(agent)
        if breaker is None:
            return CLOSED
        if breaker.state == OPEN and self._clock() >= breaker.opened_at + self._open_s:
            self._set(agent, breaker, HALF_OPEN)
        return breaker.state

    def admit(self, agent: str) -> bool:
        """Whether a step may go to `agent` now; a half-open agent admits one probe at a time."""
        state = self.state(agent)
        if state == CLOSED:
            return True
        breaker = self._breakers[agent]
        if state == HALF_OPEN and not breaker.probing:
            breaker.probing = True
            return True
        return False

    def succeeded(self, agent: str) -> None:
        breaker = self._breakers.get(agent)
        if breaker is None:
            return
        breaker.failures, breaker.probing = 0, False
        if breaker.state != CLOSED:
            self._set(agent, breaker, CLOSED)

    def failed(self, agent: str) -> None:
        breaker = self._breakers.setdefault(agent, _Breaker())
        breaker.failures += 1
        if breaker.state == HALF_OPEN or breaker.failures >= self._threshold:
            breaker.opened_at, breaker.probing = self._clock(), False
            self._set(agent, breaker, OPEN)

    def _set(self, agent: str, breaker: _Breaker, state: str) -> None:
        if breaker.state == state and state != OPEN:
            return
        breaker.state = state
        if self.on_change is not None:
            self.on_change(agent, state)
