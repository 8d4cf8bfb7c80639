"""Credit files as the bureau reports them, loaded from `data/bureau.json`."""

from __future__ import annotations

import json
from pathlib import Path

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


class CreditBureau:
    """Every file the bureau holds, by applicant id."""

    def __init__(self, files: list[CreditFile]) -> None:
        self._files = {file.applicant_id: file for file in files}

    @classmethod
    def load(cls, path: Path) -> CreditBureau:
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls([CreditFile.model_validate({**item, "found": True}) for item in document["files"]])

    def credit_file(self, applicant_id: str) -> CreditFile:
        return self._files.get(applicant_id) or CreditFile(applicant_id=applicant_id, found=False)
