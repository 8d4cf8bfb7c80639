"""What a workflow itself requires of a step's output, on top of the skill's own output schema.

The dispatcher validates every answer against the output schema the answering agent's card declares for
the skill; an answer that fails it never leaves the dispatcher. The workflow may read more: a router reads
its route field, a confidence gate reads a number in [0, 1]. An output the workflow cannot read is a
contract violation too, handled the same way (retried once, then the step fails).
"""

from __future__ import annotations

from typing import Any

from accord.errors import AccordError
from orchestrator.workflows import CriticSpec, StepSpec, lookup


def check_step_output(step: StepSpec, agent: str, output: dict[str, Any]) -> None:
    """Raise `contract_violation` when the workflow cannot read what it needs from the output."""
    if step.min_confidence is not None:
        confidence, present = lookup(output, step.confidence_field)
        if not present or not _is_unit(confidence):
            raise AccordError(
                "contract_violation",
                f"agent {agent} reported no confidence in [0, 1] at {step.confidence_field!r}",
            )
    if step.route is not None:
        value, present = lookup(output, step.route.field)
        if not present or not isinstance(value, str | int | bool):
            raise AccordError(
                "contract_violation", f"agent {agent} reported no routable value at {step.route.field!r}"
            )


def check_critic_output(critic: CriticSpec, agent: str, output: dict[str, Any]) -> None:
    """The fields the critic's acceptance conditions read must be there."""
    missing = [c.field for c in critic.accept if not lookup(output, c.field)[1]]
    if missing:
        raise AccordError("contract_violation", f"critic {agent} reported no {', '.join(missing)}")


def confidence_of(step: StepSpec, output: dict[str, Any]) -> float | None:
    value, present = lookup(output, step.confidence_field)
    return float(value) if present and _is_unit(value) else None


def _is_unit(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
