"""The ticket-triage skill: which specialist should take a support ticket, how urgently, how surely.

It reads the ticket, then the customer's whole account at once (region status, devices, invoices, payments,
access record) and classifies from the words and the records together (see `classification`).
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from accord.agent import Agent, ToolBox
from accord.errors import AccordError
from accord.support_desk import DescribedTicket as Ticket
from triage_agent.classification import classify
from triage_agent.evidence import Priority, account_findings
from triage_agent.lexicon import read_text
from triage_agent.records import (
    AccessRecord,
    Account,
    Category,
    Customer,
    DeviceReport,
    Invoices,
    Payments,
    RegionStatus,
)

MAX_SIGNALS = 12

agent = Agent("triage-agent")


class TriageInput(BaseModel):
    ticket_id: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$", description="e.g. TKT-7003"
    )


class TriageOutput(BaseModel):
    ticket_id: str
    customer_id: str
    category: Category = Field(description="The specialist that should take the ticket")
    priority: Priority
    summary: str
    signals: list[str] = Field(description="The account findings and ticket terms behind the answer")
    confidence: float = Field(
        ge=0, le=1, description="Low when the ticket is ambiguous or only words back it"
    )


@agent.skill(
    "ticket-triage",
    tools=[
        "support.get_ticket",
        "support.get_customer",
        "support.network_status",
        "support.device_diagnostics",
        "support.list_invoices",
        "support.list_payments",
        "support.access_record",
    ],
)
async def ticket_triage(request: TriageInput, tools: ToolBox) -> TriageOutput:
    ticket = Ticket.model_validate(await tools.call("support.get_ticket", {"ticket_id": request.ticket_id}))
    if not ticket.found or ticket.customer_id is None:
        raise AccordError("not_found", f"ticket {request.ticket_id} does not exist")
    account = await read_account(tools, ticket.customer_id)
    return triage(ticket, account)


async def read_account(tools: ToolBox, customer_id: str) -> Account:
    customer = Customer.model_validate(await tools.call("support.get_customer", {"customer_id": customer_id}))
    if not customer.found or customer.region is None:
        raise AccordError("not_found", f"customer {customer_id} has no record")
    by_customer = {"customer_id": customer_id}
    region, devices, invoices, payments, access = await asyncio.gather(
        tools.call("support.network_status", {"region": customer.region}),
        tools.call("support.device_diagnostics", by_customer),
        tools.call("support.list_invoices", by_customer),
        tools.call("support.list_payments", by_customer),
        tools.call("support.access_record", by_customer),
    )
    return Account(
        customer=customer,
        region=RegionStatus.model_validate(region),
        devices=DeviceReport.model_validate(devices),
        invoices=Invoices.model_validate(invoices),
        payments=Payments.model_validate(payments),
        access=AccessRecord.model_validate(access),
    )


def triage(ticket: Ticket, account: Account) -> TriageOutput:
    subject = (ticket.subject or "").strip()
    text = read_text(subject, ticket.body or "")
    findings = account_findings(account)
    result = classify(text, findings, account.customer.plan)
    own = [f.signal for f in findings if f.category == result.category]
    others = [f.signal for f in findings if f.category != result.category]
    customer = account.customer
    lead = f"; {own[0]}" if own else "; nothing in the account records backs it"
    summary = (
        f"{result.category.title()} issue for {customer.customer_id} ({customer.plan} plan, "
        f"{customer.region}): {subject}{lead}"
    )
    return TriageOutput(
        ticket_id=ticket.ticket_id,
        customer_id=customer.customer_id,
        category=result.category,
        priority=result.priority,
        summary=summary,
        signals=[*own, *others, *text.signals][:MAX_SIGNALS],
        confidence=result.confidence,
    )


def main() -> None:
    agent.run()
