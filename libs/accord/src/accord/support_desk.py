"""What the support desk's specialists share: the request they take, the answer's shape, the tool records.

A resolver (access, billing, network) is asked about one ticket of one customer and answers with a
resolution and the actions behind it; each names its own `Action` (the card describes its kinds of
action). The support tools' results are untrusted data, validated before use: the generic records here are
the tools' envelopes, each specialist parametrizes them with the fields it actually reads.
"""

from __future__ import annotations

import datetime as dt
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from accord.errors import AccordError

ActionT = TypeVar("ActionT", bound=BaseModel)
IncidentT = TypeVar("IncidentT", bound=BaseModel)
DeviceT = TypeVar("DeviceT", bound=BaseModel)
InvoiceT = TypeVar("InvoiceT", bound=BaseModel)
PaymentT = TypeVar("PaymentT", bound=BaseModel)
RefundT = TypeVar("RefundT", bound=BaseModel)
UserT = TypeVar("UserT", bound=BaseModel)


class ResolutionInput(BaseModel):
    ticket_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    customer_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")


class ResolutionOutput(BaseModel, Generic[ActionT]):
    ticket_id: str
    resolution: str
    actions: list[ActionT]
    escalate: bool = Field(description="True when a human team must take over")
    confidence: float = Field(ge=0, le=1)


class Ticket(BaseModel):
    ticket_id: str
    found: bool
    customer_id: str | None = None


class DescribedTicket(Ticket):
    """A ticket read together with its text."""

    subject: str | None = None
    body: str | None = None


def check_ticket_owner(ticket: Ticket, request: ResolutionInput) -> None:
    """Refuses a ticket that does not exist or is not the request's customer's (a mis-routed step)."""
    if not ticket.found:
        raise AccordError("not_found", f"ticket {request.ticket_id} does not exist")
    if ticket.customer_id != request.customer_id:
        raise AccordError(
            "invalid_input", f"ticket {request.ticket_id} is not customer {request.customer_id}'s"
        )


class RegionStatus(BaseModel, Generic[IncidentT]):
    region: str
    found: bool
    status: str | None = None
    incidents: list[IncidentT] = Field(default_factory=list)


class DeviceReport(BaseModel, Generic[DeviceT]):
    found: bool
    devices: list[DeviceT] = Field(default_factory=list)


class Invoices(BaseModel, Generic[InvoiceT]):
    found: bool
    invoices: list[InvoiceT] = Field(default_factory=list)


class Payments(BaseModel, Generic[PaymentT, RefundT]):
    found: bool
    payments: list[PaymentT] = Field(default_factory=list)
    refunds: list[RefundT] = Field(default_factory=list)


class AuthFailure(BaseModel):
    at: dt.datetime
    user_id: str
    reason: str
    country: str
    device: str


class AccessRecord(BaseModel, Generic[UserT]):
    found: bool
    as_of: dt.datetime
    users: list[UserT] = Field(default_factory=list)
    auth_failures: list[AuthFailure] = Field(default_factory=list)
