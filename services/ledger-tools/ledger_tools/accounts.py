"""Bank accounts with their raw transactions, loaded from `data/ledger.json`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from pydantic import BaseModel, Field


class Address(BaseModel):
    line1: str
    city: str
    postcode: str
    country: str


class Transaction(BaseModel):
    """One booking: positive amounts are money in, negative money out."""

    date: dt.date
    counterparty: str
    category: str
    amount: float


class Account(BaseModel):
    account_id: str
    holder_name: str
    opened: dt.date
    address: Address | None = None
    address_updated: dt.date | None = None
    transactions: list[Transaction] = Field(default_factory=list)


class Ledger:
    """All accounts, by id, and the date the books were closed (the end of every reporting window)."""

    def __init__(self, as_of: dt.date, accounts: list[Account]) -> None:
        self.as_of = as_of
        self._accounts = {account.account_id: account for account in accounts}

    @classmethod
    def load(cls, path: Path) -> Ledger:
        document = json.loads(path.read_text(encoding="utf-8"))
        accounts = [Account.model_validate(item) for item in document["accounts"]]
        return cls(dt.date.fromisoformat(document["as_of"]), accounts)

    def account(self, account_id: str) -> Account | None:
        return self._accounts.get(account_id)
