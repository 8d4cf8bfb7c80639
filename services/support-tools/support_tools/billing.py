"""Invoices, payments and refunds per customer, loaded from `support/billing.json`.

An invoice's settlement is computed on every call from its payments and refunds (in integer cents, so
totals never pick up float noise): what was paid, what is being or has been refunded, and its status.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

InvoiceStatus = Literal["paid", "overpaid", "open", "overdue"]


class InvoiceLine(BaseModel):
    description: str
    kind: Literal["plan", "addon", "one_off", "adjustment"]
    amount: float


class Invoice(BaseModel):
    invoice_id: str
    period: str = Field(description="Billing month, YYYY-MM")
    issued: dt.date
    due: dt.date
    amount: float
    lines: list[InvoiceLine]


class Payment(BaseModel):
    payment_id: str
    invoice_id: str
    date: dt.date
    amount: float
    method: Literal["card", "direct_debit"]
    status: Literal["settled", "failed", "reversed"]
    failure_reason: str | None = None


class Refund(BaseModel):
    refund_id: str
    invoice_id: str
    requested: dt.date
    amount: float
    status: Literal["pending", "issued", "rejected"]


class Statement(BaseModel):
    """One invoice with its settlement as of the reference date."""

    invoice_id: str
    period: str
    issued: dt.date
    due: dt.date
    amount: float
    lines: list[InvoiceLine]
    paid: float = Field(description="Total of settled payments")
    refunded: float = Field(description="Total of issued and pending refunds")
    status: InvoiceStatus = Field(
        description="overpaid: paid less refunded exceeds the amount; overdue: short of it past the due date"
    )


class _Account(BaseModel):
    customer_id: str
    invoices: list[Invoice]
    payments: list[Payment]
    refunds: list[Refund]


def cents(amount: float) -> int:
    return round(amount * 100)


def settle(invoice: Invoice, payments: list[Payment], refunds: list[Refund], today: dt.date) -> Statement:
    paid = sum(
        cents(p.amount) for p in payments if p.invoice_id == invoice.invoice_id and p.status == "settled"
    )
    refunded = sum(
        cents(r.amount) for r in refunds if r.invoice_id == invoice.invoice_id and r.status != "rejected"
    )
    net, owed = paid - refunded, cents(invoice.amount)
    status: InvoiceStatus
    if net > owed:
        status = "overpaid"
    elif net == owed:
        status = "paid"
    else:
        status = "overdue" if invoice.due < today else "open"
    return Statement(**invoice.model_dump(), paid=paid / 100, refunded=refunded / 100, status=status)


def first_period(today: dt.date, months: int) -> str:
    index = today.year * 12 + today.month - 1 - (months - 1)
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


class Billing:
    """Every customer's billing account, as of the data set's reference date."""

    def __init__(self, as_of: dt.datetime, accounts: list[_Account]) -> None:
        self.as_of = as_of
        self._accounts = {a.customer_id: a for a in accounts}

    @classmethod
    def load(cls, path: Path) -> Billing:
        document = json.loads(path.read_text(encoding="utf-8"))
        accounts = [_Account.model_validate(item) for item in document["accounts"]]
        return cls(dt.datetime.fromisoformat(document["as_of"]), accounts)

    def known(self, customer_id: str) -> bool:
        return customer_id in self._accounts

    def statements(self, customer_id: str, months: int) -> list[Statement]:
        """Invoices of the last `months` billing months (this one included), oldest first."""
        account = self._accounts[customer_id]
        today = self.as_of.date()
        start = first_period(today, months)
        return [
            settle(invoice, account.payments, account.refunds, today)
            for invoice in sorted(account.invoices, key=lambda i: i.period)
            if invoice.period >= start
        ]

    def payments(self, customer_id: str, months: int) -> tuple[list[Payment], list[Refund]]:
        """Payments and refunds on the invoices of the last `months` billing months, oldest first."""
        account = self._accounts[customer_id]
        start = first_period(self.as_of.date(), months)
        chosen = {i.invoice_id for i in account.invoices if i.period >= start}
        payments = sorted((p for p in account.payments if p.invoice_id in chosen), key=lambda p: p.date)
        refunds = sorted((r for r in account.refunds if r.invoice_id in chosen), key=lambda r: r.requested)
        return payments, refunds
