"""Identity and access records per customer: portal users, MFA state, lockouts, failed sign-ins.

Loaded from `support/identity.json`; the failure window is measured from the file's `as_of`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class User(BaseModel):
    user_id: str
    email: str
    role: Literal["owner", "admin", "member"]
    mfa: Literal["app", "sms", "none"]
    mfa_changed: dt.datetime
    locked: bool
    locked_at: dt.datetime | None = None
    lock_reason: str | None = None
    password_changed: dt.datetime
    last_login: dt.datetime | None = None


class AuthFailure(BaseModel):
    at: dt.datetime
    user_id: str
    reason: Literal["bad_password", "mfa_failed", "unknown_device"]
    country: str = Field(description="ISO country the attempt came from")
    device: Literal["known", "new", "unknown"] = Field(
        description="known: seen before; new: enrolled by the user today; unknown: never seen"
    )


class _Record(BaseModel):
    customer_id: str
    users: list[User]
    auth_failures: list[AuthFailure]


class Identity:
    """Every customer's access record, as of the data set's reference time."""

    def __init__(self, as_of: dt.datetime, records: list[_Record]) -> None:
        self.as_of = as_of
        self._records = {r.customer_id: r for r in records}

    @classmethod
    def load(cls, path: Path) -> Identity:
        document = json.loads(path.read_text(encoding="utf-8"))
        records = [_Record.model_validate(item) for item in document["accounts"]]
        return cls(dt.datetime.fromisoformat(document["as_of"]), records)

    def users(self, customer_id: str) -> list[User] | None:
        record = self._records.get(customer_id)
        return None if record is None else record.users

    def failures(self, customer_id: str, days: int) -> list[AuthFailure]:
        """Failed sign-ins within `days` of the reference time, oldest first."""
        since = self.as_of - dt.timedelta(days=days)
        record = self._records.get(customer_id)
        rows = [] if record is None else record.auth_failures
        return sorted((f for f in rows if since <= f.at <= self.as_of), key=lambda f: f.at)
