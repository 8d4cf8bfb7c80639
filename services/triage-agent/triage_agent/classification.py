"""Category, priority and confidence from the ticket's words and the account's records together.

A category's score is its account findings plus its text score; text that the records do not back at all
(every record was looked at and nothing is wrong there) counts half, so a complaint that reads like an
outage on a healthy line with a suspended account lands in billing. Confidence grows with the margin
between the best and the runner-up category, shrinks when the best score is weak, and shrinks further when
only the text supports the answer: an ambiguous ticket with clean records gets a low confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage_agent.evidence import PRIORITIES, Finding, Priority
from triage_agent.lexicon import TextReading
from triage_agent.records import CATEGORIES, Category

UNBACKED_TEXT = 0.5
TEXT_ONLY = 0.75
# A best score this high is strong evidence; below it confidence scales down.
STRONG_SCORE = 4.0
NO_SIGNAL_CONFIDENCE = 0.2
# A business line that is down stops other people's work: one level more urgent.
BUMPED_PLANS = frozenset({"business"})
BUMPED_CATEGORIES = frozenset({"network"})


@dataclass(frozen=True)
class Classification:
    category: Category
    priority: Priority
    confidence: float
    scores: dict[Category, float]


def classify(text: TextReading, findings: list[Finding], plan: str | None) -> Classification:
    evidence: dict[Category, float] = dict.fromkeys(CATEGORIES, 0.0)
    for finding in findings:
        evidence[finding.category] += finding.weight
    scores = {
        c: round(evidence[c] + text.scores[c] * (1.0 if evidence[c] else UNBACKED_TEXT), 3)
        for c in CATEGORIES
    }
    # Ties go to the first category in CATEGORIES order: deterministic, and the confidence says it is a tie.
    ranked = sorted(CATEGORIES, key=lambda c: -scores[c])
    best, runner_up = ranked[0], ranked[1]
    if scores[best] == 0:
        return Classification(best, "low", NO_SIGNAL_CONFIDENCE, scores)
    margin = (scores[best] - scores[runner_up]) / scores[best]
    strength = min(scores[best] / STRONG_SCORE, 1.0)
    confidence = (0.3 + 0.65 * margin) * (0.6 + 0.4 * strength) * (1.0 if evidence[best] else TEXT_ONLY)
    own = [f for f in findings if f.category == best]
    return Classification(best, priority(best, own, plan), round(confidence, 3), scores)


def priority(category: Category, findings: list[Finding], plan: str | None) -> Priority:
    """The most pressing finding's priority (low without any), one level up for a business line's fault."""
    level = max((PRIORITIES.index(f.priority) for f in findings), default=0)
    if findings and category in BUMPED_CATEGORIES and plan in BUMPED_PLANS:
        level += 1
    return PRIORITIES[min(level, len(PRIORITIES) - 1)]
