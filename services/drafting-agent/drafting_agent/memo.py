"""The compliance tools' rules and facts as the drafter reads them (the draft: `accord.memo_drafts`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Rule(BaseModel):
    rule_id: str
    severity: str
    section: str | None = None
    required_elements: list[str] = Field(default_factory=list)
    forbidden_phrases: list[str] = Field(default_factory=list)
    requires_source: bool = False
    trigger: list[str] = Field(default_factory=list)


class RuleSet(BaseModel):
    rule_set: str
    found: bool
    rules: list[Rule] = Field(default_factory=list)


class Fact(BaseModel):
    fact_id: str
    section: str
    detail: str
    statement: str
    source: str


class TopicFacts(BaseModel):
    topic: str
    found: bool
    title: str | None = None
    outline: list[str] = Field(default_factory=list)
    facts: list[Fact] = Field(default_factory=list)
