"""The network, billing and access resolvers on the data set's tickets and on hand-made edge cases."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from access_agent import agent as access
from accord.agent import Agent
from accord.errors import AccordError
from billing_agent import agent as billing
from network_agent import agent as network
from tests.in_process_tools import InProcessTools, load

RESOLVERS: dict[str, tuple[Agent, str]] = {
    "network": (network.agent, "network-diagnosis"),
    "billing": (billing.agent, "billing-resolution"),
    "access": (access.agent, "access-resolution"),
}
# scenario -> (resolver, action types in order, escalate)
CASES: dict[str, tuple[str, list[str], bool]] = {
    "network_regional_outage": ("network", ["link_incident", "notify_customer"], False),
    "network_business_outage": (
        "network",
        ["link_incident", "notify_customer", "priority_restoration"],
        True,
    ),
    "network_degraded_region": ("network", ["link_incident", "notify_customer"], False),
    "network_device_offline": ("network", ["remote_reboot"], False),
    "network_device_repeat_failure": ("network", ["dispatch_technician"], True),
    "network_outdated_firmware": ("network", ["push_firmware", "line_test"], False),
    "network_no_fault_found": ("network", ["request_info"], False),
    "misleading_suspended_for_non_payment": ("network", ["reroute"], False),
    "billing_duplicate_charge": ("billing", ["refund"], False),
    "billing_duplicate_large": ("billing", ["refund_for_approval"], True),
    "billing_overbilled_plan": ("billing", ["credit"], False),
    "billing_failed_payment": ("billing", ["update_payment_method", "send_payment_link"], False),
    "billing_refund_pending": ("billing", ["inform_refund_status"], False),
    "ambiguous_bill_and_connection": ("billing", ["explain_invoice"], False),
    "access_locked_out": ("access", ["verify_identity", "unlock_account", "send_password_reset"], False),
    "access_account_takeover": (
        "access",
        ["revoke_sessions", "force_password_reset", "reenable_mfa", "notify_security"],
        True,
    ),
    "access_mfa_lost_phone": ("access", ["verify_identity", "reset_mfa"], False),
    "access_no_record": ("access", ["send_login_help"], False),
}
NOW = dt.datetime(2026, 10, 31, 18, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def tools() -> InProcessTools:
    return InProcessTools()


def ticket(scenario: str) -> dict[str, Any]:
    return next(t for t in load("support/tickets.json")["tickets"] if t["scenario"] == scenario)


async def resolve(tools: InProcessTools, resolver: str, scenario: str) -> dict[str, Any]:
    agent, skill = RESOLVERS[resolver]
    row = ticket(scenario)
    return await tools.run(agent, skill, {"ticket_id": row["ticket_id"], "customer_id": row["customer_id"]})


@pytest.mark.parametrize("scenario", sorted(CASES))
async def test_each_resolver_prescribes_what_the_records_call_for(
    tools: InProcessTools, scenario: str
) -> None:
    resolver, actions, escalate = CASES[scenario]
    result = await resolve(tools, resolver, scenario)
    assert [a["type"] for a in result["actions"]] == actions
    assert result["escalate"] is escalate
    assert result["resolution"]
    assert 0 < result["confidence"] <= 1


async def test_finding_nothing_is_said_with_less_confidence_than_a_clear_fault(tools: InProcessTools) -> None:
    for resolver, nothing, fault in (
        ("network", "network_no_fault_found", "network_regional_outage"),
        ("billing", "ambiguous_bill_and_connection", "billing_duplicate_charge"),
        ("access", "access_no_record", "access_locked_out"),
    ):
        low = (await resolve(tools, resolver, nothing))["confidence"]
        high = (await resolve(tools, resolver, fault))["confidence"]
        assert low < 0.6 < high, resolver


async def test_a_refund_names_the_overpaid_amount_and_invoice(tools: InProcessTools) -> None:
    row = ticket("billing_duplicate_charge")
    invoices = await tools.call("support.list_invoices", {"customer_id": row["customer_id"]})
    overpaid = next(i for i in invoices["invoices"] if i["status"] == "overpaid")
    result = await resolve(tools, "billing", "billing_duplicate_charge")
    assert result["actions"][0]["detail"].startswith(
        f"{overpaid['amount']:.2f} overpaid on {overpaid['invoice_id']}"
    )


@pytest.mark.parametrize("resolver", sorted(RESOLVERS))
async def test_a_ticket_of_another_customer_is_refused_as_invalid_input(
    tools: InProcessTools, resolver: str
) -> None:
    agent, skill = RESOLVERS[resolver]
    row, other = ticket("access_locked_out"), ticket("billing_duplicate_charge")
    with pytest.raises(AccordError) as caught:
        await tools.run(agent, skill, {"ticket_id": row["ticket_id"], "customer_id": other["customer_id"]})
    assert caught.value.reason == "invalid_input"


@pytest.mark.parametrize("resolver", sorted(RESOLVERS))
async def test_an_unknown_ticket_is_not_found(tools: InProcessTools, resolver: str) -> None:
    agent, skill = RESOLVERS[resolver]
    with pytest.raises(AccordError) as caught:
        await tools.run(agent, skill, {"ticket_id": "TKT-0001", "customer_id": "CUS-0001"})
    assert caught.value.reason == "not_found"


def invoice(paid: float, amount: float = 50.0, refunded: float = 0.0) -> billing.Invoice:
    return billing.Invoice(
        invoice_id="INV-1",
        period="2026-09",
        amount=amount,
        lines=[billing.InvoiceLine(description="Plan", kind="plan", amount=amount)],
        paid=paid,
        refunded=refunded,
        status="overpaid" if paid - refunded > amount else "paid",
    )


@pytest.mark.parametrize(("excess", "kind"), [(100.0, "refund"), (100.01, "refund_for_approval")])
def test_refunds_up_to_the_auto_approval_limit_need_no_person(excess: float, kind: str) -> None:
    customer = billing.Customer(customer_id="CUS-1", found=True, plan="standard", monthly_price=50.0)
    invoices = billing.Invoices(found=True, invoices=[invoice(paid=50.0 + excess)])
    result = billing.reconcile("TKT-1", customer, invoices, billing.Payments(found=True))
    assert [a.type for a in result.actions] == [kind]
    assert result.escalate is (kind != "refund")


def test_money_is_compared_in_cents_so_float_noise_is_no_overpayment() -> None:
    customer = billing.Customer(customer_id="CUS-1", found=True, plan="standard", monthly_price=0.3)
    invoices = billing.Invoices(found=True, invoices=[invoice(paid=0.1 + 0.2, amount=0.3)])
    result = billing.reconcile("TKT-1", customer, invoices, billing.Payments(found=True))
    assert [a.type for a in result.actions] == ["explain_invoice"]


def device(**changes: Any) -> network.Device:
    base: dict[str, Any] = {
        "device_id": "DEV-1",
        "model": "Hub 4",
        "online": True,
        "firmware": "4.3.2",
        "latest_firmware": "4.3.2",
        "packet_loss": 0.0,
        "latency_ms": 10,
        "reboots_7d": 0,
    }
    return network.Device.model_validate({**base, **changes})


@pytest.mark.parametrize(("reboots", "action"), [(2, "remote_reboot"), (3, "dispatch_technician")])
def test_an_offline_device_gets_a_technician_once_reboots_stopped_helping(reboots: int, action: str) -> None:
    assert [a.type for a in network.device_actions(device(online=False, reboots_7d=reboots))] == [action]


def test_a_healthy_device_needs_nothing() -> None:
    assert network.device_actions(device()) == []


def user(**changes: Any) -> access.User:
    base: dict[str, Any] = {
        "user_id": "U-1",
        "email": "ava@example.net",
        "role": "owner",
        "mfa": "app",
        "mfa_changed": NOW - dt.timedelta(days=100),
        "locked": False,
        "password_changed": NOW - dt.timedelta(days=100),
    }
    return access.User.model_validate({**base, **changes})


def failure(country: str = "GB", device: str = "known", reason: str = "bad_password") -> access.AuthFailure:
    return access.AuthFailure(
        at=NOW - dt.timedelta(hours=1), user_id="U-1", reason=reason, country=country, device=device
    )


def access_case(users: list[access.User], failures: list[access.AuthFailure]) -> access.ResolutionOutput:
    ticket = access.Ticket(ticket_id="TKT-1", found=True, customer_id="CUS-1", subject="Cannot sign in")
    customer = access.Customer(customer_id="CUS-1", found=True, country="GB")
    record = access.AccessRecord(found=True, as_of=NOW, users=users, auth_failures=failures)
    return access.resolve(ticket, customer, record)


def test_foreign_attempts_without_a_credential_change_do_not_count_as_takeover() -> None:
    result = access_case([user(locked=True)], [failure(country="RU", device="unknown")])
    assert [a.type for a in result.actions][:2] == ["verify_identity", "unlock_account"]
    assert result.escalate is False
    assert result.confidence < 0.9


def test_a_recent_password_change_with_foreign_attempts_is_a_takeover() -> None:
    changed = user(password_changed=NOW - dt.timedelta(hours=5))
    result = access_case([changed], [failure(country="RU", device="unknown")])
    assert result.escalate is True
    assert "revoke_sessions" in [a.type for a in result.actions]


def test_a_user_named_by_email_in_the_ticket_is_the_one_considered() -> None:
    named = user(user_id="U-2", email="ava@example.net")
    other = user(user_id="U-3", email="bob@example.net", locked=True)
    ticket = access.Ticket(
        ticket_id="TKT-1", found=True, customer_id="CUS-1", body="My login is AVA@example.net"
    )
    assert access.users_in_question(ticket, [named, other]) == [named]
