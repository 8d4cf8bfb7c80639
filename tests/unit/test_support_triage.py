"""Ticket triage: every ticket of the data set through the real tools in process, and the rules by hand."""

from __future__ import annotations

from typing import Any

import pytest

from tests.in_process_tools import InProcessTools, load
from triage_agent.agent import agent
from triage_agent.classification import classify, priority
from triage_agent.evidence import Finding
from triage_agent.lexicon import TextReading, read_text

# What each ticket really is: the account records decide, not the words.
EXPECTED = {
    "ambiguous_refund_for_slow_internet": "network",
    "ambiguous_bill_and_connection": "network",
    "misleading_suspended_for_non_payment": "billing",
    "misleading_outage_as_billing": "network",
    "misleading_lockout_as_outage": "access",
}


def expected_category(scenario: str) -> str:
    return EXPECTED.get(scenario, scenario.split("_")[0])


def scenarios() -> list[str]:
    return sorted(t["scenario"] for t in load("support/tickets.json")["tickets"])


@pytest.fixture(scope="module")
def tools() -> InProcessTools:
    return InProcessTools()


async def triage(tools: InProcessTools, scenario: str) -> dict[str, Any]:
    ticket = next(t for t in load("support/tickets.json")["tickets"] if t["scenario"] == scenario)
    result = await tools.run(agent, "ticket-triage", {"ticket_id": ticket["ticket_id"]})
    assert (result["ticket_id"], result["customer_id"]) == (ticket["ticket_id"], ticket["customer_id"])
    return result


@pytest.mark.parametrize("scenario", [s for s in scenarios() if not s.startswith("ambiguous_")])
async def test_every_unambiguous_ticket_goes_to_the_specialist_its_records_call_for(
    tools: InProcessTools, scenario: str
) -> None:
    result = await triage(tools, scenario)
    assert result["category"] == expected_category(scenario)
    assert 0.5 <= result["confidence"] <= 1.0


@pytest.mark.parametrize("scenario", [s for s in scenarios() if s.startswith("ambiguous_")])
async def test_an_ambiguous_ticket_with_clean_records_gets_a_low_confidence(
    tools: InProcessTools, scenario: str
) -> None:
    result = await triage(tools, scenario)
    assert result["confidence"] < 0.5
    assert any("(billing)" in s for s in result["signals"])
    assert any("(network)" in s for s in result["signals"])
    assert "nothing in the account records backs it" in result["summary"]


async def test_records_backed_tickets_are_surer_than_misleading_ones_and_those_than_ambiguous_ones(
    tools: InProcessTools,
) -> None:
    backed = (await triage(tools, "billing_duplicate_charge"))["confidence"]
    misleading = (await triage(tools, "misleading_suspended_for_non_payment"))["confidence"]
    ambiguous = (await triage(tools, "ambiguous_bill_and_connection"))["confidence"]
    assert backed > misleading > ambiguous


async def test_a_misleading_ticket_names_the_records_that_overrule_its_words(tools: InProcessTools) -> None:
    result = await triage(tools, "misleading_suspended_for_non_payment")
    assert result["signals"][0] == "billing: account suspended"
    assert "text (network): 'internet'" in result["signals"]


@pytest.mark.parametrize(
    ("scenario", "level"),
    [
        ("network_business_outage", "urgent"),
        ("access_account_takeover", "urgent"),
        ("network_regional_outage", "high"),
        ("access_locked_out", "high"),
        ("billing_duplicate_charge", "high"),
        ("billing_overbilled_plan", "normal"),
        ("billing_refund_pending", "low"),
        ("network_no_fault_found", "low"),
    ],
)
async def test_priority_follows_the_most_pressing_finding(
    tools: InProcessTools, scenario: str, level: str
) -> None:
    assert (await triage(tools, scenario))["priority"] == level


async def test_triage_reads_the_whole_account_with_one_call_per_record(tools: InProcessTools) -> None:
    before = len(tools.calls)
    await triage(tools, "access_locked_out")
    called = sorted(tool for tool, _ in tools.calls[before:])
    assert called == sorted(agent.skills["ticket-triage"].tools)


def test_a_subject_term_weighs_more_than_the_same_term_in_the_body() -> None:
    in_subject = read_text("Refund please", "")
    in_body = read_text("Hello", "Refund please")
    assert in_subject.scores["billing"] == 1.5 * in_body.scores["billing"] > 0


def test_a_term_inside_another_word_does_not_count() -> None:
    assert read_text("Downloads", "my billboard and overcharger").scores == {
        "network": 0.0,
        "billing": 0.0,
        "access": 0.0,
    }


def test_text_the_records_do_not_back_counts_half_against_records_that_do() -> None:
    text = TextReading({"network": 6.0, "billing": 0.0, "access": 0.0}, [])
    findings = [Finding("billing", 4.0, "high", "billing: account suspended")]
    result = classify(text, findings, "standard")
    assert result.scores == {"network": 3.0, "billing": 4.0, "access": 0.0}
    assert result.category == "billing"


def test_nothing_in_words_or_records_gives_the_floor_confidence() -> None:
    result = classify(TextReading({"network": 0.0, "billing": 0.0, "access": 0.0}, []), [], None)
    assert (result.priority, result.confidence) == ("low", 0.2)


def test_a_tie_is_decided_deterministically_with_a_low_confidence() -> None:
    text = TextReading({"network": 3.0, "billing": 3.0, "access": 0.0}, [])
    result = classify(text, [], None)
    assert result.category == "network"
    assert result.confidence < 0.25


def test_a_business_line_fault_is_one_level_more_urgent_but_not_a_business_billing_issue() -> None:
    outage = [Finding("network", 4.0, "high", "outage")]
    duplicate = [Finding("billing", 3.0, "high", "overpaid")]
    assert priority("network", outage, "business") == "urgent"
    assert priority("network", outage, "standard") == "high"
    assert priority("billing", duplicate, "business") == "high"
