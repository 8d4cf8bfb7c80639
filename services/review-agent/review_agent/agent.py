"""The memo-review skill: score a memo draft against a rule book and say what fails, rule by rule.

The verdict (`passed`) is the reviewer's: no critical or major finding. Whether a score is good enough to
stop revising is the workflow's decision, not this agent's.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from accord.agent import Agent, ToolBox
from accord.errors import AccordError
from accord.memo_drafts import Draft
from review_agent.checks import Rule, Severity, review, review_confidence

agent = Agent("review-agent")


class ReviewInput(BaseModel):
    draft: Draft
    rule_set: str = Field(
        min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$", description="e.g. vendor-risk"
    )


class FindingOut(BaseModel):
    rule_id: str
    severity: Severity
    message: str


class ReviewOutput(BaseModel):
    score: float = Field(ge=0, le=1, description="Severity-weighted share of applicable rules met")
    passed: bool = Field(description="No critical or major finding")
    findings: list[FindingOut]
    confidence: float = Field(ge=0, le=1)


class RuleSet(BaseModel):
    rule_set: str
    found: bool
    rules: list[Rule] = Field(default_factory=list)


@agent.skill("memo-review", tools=["compliance.get_rules"])
async def memo_review(request: ReviewInput, tools: ToolBox) -> ReviewOutput:
    rule_set = RuleSet.model_validate(
        await tools.call("compliance.get_rules", {"rule_set": request.rule_set})
    )
    if not rule_set.found:
        raise AccordError("not_found", f"no rule set {request.rule_set}")
    result = review(request.draft, rule_set.rules)
    return ReviewOutput(
        score=result.score,
        passed=result.passed,
        findings=[
            FindingOut(rule_id=f.rule_id, severity=f.severity, message=f.message) for f in result.findings
        ],
        confidence=review_confidence(result),
    )


def main() -> None:
    agent.run()
