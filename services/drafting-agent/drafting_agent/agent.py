"""The memo-draft skill: a compliance memo on a topic, first drafted and then revised against findings.

Revision 0 (or any request without feedback) writes the first draft from the topic's facts. With feedback,
it revises `previous_draft` (or the first draft, when none is given) to answer each finding's rule, reading
the rule set to know what each rule asks (see `drafting`). Findings no fact can answer are listed in
`unresolved` and lower the confidence: the drafter cannot invent what the fact base does not hold.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from accord.agent import Agent, ToolBox
from accord.errors import AccordError
from accord.memo_drafts import Draft
from drafting_agent.drafting import draft_confidence, first_draft, revise
from drafting_agent.memo import RuleSet, TopicFacts

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"

agent = Agent("drafting-agent")


class Feedback(BaseModel):
    rule_id: str = Field(min_length=1, max_length=32)
    message: str = Field(default="", max_length=2_000)


class DraftInput(BaseModel):
    topic: str = Field(
        min_length=1, max_length=64, pattern=NAME_PATTERN, description="e.g. customer-data-retention"
    )
    rule_set: str = Field(
        min_length=1, max_length=64, pattern=NAME_PATTERN, description="e.g. data-protection"
    )
    revision: int = Field(default=0, ge=0, le=100, description="0 for the first draft")
    feedback: list[Feedback] = Field(
        default_factory=list, max_length=100, description="The reviewer's findings"
    )
    previous_draft: Draft | None = None


class Unresolved(BaseModel):
    rule_id: str
    reason: str


class DraftOutput(BaseModel):
    topic: str
    revision: int
    draft: Draft
    addressed: list[str] = Field(description="Rules whose findings this revision answered")
    unresolved: list[Unresolved] = Field(description="Findings no fact in the fact base can answer")
    confidence: float = Field(ge=0, le=1)


@agent.skill("memo-draft", tools=["compliance.get_facts", "compliance.get_rules"])
async def memo_draft(request: DraftInput, tools: ToolBox) -> DraftOutput:
    topic = TopicFacts.model_validate(await tools.call("compliance.get_facts", {"topic": request.topic}))
    if not topic.found:
        raise AccordError("not_found", f"no fact base for topic {request.topic}")
    base = request.previous_draft or first_draft(topic)
    if not request.feedback:
        return DraftOutput(
            topic=request.topic,
            revision=request.revision,
            draft=base,
            addressed=[],
            unresolved=[],
            confidence=draft_confidence(base, topic, [], None),
        )
    rule_set = RuleSet.model_validate(
        await tools.call("compliance.get_rules", {"rule_set": request.rule_set})
    )
    if not rule_set.found:
        raise AccordError("not_found", f"no rule set {request.rule_set}")
    rule_ids = [f.rule_id for f in request.feedback]
    revision = revise(base, topic, rule_set.rules, rule_ids)
    return DraftOutput(
        topic=request.topic,
        revision=request.revision,
        draft=revision.draft,
        addressed=revision.addressed,
        unresolved=[Unresolved(rule_id=u.rule_id, reason=u.reason) for u in revision.unresolved],
        confidence=draft_confidence(revision.draft, topic, rule_ids, revision),
    )


def main() -> None:
    agent.run()
