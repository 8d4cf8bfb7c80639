"""Synthesizers turn validated step outputs into a workflow's final result, with the rules that fired.

A synthesizer sees only what the engine accepted: outputs that met their contracts, the steps' records
(status, route, critic loop) and the facts reconciled by the workflow's conflict rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.synthesis.compliance import synthesize_compliance_memo
from orchestrator.synthesis.context import SynthesisInput
from orchestrator.synthesis.credit_risk import synthesize_credit_risk
from orchestrator.synthesis.joint_credit import synthesize_joint_credit_risk
from orchestrator.synthesis.support import synthesize_support_resolution

Synthesizer = Callable[[SynthesisInput], dict[str, Any]]


def _credit_risk(context: SynthesisInput) -> dict[str, Any]:
    result = synthesize_credit_risk(context.run_input, context.outputs)
    result["facts"] = context.facts
    return result


def _collect(context: SynthesisInput) -> dict[str, Any]:
    """No decision of its own: every completed step's output, and the reconciled facts."""
    return {"outputs": context.outputs, "facts": context.facts}


SYNTHESIZERS: dict[str, Synthesizer] = {
    "collect": _collect,
    "credit-risk": _credit_risk,
    "support-resolution": synthesize_support_resolution,
    "compliance-memo": synthesize_compliance_memo,
    "joint-credit-risk": synthesize_joint_credit_risk,
}

__all__ = ["SYNTHESIZERS", "SynthesisInput", "Synthesizer"]
