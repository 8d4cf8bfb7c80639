"""Writing a memo from its fact base, and revising it to answer a reviewer's findings.

The first draft is the topic's core facts, section by section in outline order, each section citing the
sources of its sentences. The rule book is read only to answer findings, so every change in a revision
traces to one: a forbidden phrase removes the sentences that carry it; a missing element adds the first
fact that mentions it (one from the rule's own section and core detail first) to the section the rule
governs; an unsourced section cites the sources of the facts it quotes. Nothing is written that is not a
fact of the topic: a finding no fact can answer stays unresolved, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from accord.memo_drafts import Draft, Section, mentions, sentences
from drafting_agent.memo import Fact, Rule, TopicFacts


@dataclass
class WorkingSection:
    heading: str
    sentences: list[str]
    sources: list[str]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


@dataclass
class WorkingDraft:
    """A draft being revised: sections as sentence lists, ordered by the topic's outline."""

    title: str
    outline: list[str]
    sections: list[WorkingSection] = field(default_factory=list)

    @classmethod
    def of(cls, draft: Draft, outline: list[str]) -> WorkingDraft:
        sections = [WorkingSection(s.heading, sentences(s.body), list(s.sources)) for s in draft.sections]
        return cls(draft.title, outline, sections)

    def to_draft(self) -> Draft:
        return Draft(
            title=self.title,
            sections=[
                Section(heading=s.heading, body=s.text, sources=s.sources)
                for s in self.sections
                if s.sentences
            ],
        )

    def section(self, heading: str) -> WorkingSection | None:
        wanted = heading.casefold()
        return next((s for s in self.sections if s.heading.casefold() == wanted), None)

    def quotes(self, statement: str) -> bool:
        return any(statement in s.sentences for s in self.sections)

    def add(self, heading: str, fact: Fact) -> None:
        section = self.section(heading) or self._insert(heading)
        section.sentences.append(fact.statement)
        if fact.source not in section.sources:
            section.sources.append(fact.source)

    def remove_sentences_with(self, phrase: str, facts: list[Fact]) -> bool:
        removed = False
        for section in self.sections:
            kept = [s for s in section.sentences if not mentions(s, phrase)]
            if len(kept) == len(section.sentences):
                continue
            dropped = {s for s in section.sentences if s not in kept}
            section.sentences = kept
            section.sources = _sources_still_cited(section, dropped, facts)
            removed = True
        return removed

    def _insert(self, heading: str) -> WorkingSection:
        section = WorkingSection(heading, [], [])
        rank = {h.casefold(): i for i, h in enumerate(self.outline)}
        place = rank.get(heading.casefold(), len(self.outline))
        index = next(
            (
                i
                for i, s in enumerate(self.sections)
                if rank.get(s.heading.casefold(), len(self.outline)) > place
            ),
            len(self.sections),
        )
        self.sections.insert(index, section)
        return section


def _sources_still_cited(section: WorkingSection, dropped: set[str], facts: list[Fact]) -> list[str]:
    """Drop the sources only the removed sentences cited; keep any source the draft brought itself."""
    gone = {f.source for f in facts if f.statement in dropped}
    kept = {f.source for f in facts if f.statement in section.sentences}
    return [s for s in section.sources if s not in gone or s in kept]


def first_draft(topic: TopicFacts) -> Draft:
    work = WorkingDraft(topic.title or topic.topic, topic.outline)
    for heading in topic.outline:
        for fact in topic.facts:
            if fact.section == heading and fact.detail == "core":
                work.add(heading, fact)
    return work.to_draft()


@dataclass(frozen=True)
class Unresolved:
    rule_id: str
    reason: str


@dataclass(frozen=True)
class Revision:
    draft: Draft
    addressed: list[str]
    unresolved: list[Unresolved]


def revise(draft: Draft, topic: TopicFacts, rules: list[Rule], rule_ids: list[str]) -> Revision:
    """`draft` changed to answer the findings on `rule_ids`, in order, from the topic's facts alone."""
    work = WorkingDraft.of(draft, topic.outline)
    by_id = {r.rule_id: r for r in rules}
    avoid = sorted({p for r in rules for p in r.forbidden_phrases})
    addressed: list[str] = []
    unresolved: list[Unresolved] = []
    for rule_id in dict.fromkeys(rule_ids):
        rule = by_id.get(rule_id)
        if rule is None:
            unresolved.append(Unresolved(rule_id, "not a rule of this rule set"))
            continue
        changed, missing = _answer(work, rule, topic.facts, avoid)
        if missing or not changed:
            reason = (
                f"no fact in the fact base states: {', '.join(missing)}" if missing else "nothing to change"
            )
            unresolved.append(Unresolved(rule_id, reason))
        else:
            addressed.append(rule_id)
    return Revision(work.to_draft(), addressed, unresolved)


def _answer(work: WorkingDraft, rule: Rule, facts: list[Fact], avoid: list[str]) -> tuple[bool, list[str]]:
    changed = False
    for phrase in rule.forbidden_phrases:
        changed |= work.remove_sentences_with(phrase, facts)
    missing: list[str] = []
    if rule.section is not None and rule.required_elements:
        section = work.section(rule.section)
        lacking = [e for e in rule.required_elements if section is None or not mentions(section.text, e)]
        # Flagged although every element is there: the reviewer wants them stated better, so look for more.
        for element in lacking or rule.required_elements:
            fact = _evidence(element, rule.section, facts, work, avoid)
            if fact is None:
                missing.append(element)
                continue
            work.add(rule.section, fact)
            changed = True
    if rule.requires_source:
        governed = [work.section(rule.section)] if rule.section else work.sections
        for section in (s for s in governed if s is not None and s.sentences and not s.sources):
            cited = [f.source for f in facts if f.statement in section.sentences]
            section.sources.extend(dict.fromkeys(cited))
            changed |= bool(cited)
            if not cited:
                missing.append(f"a source for {section.heading}")
    return changed, missing


def _evidence(
    element: str, heading: str, facts: list[Fact], work: WorkingDraft, avoid: list[str]
) -> Fact | None:
    """The best unused fact mentioning `element`: the rule's own section first, then core before detail."""
    candidates = [
        f
        for f in facts
        if mentions(f.statement, element)
        and not work.quotes(f.statement)
        and not any(mentions(f.statement, p) for p in avoid)
    ]
    candidates.sort(key=lambda f: (f.section.casefold() != heading.casefold(), f.detail != "core"))
    return candidates[0] if candidates else None


def draft_confidence(
    draft: Draft, topic: TopicFacts, rule_ids: list[str], revision: Revision | None
) -> float:
    """Unreviewed: up to 0.8 with the outline covered. Revised: 0.3 plus up to 0.6 for findings answered."""
    if revision is None:
        covered = {s.heading.casefold() for s in draft.sections}
        coverage = sum(h.casefold() in covered for h in topic.outline) / max(len(topic.outline), 1)
        return round(0.4 + 0.4 * coverage, 3)
    asked = len(dict.fromkeys(rule_ids))
    return round(0.3 + 0.6 * len(revision.addressed) / asked, 3)
