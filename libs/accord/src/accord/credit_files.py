"""A credit bureau file: what bureau-tools answers and what the bureau agent reads back (validated again)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Address(BaseModel):
    line1: str
    city: str
    postcode: str
    country: str


class CreditFile(BaseModel):
    """The tool's answer; `found=False` (with empty figures) when the bureau has no file."""

    applicant_id: str
    found: bool
    score: int | None = Field(default=None, ge=300, le=850)
    tradelines: int = Field(default=0, ge=0)
    file_age_months: int = Field(default=0, ge=0)
    delinquencies_24m: int = Field(default=0, ge=0)
    utilization: float = Field(default=0.0, ge=0, le=1)
    inquiries_6m: int = Field(default=0, ge=0)
    address: Address | None = None
    address_reported: str | None = Field(default=None, description="YYYY-MM-DD the address was last reported")
