"""Crash injection for the durability tests (test-only: never set in a deployment).

`ACCORD_FAULT_KILL_AT=<point>` makes the orchestrator kill itself with SIGKILL, as a crash would, the
first time execution reaches that point; nothing is flushed or closed. The points:

- `before_dispatch`: a step is about to be sent to its agent (nothing sent yet);
- `after_accepted`: an agent accepted a step and the checkpoint holding its task id is written;
- `mid_stream`: a streamed reply has delivered its first event, the rest is still coming;
- `after_completed`: an agent answered a step, before the orchestrator recorded the answer;
- `during_checkpoint_write`: a checkpoint's UPDATE has run, its transaction is not committed;
- `during_synthesis`: every step settled, before the run's result is written.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "ACCORD_FAULT_KILL_AT"
POINTS = frozenset(
    {
        "before_dispatch",
        "after_accepted",
        "mid_stream",
        "after_completed",
        "during_checkpoint_write",
        "during_synthesis",
    }
)


def reached(point: str) -> None:
    """Die here if the environment names this point."""
    assert point in POINTS, point
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
