"""Which step of which run a dispatch is for: what its task grant and its signatures are bound to.

The grant itself is issued by the gateway relay when it relays the step's message (the tools the agent's
card declares for the skill, cut down by the agent's tool policy, bound to this run and step and to the
step's scalar inputs, until the step's deadline) and revoked when the step's task ends. The orchestrator
only learns its record (`grant_id`, `scopes`, `dropped_scopes`, `expires_at`, `revoked`), signed into the
relay's reply; it never holds the grant.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepRef:
    """Which step of which run is being dispatched: the grant's and the signatures' `task` and `wf`."""

    run_id: str
    step_id: str
