"""Compliance memo: the draft the critic-refiner loop ended with, and how it ended."""

from __future__ import annotations

from typing import Any

from orchestrator.synthesis.context import SynthesisInput

LOOP_STEP = "memo"


def synthesize_compliance_memo(context: SynthesisInput) -> dict[str, Any]:
    record = context.steps.get(LOOP_STEP) or {}
    loop = record.get("loop") or {}
    written = context.outputs.get(LOOP_STEP)
    review = loop.get("review") or {}
    result: dict[str, Any] = {
        "topic": context.run_input.get("topic"),
        "rule_set": context.run_input.get("rule_set"),
        "status": loop.get("state", record.get("status", "failed")),
        "iterations": loop.get("iterations", 0),
        "max_iterations": loop.get("max_iterations"),
    }
    if written is None:
        return {**result, "status": "failed", "memo": None, "unresolved_findings": []}
    accepted = loop.get("state") == "accepted"
    return {
        **result,
        "memo": written["draft"],
        "revision": written.get("revision"),
        "score": review.get("score"),
        "passed": review.get("passed"),
        # What the reviewer still objects to, and what the drafter said it could not answer.
        "unresolved_findings": [] if accepted else review.get("findings", []),
        "drafter_unresolved": written.get("unresolved", []),
        "confidence": written.get("confidence"),
    }
