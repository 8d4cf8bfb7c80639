"""Monthly and per-counterparty totals, computed from the raw transactions on every call.

Money is summed in integer cents so totals never pick up float noise.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from pydantic import BaseModel

from ledger_tools.accounts import Account, Transaction


class Period(BaseModel):
    period: str  # YYYY-MM
    inflow: float
    outflow: float  # a positive amount
    count: int


class Counterparty(BaseModel):
    name: str
    category: str
    inflow: float
    outflow: float  # a positive amount
    count: int


@dataclass
class _Totals:
    inflow_cents: int = 0
    outflow_cents: int = 0
    count: int = 0

    def add(self, transaction: Transaction) -> None:
        cents = round(transaction.amount * 100)
        if cents >= 0:
            self.inflow_cents += cents
        else:
            self.outflow_cents -= cents
        self.count += 1

    @property
    def volume_cents(self) -> int:
        return self.inflow_cents + self.outflow_cents


def window_months(as_of: date, months: int, opened: date) -> list[str]:
    """The `months` calendar months ending with `as_of`'s month, none before the account was opened."""
    index = as_of.year * 12 + as_of.month - 1
    first_open = opened.year * 12 + opened.month - 1
    return [
        f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - months + 1, index + 1) if i >= first_open
    ]


def _in_window(account: Account, as_of: date, months: int) -> tuple[list[str], list[Transaction]]:
    periods = window_months(as_of, months, account.opened)
    chosen = set(periods)
    rows = [t for t in account.transactions if t.date <= as_of and t.date.strftime("%Y-%m") in chosen]
    return periods, rows


def by_period(account: Account, as_of: date, months: int) -> list[Period]:
    """One row per month in the window, oldest first; months without bookings count as zero."""
    periods, rows = _in_window(account, as_of, months)
    totals = {period: _Totals() for period in periods}
    for transaction in rows:
        totals[transaction.date.strftime("%Y-%m")].add(transaction)
    return [
        Period(period=p, inflow=t.inflow_cents / 100, outflow=t.outflow_cents / 100, count=t.count)
        for p, t in totals.items()
    ]


def by_counterparty(account: Account, as_of: date, months: int, top: int) -> list[Counterparty]:
    """The `top` counterparties by money moved (in plus out) within the window."""
    _periods, rows = _in_window(account, as_of, months)
    totals: defaultdict[tuple[str, str], _Totals] = defaultdict(_Totals)
    for transaction in rows:
        totals[(transaction.counterparty, transaction.category)].add(transaction)
    ranked = sorted(totals.items(), key=lambda item: (-item[1].volume_cents, item[0]))
    return [
        Counterparty(
            name=name,
            category=category,
            inflow=t.inflow_cents / 100,
            outflow=t.outflow_cents / 100,
            count=t.count,
        )
        for (name, category), t in ranked[:top]
    ]
