"""Rule books for compliance memos, loaded from `compliance/rules.json`.

A rule names the section it governs (or none: the whole memo), the elements that section must mention, the
phrases no section may contain, whether the section must cite a source, and optional trigger phrases: a
rule with triggers applies only to memos that mention one of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

Severity = Literal["critical", "major", "minor"]


class Rule(BaseModel):
    rule_id: str
    title: str
    requirement: str
    severity: Severity
    section: str | None = Field(description="The section heading the rule governs; null for the whole memo")
    required_elements: list[str] = Field(default_factory=list)
    forbidden_phrases: list[str] = Field(default_factory=list)
    requires_source: bool = False
    trigger: list[str] = Field(default_factory=list, description="The rule applies only if the memo says one")


class RuleSet(BaseModel):
    rule_set: str
    title: str
    rules: list[Rule]


class RuleBook:
    """Every rule set, by name."""

    def __init__(self, rule_sets: list[RuleSet]) -> None:
        self._sets = {s.rule_set: s for s in rule_sets}

    @classmethod
    def load(cls, path: Path) -> RuleBook:
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls([RuleSet.model_validate(item) for item in document["rule_sets"]])

    def rule_set(self, name: str) -> RuleSet | None:
        return self._sets.get(name)

    def names(self) -> list[str]:
        return sorted(self._sets)
