"""Conflict rules: a disagreement between steps is settled by the first declared rule that applies, with
every rule tried recorded; when none applies the conflict stays unresolved (the run then waits)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.conflicts import reconcile
from orchestrator.workflows import FactSpec

HOME = {"line1": "1 High St", "city": "Leeds", "postcode": "LS1 1AA", "country": "GB"}
MOVED = {"line1": "9 Low Rd", "city": "York", "postcode": "YO1 9ZZ", "country": "GB"}
AGENTS = {"bureau": "bureau-agent", "ledger": "ledger-agent", "model": "score-model"}


def address_fact(rules: list[Any], **sources: dict[str, Any]) -> FactSpec:
    bureau = {"step": "bureau", "field": "address", "as_of": "address_reported", "freshness": "batch"}
    ledger = {"step": "ledger", "field": "address", "as_of": "address_updated", "freshness": "real-time"}
    return FactSpec.model_validate(
        {
            "name": "address",
            "compare": "address",
            "sources": [{**bureau, **sources.get("bureau", {})}, {**ledger, **sources.get("ledger", {})}],
            "rules": rules,
        }
    )


def outputs(bureau_date: str | None = "2026-01-10", ledger_date: str | None = "2026-03-01") -> dict[str, Any]:
    return {
        "bureau": {"address": HOME, "address_reported": bureau_date},
        "ledger": {"address": MOVED, "address_updated": ledger_date},
    }


def test_reports_that_agree_up_to_case_and_spacing_are_no_conflict() -> None:
    same = {**HOME, "line1": "1  high st", "postcode": "ls1 1aa"}
    result = reconcile(
        [address_fact(["prefer_real_time"])],
        {"bureau": {"address": HOME}, "ledger": {"address": same}},
        AGENTS,
    )
    assert (result.conflicts, result.facts) == ([], {"address": HOME})


def test_real_time_wins_over_batch_and_the_conflict_is_recorded_with_the_rule_that_fired() -> None:
    result = reconcile([address_fact(["prefer_real_time", "most_recent"])], outputs(), AGENTS)
    [conflict] = result.conflicts
    assert (conflict["status"], conflict["rule"], conflict["chosen"]) == (
        "resolved",
        "prefer_real_time",
        "ledger",
    )
    assert conflict["value"] == MOVED
    assert [r["agent"] for r in conflict["reports"]] == ["bureau-agent", "ledger-agent"]
    assert conflict["rules_tried"] == [
        {"rule": "prefer_real_time", "applies": True, "why": conflict["detail"]},
    ]
    assert result.facts == {"address": MOVED}


def test_the_most_recent_update_wins_when_freshness_does_not_decide() -> None:
    both_batch = {"ledger": {"freshness": "batch"}}
    result = reconcile(
        [address_fact(["prefer_real_time", "most_recent"], **both_batch)],
        outputs("2026-05-01", "2026-03-01"),
        AGENTS,
    )
    [conflict] = result.conflicts
    assert (conflict["rule"], conflict["chosen"]) == ("most_recent", "bureau")
    assert [t["applies"] for t in conflict["rules_tried"]] == [False, True]


@pytest.mark.parametrize(
    ("dates", "why"),
    [(("2026-03-01", "2026-03-01"), "equally recent"), ((None, "2026-03-01"), "no update time from bureau")],
)
def test_most_recent_does_not_apply_to_ties_or_undated_reports(
    dates: tuple[str | None, str | None], why: str
) -> None:
    result = reconcile([address_fact(["most_recent"])], outputs(*dates), AGENTS)
    [conflict] = result.conflicts
    assert conflict["status"] == "unresolved"
    assert why in conflict["rules_tried"][0]["why"]
    assert "address" not in result.facts
    assert result.unresolved == [conflict]


def test_a_specialist_wins_over_a_generalist() -> None:
    roles = {"bureau": {"authority": "specialist"}, "ledger": {"authority": "generalist"}}
    result = reconcile([address_fact(["prefer_specialist"], **roles)], outputs(), AGENTS)
    assert result.conflicts[0]["chosen"] == "bureau"


def test_no_applicable_rule_leaves_the_conflict_unresolved_instead_of_guessing() -> None:
    both_specialists = {"bureau": {"authority": "specialist"}, "ledger": {"authority": "specialist"}}
    result = reconcile([address_fact(["prefer_specialist"], **both_specialists)], outputs(), AGENTS)
    [conflict] = result.conflicts
    assert (conflict["status"], conflict["rule"], conflict["value"]) == ("unresolved", None, None)
    assert "no rule applies" in conflict["detail"]


def test_a_reviewer_settles_an_unresolved_conflict_after_the_rules_were_tried() -> None:
    result = reconcile([address_fact([])], outputs(), AGENTS, decided={"address": "bureau"})
    [conflict] = result.conflicts
    assert (conflict["status"], conflict["rule"], conflict["chosen"]) == (
        "resolved",
        "human_review",
        "bureau",
    )
    assert result.facts == {"address": HOME}


def score_fact(rules: list[Any], tolerance: float = 0) -> FactSpec:
    return FactSpec.model_validate(
        {
            "name": "risk_score",
            "compare": "number",
            "tolerance": tolerance,
            "sources": [{"step": "bureau", "field": "score"}, {"step": "model", "field": "score"}],
            "rules": rules,
        }
    )


def test_two_risk_scores_within_tolerance_agree_and_beyond_it_the_conservative_one_is_taken() -> None:
    scores = {"bureau": {"score": 702}, "model": {"score": 690}}
    assert reconcile([score_fact([{"take": "min"}], tolerance=20)], scores, AGENTS).conflicts == []
    result = reconcile([score_fact([{"take": "min"}], tolerance=5)], scores, AGENTS)
    assert (result.conflicts[0]["rule"], result.facts) == ("take:min", {"risk_score": 690})


def test_a_field_specific_rule_names_the_source_to_trust() -> None:
    scores = {"bureau": {"score": 702}, "model": {"score": 610}}
    result = reconcile([score_fact(["most_recent", {"prefer_step": "bureau"}])], scores, AGENTS)
    assert (result.conflicts[0]["rule"], result.facts) == ("prefer_step:bureau", {"risk_score": 702})


def test_a_fact_only_one_step_reported_is_taken_as_reported() -> None:
    result = reconcile([address_fact([])], {"bureau": {"address": HOME}, "ledger": {"address": None}}, AGENTS)
    assert (result.conflicts, result.facts) == ([], {"address": HOME})
