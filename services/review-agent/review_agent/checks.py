"""Checking a memo draft against a rule book.

A rule applies when it has no trigger, or when the memo (title or any section) mentions one of its trigger
phrases. A section rule needs its section; each required element must be stated in a sentence of that
section that does not negate it ("a DPIA has not been completed" does not state a DPIA); a sourced rule
needs the section to cite a source. Forbidden phrases may appear nowhere the rule governs.

The score is the severity-weighted share of applicable rules met. A draft passes with no critical or major
finding. The checks are lexical, so a required element that appears only in negated sentences lowers the
confidence: that is where a reader could disagree with the verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from accord.memo_drafts import Draft, mentions, sentences

Severity = Literal["critical", "major", "minor"]
WEIGHTS: dict[str, int] = {"critical": 3, "major": 2, "minor": 1}
BLOCKING: frozenset[str] = frozenset({"critical", "major"})
_NEGATION = re.compile(r"\b(?:no|not|never|without|pending|yet to)\b|n't\b", re.IGNORECASE)


class Rule(BaseModel):
    rule_id: str
    title: str
    severity: Severity
    section: str | None = None
    required_elements: list[str] = Field(default_factory=list)
    forbidden_phrases: list[str] = Field(default_factory=list)
    requires_source: bool = False
    trigger: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: Severity
    message: str


@dataclass(frozen=True)
class Review:
    score: float
    passed: bool
    findings: list[Finding]
    negated_only: int
    applicable: int


def states(body: str, element: str) -> bool:
    return any(mentions(s, element) and not _NEGATION.search(s) for s in sentences(body))


def review(draft: Draft, rules: list[Rule]) -> Review:
    whole = " ".join([draft.title, *(f"{s.heading}. {s.body}" for s in draft.sections)])
    applicable = [r for r in rules if not r.trigger or any(mentions(whole, t) for t in r.trigger)]
    findings: list[Finding] = []
    negated_only = 0
    met = 0
    for rule in applicable:
        problems, negated = check(rule, draft, whole)
        negated_only += negated
        if problems:
            findings.append(Finding(rule.rule_id, rule.severity, f"{rule.title}: {'; '.join(problems)}"))
        else:
            met += WEIGHTS[rule.severity]
    total = sum(WEIGHTS[r.severity] for r in applicable)
    return Review(
        score=round(met / total, 4) if total else 1.0,
        passed=not any(f.severity in BLOCKING for f in findings),
        findings=findings,
        negated_only=negated_only,
        applicable=len(applicable),
    )


def check(rule: Rule, draft: Draft, whole: str) -> tuple[list[str], int]:
    """The rule's problems with the draft, and how many elements appear only negated."""
    if rule.section is None:
        return _check_memo(rule, draft), 0
    wanted = rule.section.casefold()
    section = next((s for s in draft.sections if s.heading.strip().casefold() == wanted), None)
    if section is None:
        cause = next((t for t in rule.trigger if mentions(whole, t)), None)
        why = f" (required because the memo mentions {cause!r})" if cause else ""
        return [f"section {rule.section!r} is missing{why}"], 0
    problems: list[str] = []
    unstated = [e for e in rule.required_elements if not states(section.body, e)]
    negated = [e for e in unstated if mentions(section.body, e)]
    if unstated:
        hedge = f" ({', '.join(negated)} only in negated sentences)" if negated else ""
        problems.append(f"section {rule.section!r} does not state: {', '.join(unstated)}{hedge}")
    if rule.requires_source and not section.sources:
        problems.append(f"section {rule.section!r} cites no source")
    problems += [
        f"forbidden phrase {p!r} in {rule.section!r}"
        for p in rule.forbidden_phrases
        if mentions(section.body, p)
    ]
    return problems, len(negated)


def _check_memo(rule: Rule, draft: Draft) -> list[str]:
    problems: list[str] = []
    if rule.requires_source:
        unsourced = [s.heading for s in draft.sections if not s.sources]
        if unsourced:
            problems.append(f"sections without a source: {', '.join(unsourced)}")
    for phrase in rule.forbidden_phrases:
        where = [s.heading for s in draft.sections if mentions(s.body, phrase)]
        if mentions(draft.title, phrase):
            where.insert(0, "title")
        if where:
            problems.append(f"forbidden phrase {phrase!r} in {', '.join(where)}")
    return problems


def review_confidence(result: Review) -> float:
    """0.95 for a verdict resting on clear text; less for each element seen only in negated sentences."""
    return round(max(0.5, 0.95 - 0.1 * result.negated_only), 3)
