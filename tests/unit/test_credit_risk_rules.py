"""Credit-risk synthesis: explicit rules, most severe effect wins, every fired rule reported."""

from __future__ import annotations

from typing import Any

from orchestrator.synthesis.credit_risk import synthesize_credit_risk

INPUT = {"applicant_id": "A", "requested_amount": 9000}
ADDRESS = {"line1": "1 High St", "city": "Leeds", "postcode": "LS1 1AA", "country": "GB"}


def outputs(**overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    base: dict[str, dict[str, Any]] = {
        "sanctions": {"status": "clear", "best_score": 40.0, "matches": [], "confidence": 0.9},
        "bureau": {
            "found": True,
            "score": 720,
            "thin_file": False,
            "delinquencies_24m": 0,
            "utilization": 0.3,
            "inquiries_6m": 1,
            "address": ADDRESS,
            "address_reported": "2026-01-01",
            "confidence": 0.9,
        },
        "ledger": {
            "found": True,
            "months_observed": 12,
            "avg_monthly_inflow": 4000.0,
            "avg_monthly_outflow": 2500.0,
            "net_monthly": 1500.0,
            "income_volatility": 0.1,
            "gambling_share": 0.0,
            "address": ADDRESS,
            "address_updated": "2026-01-01",
            "confidence": 0.9,
        },
    }
    for step, fields in overrides.items():
        base[step] = {**base[step], **fields}
    return base


def rules(result: dict[str, Any]) -> set[str]:
    return {r["rule"] for r in result["reasons"]}


def test_a_clean_applicant_is_approved_with_an_explicit_reason() -> None:
    result = synthesize_credit_risk(INPUT, outputs())
    assert result["decision"] == "approve"
    assert rules(result) == {"all_checks_passed"}


def test_a_sanctions_hit_declines_whatever_else_is_true() -> None:
    result = synthesize_credit_risk(INPUT, outputs(sanctions={"status": "hit", "best_score": 97.0}))
    assert result["decision"] == "decline"
    assert "sanctions_hit" in rules(result)


def test_a_potential_match_refers() -> None:
    result = synthesize_credit_risk(
        INPUT, outputs(sanctions={"status": "potential_match", "best_score": 85.0})
    )
    assert result["decision"] == "refer"
    assert rules(result) == {"sanctions_potential_match"}


def test_the_most_severe_effect_wins_and_all_fired_rules_are_reported() -> None:
    result = synthesize_credit_risk(
        INPUT, outputs(bureau={"thin_file": True}, ledger={"gambling_share": 0.4})
    )
    assert result["decision"] == "decline"
    assert {"thin_credit_file", "heavy_gambling"} <= rules(result)


def test_a_missing_specialist_result_refers_instead_of_approving() -> None:
    partial = outputs()
    del partial["ledger"]
    result = synthesize_credit_risk(INPUT, partial)
    assert result["decision"] == "refer"
    assert "ledger_unavailable" in rules(result)


def test_conflicting_addresses_refer() -> None:
    moved = {**ADDRESS, "line1": "9 Park Rd", "postcode": "M1 2AB"}
    result = synthesize_credit_risk(INPUT, outputs(ledger={"address": moved}))
    assert result["decision"] == "refer"
    assert "address_mismatch" in rules(result)


def test_an_unaffordable_amount_declines() -> None:
    result = synthesize_credit_risk({**INPUT, "requested_amount": 60000}, outputs())
    assert result["decision"] == "decline"
    assert "unaffordable" in rules(result)


def test_only_the_most_severe_tier_of_a_rule_family_is_reported() -> None:
    result = synthesize_credit_risk(
        {**INPUT, "requested_amount": 60000}, outputs(ledger={"gambling_share": 0.4})
    )
    assert "stretched_affordability" not in rules(result)
    assert "notable_gambling" not in rules(result)
    assert {"unaffordable", "heavy_gambling"} <= rules(result)
