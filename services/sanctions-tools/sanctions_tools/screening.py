"""Fuzzy screening of one name (plus optional birth date and country) against the sanctions list.

The name score is rapidfuzz's token-sort ratio between transliteration-folded keys, taken over the primary
name, every alias, and the first-plus-last form of longer names (lists carry middle names and patronymics
that applicants often omit). Birth date and country then move the score: agreement is evidence for the
same person, disagreement evidence against, so a similar name with another birth date and nationality
drops well below an exact listing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field
from rapidfuzz import fuzz

from sanctions_tools.normalization import name_tokens

MIN_REPORTED_SCORE = 50.0
BIRTH_DATE_EXACT = 10.0
BIRTH_YEAR_ONLY = 3.0  # one side knows only the year, and the years agree
BIRTH_SAME_YEAR_OTHER_DAY = -15.0
BIRTH_DATE_MISMATCH = -25.0
COUNTRY_MATCH = 5.0
COUNTRY_MISMATCH = -10.0


class SanctionsEntry(BaseModel):
    """One listing, as stored in `data/sanctions.json`."""

    entry_id: str
    entry_type: str = "individual"
    primary_name: str
    aliases: list[str] = Field(default_factory=list)
    birth_dates: list[str] = Field(default_factory=list)
    countries: list[str] = Field(default_factory=list)
    programs: list[str] = Field(default_factory=list)
    listed: str | None = None


class SanctionsMatch(BaseModel):
    entry_id: str
    primary_name: str
    matched_name: str = Field(description="The listed name (primary or alias) that matched best")
    score: float = Field(ge=0, le=100)
    birth_dates: list[str]
    countries: list[str]
    programs: list[str]


class SearchResult(BaseModel):
    query: str
    matches: list[SanctionsMatch] = Field(description="Best first; only scores of at least 50")


@dataclass(frozen=True)
class _NameKey:
    key: str
    listed_as: str  # the original spelling reported back as matched_name


def _keys_for(entry: SanctionsEntry) -> list[_NameKey]:
    keys: list[_NameKey] = []
    for listed in [entry.primary_name, *entry.aliases]:
        tokens = name_tokens(listed)
        if not tokens:
            continue
        keys.append(_NameKey(" ".join(tokens), listed))
        if entry.entry_type == "individual" and len(tokens) >= 3:
            keys.append(_NameKey(f"{tokens[0]} {tokens[-1]}", listed))
    return keys


def _best_name_score(query_key: str, keys: list[_NameKey]) -> tuple[float, str]:
    """The best similarity over all of an entry's names, and the spelling that produced it."""
    single_word = " " not in query_key
    best, listed_as = 0.0, ""
    for key in keys:
        score = fuzz.token_sort_ratio(query_key, key.key)
        if single_word:
            # A bare surname ("Kaddafi") is compared word by word, not against the whole name.
            score = max(score, *(fuzz.ratio(query_key, word) for word in key.key.split()))
        if score > best:
            best, listed_as = score, key.listed_as
    return best, listed_as


def birth_date_adjustment(query: str | None, listed: list[str]) -> float:
    """How much a birth date (YYYY-MM-DD or YYYY) moves the score; no information moves nothing."""
    if not query or not listed:
        return 0.0
    best = BIRTH_DATE_MISMATCH
    for candidate in listed:
        if candidate == query and len(query) == 10:
            return BIRTH_DATE_EXACT
        if candidate[:4] == query[:4]:
            partial = len(candidate) == 4 or len(query) == 4
            best = max(best, BIRTH_YEAR_ONLY if partial else BIRTH_SAME_YEAR_OTHER_DAY)
    return best


def country_adjustment(query: str | None, listed: list[str]) -> float:
    if not query or not listed:
        return 0.0
    return COUNTRY_MATCH if query.upper() in {c.upper() for c in listed} else COUNTRY_MISMATCH


class SanctionsList:
    """The loaded list with its name keys computed once."""

    def __init__(self, entries: list[SanctionsEntry]) -> None:
        self.entries = entries
        self._keys = [(entry, _keys_for(entry)) for entry in entries]

    @classmethod
    def load(cls, path: Path) -> SanctionsList:
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls([SanctionsEntry.model_validate(item) for item in document["entries"]])

    def search(
        self, name: str, birth_date: str | None = None, country: str | None = None, limit: int = 5
    ) -> SearchResult:
        query_key = " ".join(name_tokens(name))
        if not query_key:
            return SearchResult(query=name, matches=[])
        matches: list[SanctionsMatch] = []
        for entry, keys in self._keys:
            name_score, listed_as = _best_name_score(query_key, keys)
            adjusted = name_score + birth_date_adjustment(birth_date, entry.birth_dates)
            adjusted += country_adjustment(country, entry.countries)
            score = round(min(100.0, max(0.0, adjusted)), 1)
            if score >= MIN_REPORTED_SCORE:
                matches.append(
                    SanctionsMatch(
                        entry_id=entry.entry_id,
                        primary_name=entry.primary_name,
                        matched_name=listed_as,
                        score=score,
                        birth_dates=entry.birth_dates,
                        countries=entry.countries,
                        programs=entry.programs,
                    )
                )
        matches.sort(key=lambda m: (-m.score, m.entry_id))
        return SearchResult(query=name, matches=matches[:limit])
