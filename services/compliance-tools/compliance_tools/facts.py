"""The fact base behind each memo topic, loaded from `compliance/facts.json`.

Each fact is one sourced sentence assigned to a section of the topic's outline. `core` facts are the ones a
first draft is written from; `supporting` facts are detail kept for when a reviewer asks for it. The
generator's scenario and note fields are never loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel


class Fact(BaseModel):
    fact_id: str
    section: str
    detail: Literal["core", "supporting"]
    statement: str
    source: str


class Topic(BaseModel):
    topic: str
    title: str
    rule_set: str
    outline: list[str]
    facts: list[Fact]


class FactBase:
    """Every topic, by name."""

    def __init__(self, topics: list[Topic]) -> None:
        self._topics = {t.topic: t for t in topics}

    @classmethod
    def load(cls, path: Path) -> FactBase:
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls([Topic.model_validate(item) for item in document["topics"]])

    def topic(self, name: str) -> Topic | None:
        return self._topics.get(name)

    def names(self) -> list[str]:
        return sorted(self._topics)
