"""Customers and their support tickets, loaded from `support/customers.json` and `support/tickets.json`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

Plan = Literal["basic", "standard", "premium", "business"]
CustomerStatus = Literal["active", "suspended", "closed"]


class Addon(BaseModel):
    name: str
    monthly_price: float = Field(ge=0)


class Customer(BaseModel):
    customer_id: str
    name: str
    email: str
    plan: Plan
    monthly_price: float = Field(ge=0, description="The plan's price per month, add-ons excluded")
    addons: list[Addon] = Field(default_factory=list)
    region: str
    country: str
    status: CustomerStatus
    since: dt.date


class Ticket(BaseModel):
    """A ticket as the customer wrote it. Generator-only fields (scenario, note) are never loaded."""

    ticket_id: str
    customer_id: str
    subject: str
    body: str
    created: dt.datetime
    channel: str


class Customers:
    """Every customer and ticket, by id."""

    def __init__(self, customers: list[Customer], tickets: list[Ticket]) -> None:
        self._customers = {c.customer_id: c for c in customers}
        self._tickets = {t.ticket_id: t for t in tickets}

    @classmethod
    def load(cls, folder: Path) -> Customers:
        customers = json.loads((folder / "customers.json").read_text(encoding="utf-8"))["customers"]
        tickets = json.loads((folder / "tickets.json").read_text(encoding="utf-8"))["tickets"]
        return cls(
            [Customer.model_validate(item) for item in customers],
            [Ticket.model_validate(item) for item in tickets],
        )

    def customer(self, customer_id: str) -> Customer | None:
        return self._customers.get(customer_id)

    def ticket(self, ticket_id: str) -> Ticket | None:
        return self._tickets.get(ticket_id)
