"""The access-resolution skill: why a customer cannot sign in, and the safe way back in.

Account takeover comes first: sign-in attempts from unknown devices or abroad, together with a recent
password or MFA change, mean the account is no longer the customer's alone; sessions are revoked and the
security team takes over (escalate). Otherwise a locked user is unlocked and a user failing MFA has it
reset, both only after the customer's identity is verified. The ticket's text names a user when it
carries their email; otherwise every portal user of the customer is considered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter

from pydantic import BaseModel, Field

from accord import support_desk
from accord.agent import Agent, ToolBox
from accord.errors import AccordError
from accord.support_desk import AuthFailure, ResolutionInput, check_ticket_owner
from accord.support_desk import DescribedTicket as Ticket

RECENT = dt.timedelta(hours=72)
MFA_FAILURES = 3

agent = Agent("access-agent")


class Action(BaseModel):
    type: str = Field(description="What to do, e.g. verify_identity, unlock_account, revoke_sessions")
    detail: str


class ResolutionOutput(support_desk.ResolutionOutput[Action]):
    pass  # a named subclass, so the published schema keeps its plain title (not "Model[Param]")


class Customer(BaseModel):
    customer_id: str
    found: bool
    country: str | None = None


class User(BaseModel):
    user_id: str
    email: str
    role: str
    mfa: str
    mfa_changed: dt.datetime
    locked: bool
    lock_reason: str | None = None
    password_changed: dt.datetime


class AccessRecord(support_desk.AccessRecord[User]):
    pass  # a named subclass, so the published schema keeps its plain title (not "Model[Param]")


@agent.skill(
    "access-resolution", tools=["support.get_ticket", "support.get_customer", "support.access_record"]
)
async def access_resolution(request: ResolutionInput, tools: ToolBox) -> ResolutionOutput:
    by_customer = {"customer_id": request.customer_id}
    raw_ticket, raw_customer, raw_record = await asyncio.gather(
        tools.call("support.get_ticket", {"ticket_id": request.ticket_id}),
        tools.call("support.get_customer", by_customer),
        tools.call("support.access_record", by_customer),
    )
    ticket = Ticket.model_validate(raw_ticket)
    check_ticket_owner(ticket, request)
    customer = Customer.model_validate(raw_customer)
    record = AccessRecord.model_validate(raw_record)
    if not customer.found or not record.found:
        raise AccordError("not_found", f"customer {request.customer_id} has no access record")
    return resolve(ticket, customer, record)


def users_in_question(ticket: Ticket, users: list[User]) -> list[User]:
    text = f"{ticket.subject or ''} {ticket.body or ''}".casefold()
    named = [u for u in users if u.email.casefold() in text]
    return named or users


def resolve(ticket: Ticket, customer: Customer, record: AccessRecord) -> ResolutionOutput:
    users = users_in_question(ticket, record.users)
    ids = {u.user_id for u in users}
    failures = [f for f in record.auth_failures if f.user_id in ids]
    home = customer.country
    strange = [f for f in failures if f.device == "unknown" or (home is not None and f.country != home)]
    changed = [
        u
        for u in users
        if record.as_of - u.password_changed <= RECENT or record.as_of - u.mfa_changed <= RECENT
    ]
    if strange and changed:
        return takeover(ticket.ticket_id, changed, strange)
    locked = [u for u in users if u.locked]
    if locked:
        return unlock(ticket.ticket_id, locked, strange)
    mfa_failures = Counter(f.user_id for f in failures if f.reason == "mfa_failed")
    failing = [u for u in users if mfa_failures[u.user_id] >= MFA_FAILURES]
    if failing:
        return reset_mfa(ticket.ticket_id, failing)
    note = " (only isolated MFA failures)" if mfa_failures else ""
    return ResolutionOutput(
        ticket_id=ticket.ticket_id,
        resolution=f"No lockout, takeover sign or repeated failure on record{note}; guide the customer "
        "through signing in.",
        actions=[Action(type="send_login_help", detail="sign-in guide and password reset link")],
        escalate=False,
        confidence=0.5,
    )


def takeover(ticket_id: str, changed: list[User], strange: list[AuthFailure]) -> ResolutionOutput:
    countries = ", ".join(sorted({f.country for f in strange}))
    actions = []
    for user in changed:
        actions += [
            Action(type="revoke_sessions", detail=user.user_id),
            Action(type="force_password_reset", detail=f"{user.user_id} after identity verification"),
        ]
        if user.mfa == "none":
            actions.append(Action(type="reenable_mfa", detail=f"{user.user_id} had MFA removed"))
    actions.append(Action(type="notify_security", detail=f"{len(strange)} attempts from {countries}"))
    return ResolutionOutput(
        ticket_id=ticket_id,
        resolution=f"Likely account takeover: credentials changed recently while unknown devices in "
        f"{countries} tried to sign in. Sessions revoked; the security team must take over.",
        actions=actions,
        escalate=True,
        confidence=0.9,
    )


def unlock(ticket_id: str, locked: list[User], strange: list[AuthFailure]) -> ResolutionOutput:
    actions = [Action(type="verify_identity", detail="before any change to the account")]
    for user in locked:
        actions += [
            Action(type="unlock_account", detail=f"{user.user_id} ({user.lock_reason or 'locked'})"),
            Action(type="send_password_reset", detail=user.email),
        ]
    # Foreign attempts without a credential change are worth a look, but they do not block the unlock.
    return ResolutionOutput(
        ticket_id=ticket_id,
        resolution=f"{len(locked)} user(s) locked after failed sign-ins; unlock once identity is verified.",
        actions=actions,
        escalate=False,
        confidence=0.75 if strange else 0.9,
    )


def reset_mfa(ticket_id: str, users: list[User]) -> ResolutionOutput:
    actions = [Action(type="verify_identity", detail="before resetting a second factor")]
    actions += [Action(type="reset_mfa", detail=f"{u.user_id} ({u.mfa})") for u in users]
    return ResolutionOutput(
        ticket_id=ticket_id,
        resolution="Repeated failed MFA challenges: the second factor no longer works; reset it after "
        "identity verification.",
        actions=actions,
        escalate=False,
        confidence=0.85,
    )


def main() -> None:
    agent.run()
