"""The credit-file skill.

A score is only as good as the history behind it: a thin file (fewer than 3 tradelines, or younger than
12 months) is flagged, and the confidence grows with the number of tradelines and the file's age.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from accord.agent import Agent, ToolBox
from accord.credit_files import Address, CreditFile

THIN_FILE_TRADELINES = 3
THIN_FILE_AGE_MONTHS = 12
# A file this deep is as informative as a bureau file gets.
DEEP_FILE_TRADELINES = 6
DEEP_FILE_AGE_MONTHS = 36
# No file is an authoritative answer, but it says nothing about creditworthiness.
NO_FILE_CONFIDENCE = 0.5

agent = Agent("bureau-agent")


class CreditFileInput(BaseModel):
    applicant_id: str = Field(min_length=1, max_length=64, description="The applicant's identifier")


class CreditFileOutput(BaseModel):
    found: bool
    score: int | None = Field(ge=300, le=850)
    thin_file: bool
    delinquencies_24m: int = Field(ge=0)
    utilization: float = Field(ge=0, le=1)
    inquiries_6m: int = Field(ge=0)
    address: Address | None
    address_reported: str | None = Field(description="When the bureau last saw the address, YYYY-MM-DD")
    confidence: float = Field(ge=0, le=1)


@agent.skill("credit-file", tools=["bureau.get_credit_file"])
async def credit_file(request: CreditFileInput, tools: ToolBox) -> CreditFileOutput:
    raw = await tools.call("bureau.get_credit_file", {"applicant_id": request.applicant_id})
    return summarize(CreditFile.model_validate(raw))  # tool output is untrusted data: validated first


def summarize(file: CreditFile) -> CreditFileOutput:
    if not file.found:
        return CreditFileOutput(
            found=False,
            score=None,
            thin_file=True,
            delinquencies_24m=0,
            utilization=0.0,
            inquiries_6m=0,
            address=None,
            address_reported=None,
            confidence=NO_FILE_CONFIDENCE,
        )
    return CreditFileOutput(
        found=True,
        score=file.score,
        thin_file=is_thin(file),
        delinquencies_24m=file.delinquencies_24m,
        utilization=file.utilization,
        inquiries_6m=file.inquiries_6m,
        address=file.address,
        address_reported=file.address_reported,
        confidence=depth_confidence(file),
    )


def is_thin(file: CreditFile) -> bool:
    return file.tradelines < THIN_FILE_TRADELINES or file.file_age_months < THIN_FILE_AGE_MONTHS


def depth_confidence(file: CreditFile) -> float:
    """0.5 for an empty file, up to 0.95 for a deep one; half from tradelines, half from age."""
    if file.score is None:
        return NO_FILE_CONFIDENCE
    breadth = min(file.tradelines / DEEP_FILE_TRADELINES, 1.0)
    age = min(file.file_age_months / DEEP_FILE_AGE_MONTHS, 1.0)
    return round(0.5 + 0.45 * (breadth + age) / 2, 3)


def main() -> None:
    agent.run()
