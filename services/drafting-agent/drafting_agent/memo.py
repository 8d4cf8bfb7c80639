"""A memo draft, the compliance tools' rules and facts as the drafter reads them, and phrase matching."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field


class Section(BaseModel):
    heading: str = Field(min_length=1, max_length=200)
    body: str = Field(max_length=20_000)
    sources: list[str] = Field(default_factory=list, max_length=100)


class Draft(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    sections: list[Section] = Field(max_length=50)


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


def mentions(text: str, phrase: str) -> bool:
    """Whole-word, case-insensitive, plural-tolerant: 'subprocessor' is mentioned by 'subprocessors'."""
    words = r"\s+".join(re.escape(word) for word in phrase.split())
    return re.search(rf"(?<!\w){words}(?:s|es)?(?!\w)", text, re.IGNORECASE) is not None


def sentences(body: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", body.strip()) if s]
