"""Which step of which run a dispatch is for: what its task grant and its signatures are bound to.

The grant itself is issued by the gateway relay when it relays the step's message (the tools the agent's
card declares for the skill, cut down by the agent's tool policy, bound to this run and step and to the
step's scalar inputs, until the step's deadline) and revoked when the step's task ends. The orchestrator
only learns its record (`grant_id`, `scopes`, `dropped_scopes`, `expires_at`, `revoked`), signed into the
relay's reply; it never holds the grant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RemoteTask:
    """An agent's A2A task for one dispatch attempt, as the checkpoint keeps it."""

    agent: str
    task_id: str
    state: str


AcceptListener = Callable[[RemoteTask], Awaitable[None]]


@dataclass(frozen=True)
class StepRef:
    """Which step of which run is being dispatched: the grant's and the signatures' `task` and `wf`.

    `key` is the attempt's idempotency key (the agent runs a skill once per key); `resume` is the task a
    previous process already had accepted for this very attempt, to re-attach to instead of sending again;
    `on_accepted` hears of the agent's task as soon as the agent accepts it, before its result."""

    run_id: str
    step_id: str
    key: str | None = None
    resume: RemoteTask | None = None
    # The run's limit on tool calls, for the gateway to enforce (None: none).
    tool_call_limit: int | None = None
    # The tokens this step may spend on models, for the agent SDK to hold it to (None: no limit).
    token_allowance: int | None = None
    # The run's delegation depth limit, carried on to an orchestrator serving the step (None: none).
    depth_limit: int | None = None
    # Which try of the step this is (1: the first), and why the one before it failed.
    attempt: int = 1
    retry_reason: str | None = None
    on_accepted: AcceptListener | None = field(default=None, compare=False, repr=False)
    # Asked when the dispatch is cancelled: True when the run itself stopped (its budget is spent), so the
    # agent's task is cancelled too; otherwise (the process stopping) the task is left to re-attach to.
    stop_at_agent: Callable[[], bool] | None = field(default=None, compare=False, repr=False)
