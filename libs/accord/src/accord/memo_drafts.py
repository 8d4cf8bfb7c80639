"""A memo draft as the drafting and review agents exchange it, and the phrase matching both judge it with.

The drafter writes a `Draft` and checks its own sections against the rule book; the reviewer reads the same
`Draft` and checks it again. Both must agree on what "mentions" and "a sentence" mean, so they share them.
"""

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


def mentions(text: str, phrase: str) -> bool:
    """Whole-word, case-insensitive, plural-tolerant: 'subprocessor' is mentioned by 'subprocessors'."""
    words = r"\s+".join(re.escape(word) for word in phrase.split())
    return re.search(rf"(?<!\w){words}(?:s|es)?(?!\w)", text, re.IGNORECASE) is not None


def sentences(body: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", body.strip()) if s]
