"""Joint credit risk: each applicant assessed by a credit-risk run of its own (possibly on another
orchestrator); the joint decision is the most severe of the two, and a missing assessment refers."""

from __future__ import annotations

from typing import Any

from orchestrator.synthesis.context import SynthesisInput

ROLES = ("primary", "co_applicant")
_SEVERITY = {"approve": 0, "refer": 1, "decline": 2}


def synthesize_joint_credit_risk(context: SynthesisInput) -> dict[str, Any]:
    applicants: list[dict[str, Any]] = []
    reasons: list[dict[str, Any]] = []
    for role in ROLES:
        run = context.outputs.get(role)
        result = (run or {}).get("result") or {}
        decision = result.get("decision") if run and run.get("status") == "completed" else None
        applicants.append(
            {
                "role": role,
                "applicant_id": (context.run_input.get(role) or {}).get("applicant_id"),
                "decision": decision or "refer",
                "run_id": (run or {}).get("run_id"),
                "run_status": (run or {}).get("status", "unavailable"),
            }
        )
        if decision is None:
            reasons.append(
                {"rule": f"{role}_unassessed", "effect": "refer", "detail": f"no decision for {role}"}
            )
        for reason in result.get("reasons", []):
            if reason.get("effect") != "approve":
                reasons.append({**reason, "applicant": role})
    decision = max((a["decision"] for a in applicants), key=_SEVERITY.__getitem__)
    return {
        "decision": decision,
        "applicants": applicants,
        "reasons": reasons or [{"rule": "all_checks_passed", "effect": "approve", "detail": "both approved"}],
    }
