"""Memo drafting and review: the rules by hand, and the draft-review-revise loop on every topic in process."""

from __future__ import annotations

from typing import Any

import pytest

from accord import memo_drafts
from accord.errors import AccordError
from drafting_agent import drafting, memo
from drafting_agent.agent import agent as drafter
from review_agent import checks
from review_agent.agent import agent as reviewer
from tests.in_process_tools import InProcessTools, load

# Revisions a topic needs before the reviewer passes it; None: never.
CONVERGES_AFTER = {
    "passes_first_draft": 0,
    "converges_after_one_revision": 1,
    "converges_after_two_revisions": 2,
    "never_converges_missing_facts": None,
}
CAP = 4


@pytest.fixture(scope="module")
def tools() -> InProcessTools:
    return InProcessTools()


def rule(**fields: Any) -> checks.Rule:
    base: dict[str, Any] = {"rule_id": "R-1", "title": "Rule", "severity": "major"}
    return checks.Rule.model_validate({**base, **fields})


def draft(*sections: tuple[str, str, list[str]], title: str = "Memo") -> memo_drafts.Draft:
    return memo_drafts.Draft(
        title=title, sections=[memo_drafts.Section(heading=h, body=b, sources=s) for h, b, s in sections]
    )


def test_phrases_match_whole_words_case_insensitively_and_in_the_plural() -> None:
    assert memo_drafts.mentions("Two Subprocessors host it.", "subprocessor")
    assert memo_drafts.mentions("The DATA  categories are listed.", "data categories")
    assert not memo_drafts.mentions("Encryptions-at-rest", "encrypt")
    assert memo_drafts.mentions("a cross-border replica", "cross-border")


def test_a_negated_sentence_does_not_state_an_element() -> None:
    assert not checks.states("A DPIA has not yet been completed.", "DPIA")
    assert not checks.states("There is no retention period.", "retention period")
    assert checks.states("No exceptions apply. The DPIA was signed off in May.", "DPIA")


def test_a_triggered_rule_applies_only_when_the_memo_mentions_its_trigger() -> None:
    transfers = rule(section="Transfers", required_elements=["transfer mechanism"], trigger=["cross-border"])
    quiet = draft(("Summary", "Backups stay in one region.", ["S-1"]))
    loud = draft(("Summary", "Backups go to a cross-border replica.", ["S-1"]))
    assert checks.review(quiet, [transfers]).findings == []
    finding = checks.review(loud, [transfers]).findings[0]
    assert finding.message.endswith(
        "section 'Transfers' is missing (required because the memo mentions 'cross-border')"
    )


def test_the_score_is_severity_weighted_and_only_critical_or_major_findings_fail_the_draft() -> None:
    sourced = rule(rule_id="R-minor", severity="minor", requires_source=True)
    purpose = rule(rule_id="R-crit", severity="critical", section="Summary", required_elements=["purpose"])
    unsourced = draft(("Summary", "The purpose is to decide.", []))
    result = checks.review(unsourced, [sourced, purpose])
    assert [f.rule_id for f in result.findings] == ["R-minor"]
    assert (result.passed, result.score) == (True, 0.75)
    no_purpose = checks.review(draft(("Summary", "We decide.", ["S-1"])), [sourced, purpose])
    assert (no_purpose.passed, no_purpose.score) == (False, 0.25)


def test_an_element_seen_only_negated_lowers_the_reviewers_confidence() -> None:
    dpia = rule(section="Risks", required_elements=["DPIA"])
    negated = checks.review(draft(("Risks", "A DPIA has not been done.", ["S"])), [dpia])
    absent = checks.review(draft(("Risks", "Nothing here.", ["S"])), [dpia])
    assert "only in negated sentences" in negated.findings[0].message
    assert checks.review_confidence(negated) < checks.review_confidence(absent) == 0.95


def test_forbidden_phrases_are_found_in_the_title_and_sections() -> None:
    absolute = rule(forbidden_phrases=["zero risk"])
    result = checks.review(
        draft(("Risks", "Zero risk remains.", ["S"]), title="A zero risk plan"), [absolute]
    )
    assert result.findings[0].message.endswith("forbidden phrase 'zero risk' in title, Risks")


def fact(fact_id: str, section: str, statement: str, detail: str = "core", source: str = "SRC") -> memo.Fact:
    return memo.Fact(fact_id=fact_id, section=section, detail=detail, statement=statement, source=source)


TOPIC = memo.TopicFacts(
    topic="t",
    found=True,
    title="A memo",
    outline=["Summary", "Retention", "Risks"],
    facts=[
        fact("F1", "Risks", "The residual risk is small.", source="R1"),
        fact("F2", "Summary", "The purpose is retention.", source="S1"),
        fact("F3", "Retention", "Deletion is monthly.", detail="supporting", source="R2"),
        fact("F4", "Risks", "This carries zero risk.", source="R3"),
    ],
)


def test_the_first_draft_is_the_core_facts_in_outline_order_with_their_sources() -> None:
    first = drafting.first_draft(TOPIC)
    assert [(s.heading, s.body, s.sources) for s in first.sections] == [
        ("Summary", "The purpose is retention.", ["S1"]),
        ("Risks", "The residual risk is small. This carries zero risk.", ["R1", "R3"]),
    ]


def test_a_revision_adds_a_missing_fact_in_outline_order_and_drops_a_forbidden_sentence_and_source() -> None:
    rules = [
        memo.Rule(rule_id="R-DEL", severity="major", section="Retention", required_elements=["deletion"]),
        memo.Rule(rule_id="R-ABS", severity="major", forbidden_phrases=["zero risk"]),
    ]
    revised = drafting.revise(drafting.first_draft(TOPIC), TOPIC, rules, ["R-DEL", "R-ABS", "R-DEL"])
    assert revised.addressed == ["R-DEL", "R-ABS"]
    assert revised.unresolved == []
    assert [(s.heading, s.body, s.sources) for s in revised.draft.sections] == [
        ("Summary", "The purpose is retention.", ["S1"]),
        ("Retention", "Deletion is monthly.", ["R2"]),
        ("Risks", "The residual risk is small.", ["R1"]),
    ]


def test_a_finding_no_fact_answers_stays_unresolved_and_nothing_is_invented() -> None:
    rules = [
        memo.Rule(
            rule_id="R-LB", severity="critical", section="Legal Basis", required_elements=["legal basis"]
        )
    ]
    revised = drafting.revise(drafting.first_draft(TOPIC), TOPIC, rules, ["R-LB", "R-UNKNOWN"])
    assert [(u.rule_id, u.reason) for u in revised.unresolved] == [
        ("R-LB", "no fact in the fact base states: legal basis"),
        ("R-UNKNOWN", "not a rule of this rule set"),
    ]
    assert revised.draft == drafting.first_draft(TOPIC)


async def loop(tools: InProcessTools, topic: dict[str, Any]) -> tuple[int | None, list[dict[str, Any]]]:
    """Draft, review, revise until the reviewer passes the draft or CAP revisions are spent."""
    history: list[dict[str, Any]] = []
    request: dict[str, Any] = {"topic": topic["topic"], "rule_set": topic["rule_set"], "revision": 0}
    for revision in range(CAP + 1):
        written = await tools.run(drafter, "memo-draft", {**request, "revision": revision})
        review = await tools.run(
            reviewer, "memo-review", {"draft": written["draft"], "rule_set": topic["rule_set"]}
        )
        history.append({"draft": written, "review": review})
        if review["passed"]:
            return revision, history
        feedback = [{"rule_id": f["rule_id"], "message": f["message"]} for f in review["findings"]]
        request = {**request, "feedback": feedback, "previous_draft": written["draft"]}
    return None, history


@pytest.mark.parametrize("topic", load("compliance/facts.json")["topics"], ids=lambda t: t["topic"])
async def test_the_loop_converges_when_the_facts_allow_within_the_revisions_the_topic_needs(
    tools: InProcessTools, topic: dict[str, Any]
) -> None:
    converged, history = await loop(tools, topic)
    assert converged == CONVERGES_AFTER[topic["scenario"]]
    statements = {f["statement"] for f in topic["facts"]}
    for step in history:
        for section in step["draft"]["draft"]["sections"]:
            assert set(memo_drafts.sentences(section["body"])) <= statements
            assert section["sources"]


async def test_the_missing_facts_topic_stalls_with_unresolved_findings_and_falling_confidence(
    tools: InProcessTools,
) -> None:
    topic = next(t for t in load("compliance/facts.json")["topics"] if t["scenario"].startswith("never"))
    converged, history = await loop(tools, topic)
    assert converged is None
    last = history[-1]
    assert {u["rule_id"] for u in last["draft"]["unresolved"]} == {"DP-03", "DP-09"}
    assert last["draft"]["confidence"] == 0.3
    assert {f["rule_id"] for f in last["review"]["findings"]} == {"DP-03", "DP-09"}
    assert history[-1]["draft"]["draft"] == history[-2]["draft"]["draft"]
    assert last["review"]["confidence"] < 0.95


async def test_an_unknown_topic_or_rule_set_is_not_found(tools: InProcessTools) -> None:
    with pytest.raises(AccordError) as topic:
        await tools.run(drafter, "memo-draft", {"topic": "no-such-topic", "rule_set": "data-protection"})
    with pytest.raises(AccordError) as rules:
        await tools.run(
            reviewer, "memo-review", {"draft": {"title": "x", "sections": []}, "rule_set": "nope"}
        )
    assert topic.value.reason == rules.value.reason == "not_found"
