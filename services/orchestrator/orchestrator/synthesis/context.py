"""What every synthesizer is given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SynthesisInput:
    run_input: dict[str, Any]
    # Outputs of the completed steps, each checked against its contract.
    outputs: dict[str, dict[str, Any]]
    # Every step's record as the run stores it (status, agent, route, loop, ...).
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Facts reconciled by the workflow's conflict rules (only settled ones).
    facts: dict[str, Any] = field(default_factory=dict)
