"""The support tools' results as triage reads them, validated before use: tool output is untrusted data."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from accord import support_desk

Category = Literal["network", "billing", "access"]
CATEGORIES: tuple[Category, ...] = ("network", "billing", "access")


class Customer(BaseModel):
    customer_id: str
    found: bool
    name: str | None = None
    plan: str | None = None
    monthly_price: float | None = Field(default=None, ge=0)
    region: str | None = None
    country: str | None = None
    status: str | None = None


class Incident(BaseModel):
    incident_id: str
    severity: str
    status: str
    summary: str = ""


class RegionStatus(support_desk.RegionStatus[Incident]):
    pass  # a named subclass, so the published schema keeps its plain title (not "Model[Param]")


class Device(BaseModel):
    device_id: str
    online: bool
    firmware: str
    latest_firmware: str
    packet_loss: float = Field(ge=0, le=1)
    latency_ms: int = Field(ge=0)
    reboots_7d: int = Field(ge=0)


class DeviceReport(support_desk.DeviceReport[Device]):
    pass  # a named subclass, so the published schema keeps its plain title (not "Model[Param]")


class InvoiceLine(BaseModel):
    kind: str
    amount: float


class Invoice(BaseModel):
    invoice_id: str
    period: str
    amount: float
    lines: list[InvoiceLine] = Field(default_factory=list)
    status: str


class Invoices(support_desk.Invoices[Invoice]):
    pass  # a named subclass, so the published schema keeps its plain title (not "Model[Param]")


class Payment(BaseModel):
    payment_id: str
    invoice_id: str
    status: str


class Refund(BaseModel):
    refund_id: str
    invoice_id: str
    status: str


class Payments(support_desk.Payments[Payment, Refund]):
    pass  # a named subclass, so the published schema keeps its plain title (not "Model[Param]")


class User(BaseModel):
    user_id: str
    locked: bool
    mfa_changed: dt.datetime
    password_changed: dt.datetime


class AccessRecord(support_desk.AccessRecord[User]):
    pass  # a named subclass, so the published schema keeps its plain title (not "Model[Param]")


class Account(BaseModel):
    """Everything triage looks at besides the ticket's text."""

    customer: Customer
    region: RegionStatus
    devices: DeviceReport
    invoices: Invoices
    payments: Payments
    access: AccessRecord
