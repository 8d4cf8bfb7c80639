"""The sanctions-screening skill.

A strong name match alone is not a hit: names collide. It takes a score of at least 92 corroborated by the
applicant's birth date or country; an uncorroborated strong match, or any score of at least 80, is a
potential match that a reviewer must look at.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from accord.agent import Agent, ToolBox

MAX_SCORE = 100.0
HIT_SCORE = 92.0
POTENTIAL_MATCH_SCORE = 80.0
# A best score this far below the potential-match threshold makes "clear" fully confident.
CLEAR_MARGIN = 20.0
SEARCH_LIMIT = 5

agent = Agent("sanctions-agent")


class ScreeningInput(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="Full name of the person to screen")
    birth_date: str | None = Field(
        default=None, pattern=r"^\d{4}(-\d{2}-\d{2})?$", description="Birth date, YYYY-MM-DD (or YYYY)"
    )
    country: str | None = Field(
        default=None, pattern=r"^[A-Za-z]{2}$", description="Nationality, ISO 3166-1 alpha-2"
    )


class SanctionsMatch(BaseModel):
    entry_id: str
    primary_name: str
    matched_name: str
    score: float = Field(ge=0, le=100)
    birth_dates: list[str]
    countries: list[str]
    programs: list[str]


class ScreeningOutput(BaseModel):
    status: Literal["clear", "potential_match", "hit"]
    best_score: float = Field(ge=0, le=100)
    matches: list[SanctionsMatch]
    confidence: float = Field(ge=0, le=1)


@agent.skill("sanctions-screening", tools=["sanctions.search"])
async def screen(request: ScreeningInput, tools: ToolBox) -> ScreeningOutput:
    arguments: dict[str, object] = {"name": request.name, "limit": SEARCH_LIMIT}
    if request.birth_date:
        arguments["birth_date"] = request.birth_date
    if request.country:
        arguments["country"] = request.country
    found = await tools.call("sanctions.search", arguments)
    matches = sorted(
        (SanctionsMatch.model_validate(m) for m in found.get("matches", [])),
        key=lambda m: m.score,
        reverse=True,
    )
    return classify(request, matches)


def classify(request: ScreeningInput, matches: list[SanctionsMatch]) -> ScreeningOutput:
    best = matches[0] if matches else None
    best_score = best.score if best else 0.0
    corroborated = best is not None and corroborates(request, best)
    status: Literal["clear", "potential_match", "hit"]
    if best_score >= HIT_SCORE and corroborated:
        status, margin, scale = "hit", best_score - HIT_SCORE, MAX_SCORE - HIT_SCORE
    elif best_score >= POTENTIAL_MATCH_SCORE:
        status, margin = "potential_match", best_score - POTENTIAL_MATCH_SCORE
        scale = (HIT_SCORE - POTENTIAL_MATCH_SCORE) / 2
        if corroborated:  # only a corroborated match can still cross into a hit
            margin = min(margin, HIT_SCORE - best_score)
    else:
        status, margin, scale = "clear", POTENTIAL_MATCH_SCORE - best_score, CLEAR_MARGIN
    return ScreeningOutput(
        status=status,
        best_score=round(best_score, 2),
        matches=matches,
        confidence=margin_confidence(margin, scale),
    )


def margin_confidence(margin: float, scale: float) -> float:
    """0.5 on a decision threshold, rising linearly to 1.0 at `scale` points away from it."""
    return round(0.5 + 0.5 * min(max(margin, 0.0) / scale, 1.0), 3)


def corroborates(request: ScreeningInput, match: SanctionsMatch) -> bool:
    """Does the applicant's birth date or country agree with the listed entry?"""
    if request.birth_date and any(_same_date(request.birth_date, listed) for listed in match.birth_dates):
        return True
    if request.country:
        wanted = request.country.strip().casefold()
        return any(listed.strip().casefold() == wanted for listed in match.countries)
    return False


def _same_date(applicant: str, listed: str) -> bool:
    # Either side may know only the year; a partial date agrees with any full date inside it.
    listed = listed.strip()
    return bool(listed) and (applicant.startswith(listed) or listed.startswith(applicant))


def main() -> None:
    agent.run()
