"""Credit files as the bureau reports them, loaded from `data/bureau.json`."""

from __future__ import annotations

import json
from pathlib import Path

from accord.credit_files import CreditFile


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
