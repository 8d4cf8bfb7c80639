"""Support resolution: the router's classification plus the answer of the one specialist it selected."""

from __future__ import annotations

from typing import Any

from orchestrator.synthesis.context import SynthesisInput

ROUTER = "triage"


def synthesize_support_resolution(context: SynthesisInput) -> dict[str, Any]:
    triage = context.outputs.get(ROUTER, {})
    route = (context.steps.get(ROUTER) or {}).get("route") or {}
    selected = list(route.get("selected", []))
    answers = [(step, context.outputs[step]) for step in selected if step in context.outputs]
    result: dict[str, Any] = {
        "ticket_id": triage.get("ticket_id", context.run_input.get("ticket_id")),
        "customer_id": triage.get("customer_id"),
        "category": triage.get("category"),
        "priority": triage.get("priority"),
        "summary": triage.get("summary"),
        "routed_to": selected,
        "not_taken": route.get("not_taken", []),
    }
    if not answers:
        # The selected specialist gave no usable answer: a person takes the ticket.
        return {**result, "status": "unresolved", "resolution": None, "actions": [], "escalate": True}
    step, answer = answers[0]
    confidences = [c for c in (triage.get("confidence"), answer.get("confidence")) if c is not None]
    return {
        **result,
        "status": "resolved",
        "specialist": (context.steps.get(step) or {}).get("agent"),
        "resolution": answer["resolution"],
        "actions": answer["actions"],
        "escalate": answer["escalate"],
        "confidence": min(confidences) if confidences else None,
    }
