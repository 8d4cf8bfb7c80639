"""The drafting and review specialists over real A2A: the critic-refiner loop, driven as a workflow would.

Each round sends the drafter's output to the reviewer and the reviewer's findings back to the drafter, with
the threshold and the iteration cap held here (the caller's), never by an agent. Uses the gateway stand-in
of `test_specialists_support.py`: the real compliance tool server behind a verifying `/mcp`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from drafting_agent.agent import agent as drafting_agent
from review_agent.agent import agent as review_agent
from tests.gateway_stand_in import error_of
from tests.in_process_tools import load
from tests.tools_stand_in import GRPC, HTTP_JSON, Specialists, result_of, send, specialists_running

CAP = 4
THRESHOLD = 1.0


@dataclass
class Loop:
    """What the loop's caller keeps: every round's draft and review, and how it ended."""

    rounds: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    converged_at: int | None = None

    @property
    def final_review(self) -> dict[str, Any]:
        return self.rounds[-1][1]

    @property
    def final_draft(self) -> dict[str, Any]:
        return self.rounds[-1][0]


def topic(scenario: str) -> dict[str, Any]:
    return next(t for t in load("compliance/facts.json")["topics"] if t["scenario"] == scenario)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def office(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Specialists]:
    agents = (drafting_agent, review_agent)
    async with specialists_running(tmp_path_factory.mktemp("compliance-gateway"), agents) as team:
        yield team


async def critic_loop(team: Specialists, subject: dict[str, Any], cap: int = CAP) -> Loop:
    """Draft, review, revise: stop when the review passes at the threshold, or after `cap` revisions."""
    loop = Loop()
    request: dict[str, Any] = {"topic": subject["topic"], "rule_set": subject["rule_set"]}
    for revision in range(cap + 1):
        written = await result_of(team, "drafting-agent", "memo-draft", {**request, "revision": revision})
        review = await result_of(
            team, "review-agent", "memo-review", {"draft": written["draft"], "rule_set": subject["rule_set"]}
        )
        loop.rounds.append((written, review))
        if review["passed"] and review["score"] >= THRESHOLD:
            loop.converged_at = revision
            return loop
        feedback = [{"rule_id": f["rule_id"], "message": f["message"]} for f in review["findings"]]
        request = {**request, "feedback": feedback, "previous_draft": written["draft"]}
    return loop


@pytest.mark.parametrize(
    ("scenario", "revisions"),
    [("passes_first_draft", 0), ("converges_after_one_revision", 1), ("converges_after_two_revisions", 2)],
)
async def test_a_topic_whose_facts_suffice_converges_within_two_revisions(
    office: Specialists, scenario: str, revisions: int
) -> None:
    loop = await critic_loop(office, topic(scenario))
    assert loop.converged_at == revisions
    assert loop.final_review["findings"] == []
    assert loop.final_review["score"] == 1.0
    assert loop.final_draft["unresolved"] == []
    # Every revision answered every finding it was given.
    for (_draft, review), (revised, _next) in zip(loop.rounds, loop.rounds[1:], strict=False):
        assert sorted(revised["addressed"]) == sorted(f["rule_id"] for f in review["findings"])


async def test_the_missing_facts_topic_never_converges_and_stops_at_the_cap_with_a_clear_final_state(
    office: Specialists,
) -> None:
    loop = await critic_loop(office, topic("never_converges_missing_facts"))
    assert loop.converged_at is None
    assert len(loop.rounds) == CAP + 1
    final = loop.final_review
    assert final["passed"] is False
    assert {(f["rule_id"], f["severity"]) for f in final["findings"]} == {
        ("DP-03", "critical"),
        ("DP-09", "critical"),
    }
    assert {u["rule_id"] for u in loop.final_draft["unresolved"]} == {"DP-03", "DP-09"}
    assert loop.final_draft["confidence"] < 0.5
    # Past the first revision nothing changes any more: the fact base has nothing left to offer.
    assert loop.rounds[-1][0]["draft"] == loop.rounds[2][0]["draft"]
    assert [r["score"] for _d, r in loop.rounds] == [final["score"]] * len(loop.rounds)


async def test_drafts_only_ever_quote_the_fact_base_and_cite_its_sources(office: Specialists) -> None:
    subject = topic("converges_after_two_revisions")
    loop = await critic_loop(office, subject)
    statements = {f["statement"]: f["source"] for f in subject["facts"]}
    for written, _review in loop.rounds:
        for section in written["draft"]["sections"]:
            body = section["body"]
            quoted = [s for s in statements if s in body]
            assert " ".join(quoted) == body, section["heading"]
            assert sorted(section["sources"]) == sorted(dict.fromkeys(statements[s] for s in quoted))


@pytest.mark.parametrize("transport", [HTTP_JSON, GRPC])
async def test_the_drafter_and_reviewer_answer_on_rest_and_grpc(office: Specialists, transport: str) -> None:
    subject = topic("passes_first_draft")
    written = await result_of(
        office,
        "drafting-agent",
        "memo-draft",
        {"topic": subject["topic"], "rule_set": subject["rule_set"]},
        transport=transport,
    )
    assert written["draft"]["title"] == subject["title"]
    review = await result_of(
        office,
        "review-agent",
        "memo-review",
        {"draft": written["draft"], "rule_set": subject["rule_set"]},
        transport=transport,
    )
    assert (review["passed"], review["score"]) == (True, 1.0)


async def test_the_drafter_reads_only_the_facts_for_a_first_draft_and_the_rules_to_revise(
    office: Specialists,
) -> None:
    subject = topic("converges_after_one_revision")
    before = len(office.calls)
    request = {"topic": subject["topic"], "rule_set": subject["rule_set"]}
    first = await result_of(office, "drafting-agent", "memo-draft", request)
    assert [c.tool for c in office.calls[before:]] == ["compliance.get_facts"]
    before = len(office.calls)
    feedback = [{"rule_id": "DP-02", "message": "section 'Data Processed' does not state: data categories"}]
    await result_of(
        office,
        "drafting-agent",
        "memo-draft",
        {**request, "revision": 1, "feedback": feedback, "previous_draft": first["draft"]},
    )
    assert [c.tool for c in office.calls[before:]] == ["compliance.get_facts", "compliance.get_rules"]


async def test_an_unknown_rule_set_fails_the_review_with_not_found(office: Specialists) -> None:
    data = {"draft": {"title": "A memo", "sections": []}, "rule_set": "no-such-rules"}
    assert error_of(await send(office, "review-agent", "memo-review", data))["reason"] == "not_found"


async def test_a_draft_that_breaks_the_input_schema_is_invalid_input_and_reaches_no_tool(
    office: Specialists,
) -> None:
    before = len(office.calls)
    data = {"draft": {"title": "", "sections": [{"heading": "Summary"}]}, "rule_set": "data-protection"}
    assert error_of(await send(office, "review-agent", "memo-review", data))["reason"] == "invalid_input"
    assert len(office.calls) == before
