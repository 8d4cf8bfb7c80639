"""The billing-resolution skill: reconcile a customer's invoices and payments and say what to put right.

Money is compared in integer cents. Overpaid invoices are refunded, plan lines billed above the plan's price
are credited; either above the auto-approval limit needs a person (escalate). Refunds already pending are
reported rather than repeated. Overdue invoices get a payment link (and a card update when the card
expired); a suspended account is restored on payment. With nothing out of order the invoice is explained.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from pydantic import BaseModel, Field

from accord import support_desk
from accord.agent import Agent, ToolBox
from accord.errors import AccordError
from accord.support_desk import ResolutionInput, Ticket, check_ticket_owner

# Refunds and credits up to this amount are issued without a person approving them.
AUTO_APPROVAL_LIMIT_CENTS = 100_00
FOR_APPROVAL = "_for_approval"

agent = Agent("billing-agent")


class Action(BaseModel):
    type: str = Field(description="What to do, e.g. refund, credit, send_payment_link, explain_invoice")
    detail: str


class ResolutionOutput(support_desk.ResolutionOutput[Action]):
    pass  # a named subclass, so the published schema keeps its plain title (not "Model[Param]")


class Customer(BaseModel):
    customer_id: str
    found: bool
    plan: str | None = None
    monthly_price: float | None = Field(default=None, ge=0)
    status: str | None = None


class InvoiceLine(BaseModel):
    description: str
    kind: str
    amount: float


class Invoice(BaseModel):
    invoice_id: str
    period: str
    amount: float
    lines: list[InvoiceLine] = Field(default_factory=list)
    paid: float
    refunded: float
    status: str


class Invoices(support_desk.Invoices[Invoice]):
    pass  # a named subclass, so the published schema keeps its plain title (not "Model[Param]")


class Payment(BaseModel):
    payment_id: str
    invoice_id: str
    amount: float
    status: str
    failure_reason: str | None = None


class Refund(BaseModel):
    refund_id: str
    invoice_id: str
    amount: float
    status: str


class Payments(support_desk.Payments[Payment, Refund]):
    pass  # a named subclass, so the published schema keeps its plain title (not "Model[Param]")


@agent.skill(
    "billing-resolution",
    tools=["support.get_ticket", "support.get_customer", "support.list_invoices", "support.list_payments"],
)
async def billing_resolution(request: ResolutionInput, tools: ToolBox) -> ResolutionOutput:
    ticket, customer = await asyncio.gather(
        tools.call("support.get_ticket", {"ticket_id": request.ticket_id}),
        tools.call("support.get_customer", {"customer_id": request.customer_id}),
    )
    check_ticket_owner(Ticket.model_validate(ticket), request)
    owner = Customer.model_validate(customer)
    if not owner.found:
        raise AccordError("not_found", f"customer {request.customer_id} has no record")
    by_customer = {"customer_id": request.customer_id}
    invoices, payments = await asyncio.gather(
        tools.call("support.list_invoices", by_customer), tools.call("support.list_payments", by_customer)
    )
    return reconcile(
        request.ticket_id, owner, Invoices.model_validate(invoices), Payments.model_validate(payments)
    )


def cents(amount: float) -> int:
    return round(amount * 100)


def money(amount_cents: int) -> str:
    return f"{amount_cents / 100:.2f}"


def reconcile(ticket_id: str, customer: Customer, invoices: Invoices, payments: Payments) -> ResolutionOutput:
    actions = [
        *overpayments(invoices),
        *pending_refunds(payments),
        *overbilled_plan_lines(customer, invoices),
        *arrears(customer, invoices, payments),
    ]
    if not actions:
        return ResolutionOutput(
            ticket_id=ticket_id,
            resolution="Invoices and payments reconcile: every invoice is billed at the plan's price and "
            "paid once. Explain the charges to the customer.",
            actions=[Action(type="explain_invoice", detail=latest_invoice(invoices))],
            escalate=False,
            confidence=0.55,
        )
    escalate = any(a.type.endswith(FOR_APPROVAL) for a in actions)
    kinds = sorted({a.type for a in actions})
    steps = "; ".join(f"{a.type.replace('_', ' ')}: {a.detail}" for a in actions)
    approval = " Above the auto-approval limit: a person must approve." if escalate else ""
    return ResolutionOutput(
        ticket_id=ticket_id,
        resolution=f"{steps}.{approval}",
        actions=actions,
        escalate=escalate,
        confidence=0.9 if len(kinds) == 1 else 0.8,
    )


def _money_action(kind: str, amount_cents: int, detail: str) -> Action:
    needs_approval = amount_cents > AUTO_APPROVAL_LIMIT_CENTS
    return Action(
        type=kind + FOR_APPROVAL if needs_approval else kind, detail=f"{money(amount_cents)} {detail}"
    )


def overpayments(invoices: Invoices) -> Iterator[Action]:
    for invoice in invoices.invoices:
        excess = cents(invoice.paid) - cents(invoice.refunded) - cents(invoice.amount)
        if excess > 0:
            yield _money_action("refund", excess, f"overpaid on {invoice.invoice_id} ({invoice.period})")


def pending_refunds(payments: Payments) -> Iterator[Action]:
    for refund in payments.refunds:
        if refund.status == "pending":
            yield Action(
                type="inform_refund_status",
                detail=f"refund {refund.refund_id} of {money(cents(refund.amount))} on {refund.invoice_id} "
                "is pending",
            )


def overbilled_plan_lines(customer: Customer, invoices: Invoices) -> Iterator[Action]:
    if customer.monthly_price is None:
        return
    price = cents(customer.monthly_price)
    for invoice in invoices.invoices:
        over = sum(cents(line.amount) - price for line in invoice.lines if line.kind == "plan")
        if over > 0:
            detail = f"plan billed above the {customer.plan} price on {invoice.invoice_id} ({invoice.period})"
            yield _money_action("credit", over, detail)


def arrears(customer: Customer, invoices: Invoices, payments: Payments) -> Iterator[Action]:
    overdue = [i for i in invoices.invoices if i.status == "overdue"]
    if not overdue:
        return
    owed = sum(cents(i.amount) - cents(i.paid) + cents(i.refunded) for i in overdue)
    reasons = {p.failure_reason for p in payments.payments if p.status == "failed" and p.failure_reason}
    if "card_expired" in reasons:
        yield Action(type="update_payment_method", detail="the card on file has expired")
    ids = ", ".join(i.invoice_id for i in overdue)
    yield Action(type="send_payment_link", detail=f"{money(owed)} due on {ids}")
    if customer.status == "suspended":
        yield Action(type="restore_service_on_payment", detail=f"{customer.customer_id} is suspended")


def latest_invoice(invoices: Invoices) -> str:
    if not invoices.invoices:
        return "no invoices in the last six months"
    latest = invoices.invoices[-1]
    lines = "; ".join(f"{line.description} {money(cents(line.amount))}" for line in latest.lines)
    return f"{latest.invoice_id} ({latest.period}): {lines}"


def main() -> None:
    agent.run()
