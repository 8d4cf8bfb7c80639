"""The support-tools MCP server.

`get_ticket`, `get_customer`, `network_status`, `device_diagnostics`, `list_invoices`, `list_payments` and
`access_record`. Unknown ids answer `found=false` with the other fields empty, never an error: a missing
record is a fact the caller reasons about.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from accord.tools_server import ToolsSettings
from support_tools.billing import Billing, Payment, Refund, Statement
from support_tools.customers import Addon, Customers, CustomerStatus, Plan
from support_tools.identity import AuthFailure, Identity, User
from support_tools.network import Device, Incident, Network, RegionState

TicketId = Annotated[str, Field(min_length=1, max_length=64, description="Ticket id, e.g. TKT-7003")]
CustomerId = Annotated[str, Field(min_length=1, max_length=64, description="Customer id, e.g. CUS-0001")]
Months = Annotated[int, Field(ge=1, le=24, description="Billing months back, this month included")]


class TicketView(BaseModel):
    ticket_id: str
    found: bool
    customer_id: str | None = None
    subject: str | None = None
    body: str | None = None
    created: dt.datetime | None = None
    channel: str | None = None


class CustomerView(BaseModel):
    customer_id: str
    found: bool
    name: str | None = None
    email: str | None = None
    plan: Plan | None = None
    monthly_price: float | None = Field(default=None, description="The plan's monthly price")
    addons: list[Addon] = Field(default_factory=list)
    region: str | None = None
    country: str | None = None
    status: CustomerStatus | None = None
    since: dt.date | None = None


class RegionStatus(BaseModel):
    region: str
    found: bool
    as_of: dt.datetime
    status: RegionState | None = None
    incidents: list[Incident] = Field(default_factory=list, description="Open and recently resolved")


class DeviceReport(BaseModel):
    customer_id: str
    found: bool
    as_of: dt.datetime
    devices: list[Device] = Field(default_factory=list)


class InvoiceList(BaseModel):
    customer_id: str
    found: bool
    as_of: dt.datetime
    invoices: list[Statement] = Field(default_factory=list, description="Oldest billing month first")


class PaymentList(BaseModel):
    customer_id: str
    found: bool
    payments: list[Payment] = Field(default_factory=list)
    refunds: list[Refund] = Field(default_factory=list)


class AccessRecord(BaseModel):
    customer_id: str
    found: bool
    as_of: dt.datetime
    users: list[User] = Field(default_factory=list)
    auth_failures: list[AuthFailure] = Field(
        default_factory=list, description="Within the window, oldest first"
    )


def build_mcp(settings: ToolsSettings) -> MCPServer:
    """The MCP server over `<data_dir>/support/*.json` (loaded once; settlements computed per call)."""
    folder = settings.data_dir / "support"
    customers = Customers.load(folder)
    network = Network.load(folder / "network.json")
    billing = Billing.load(folder / "billing.json")
    identity = Identity.load(folder / "identity.json")
    mcp = MCPServer(
        "support-tools",
        version="0.1.0",
        instructions="Read support tickets and the customer's account: network, billing and access records.",
    )

    @mcp.tool(
        description="A support ticket as the customer wrote it: customer, subject, body, time, channel."
    )
    def get_ticket(ticket_id: TicketId) -> TicketView:
        ticket = customers.ticket(ticket_id)
        if ticket is None:
            return TicketView(ticket_id=ticket_id, found=False)
        return TicketView(found=True, **ticket.model_dump())

    @mcp.tool(description="The customer's plan (with its monthly price), add-ons, region and account status.")
    def get_customer(customer_id: CustomerId) -> CustomerView:
        customer = customers.customer(customer_id)
        if customer is None:
            return CustomerView(customer_id=customer_id, found=False)
        return CustomerView(found=True, **customer.model_dump())

    @mcp.tool(description="A region's network state and its open or recently resolved incidents.")
    def network_status(
        region: Annotated[str, Field(min_length=1, max_length=32, description="Region name, e.g. north")],
        days: Annotated[int, Field(ge=1, le=90, description="How far back resolved incidents go")] = 30,
    ) -> RegionStatus:
        found = network.region(region)
        if found is None:
            return RegionStatus(region=region, found=False, as_of=network.as_of)
        incidents = network.recent_incidents(found, days)
        return RegionStatus(
            region=found.region, found=True, as_of=network.as_of, status=found.status, incidents=incidents
        )

    @mcp.tool(
        description=(
            "Diagnostics of the customer's devices: online state, firmware against the latest, packet loss, "
            "latency and reboots in the last 7 days."
        )
    )
    def device_diagnostics(customer_id: CustomerId) -> DeviceReport:
        devices = network.devices(customer_id)
        if devices is None:
            return DeviceReport(customer_id=customer_id, found=False, as_of=network.as_of)
        return DeviceReport(customer_id=customer_id, found=True, as_of=network.as_of, devices=devices)

    @mcp.tool(
        description=(
            "The customer's invoices with their lines and settlement: paid, refunded and status "
            "(paid, overpaid, open, overdue)."
        )
    )
    def list_invoices(customer_id: CustomerId, months: Months = 6) -> InvoiceList:
        if not billing.known(customer_id):
            return InvoiceList(customer_id=customer_id, found=False, as_of=billing.as_of)
        statements = billing.statements(customer_id, months)
        return InvoiceList(customer_id=customer_id, found=True, as_of=billing.as_of, invoices=statements)

    @mcp.tool(
        description="Payments (settled, failed, reversed) and refunds on the customer's recent invoices."
    )
    def list_payments(customer_id: CustomerId, months: Months = 6) -> PaymentList:
        if not billing.known(customer_id):
            return PaymentList(customer_id=customer_id, found=False)
        payments, refunds = billing.payments(customer_id, months)
        return PaymentList(customer_id=customer_id, found=True, payments=payments, refunds=refunds)

    @mcp.tool(
        description=(
            "The customer's portal users (role, MFA, lockout, password change) and failed sign-ins in the "
            "last `days` days."
        )
    )
    def access_record(
        customer_id: CustomerId,
        days: Annotated[int, Field(ge=1, le=30, description="Window for failed sign-ins")] = 7,
    ) -> AccessRecord:
        users = identity.users(customer_id)
        if users is None:
            return AccessRecord(customer_id=customer_id, found=False, as_of=identity.as_of)
        failures = identity.failures(customer_id, days)
        return AccessRecord(
            customer_id=customer_id, found=True, as_of=identity.as_of, users=users, auth_failures=failures
        )

    return mcp
