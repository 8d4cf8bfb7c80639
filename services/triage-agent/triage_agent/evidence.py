"""What the customer's account records say about each category, whatever the ticket claims.

Each finding carries a weight (how strongly it points at its category) and the priority it implies on its
own: a live outage or a locked owner is `high`, signs of an account takeover are `urgent`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from triage_agent.records import (
    AccessRecord,
    Account,
    Category,
    Customer,
    Device,
    DeviceReport,
    Incident,
    Invoices,
    Payments,
    RegionStatus,
)

Priority = Literal["low", "normal", "high", "urgent"]
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "urgent")

LOSSY_PACKET_LOSS = 0.03
LOSSY_LATENCY_MS = 100
REPEATED_REBOOTS = 3
FAILURE_BURST = 3
RECENT = dt.timedelta(hours=72)
BURST_WINDOW = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Finding:
    category: Category
    weight: float
    priority: Priority
    signal: str


def account_findings(account: Account) -> list[Finding]:
    """Every finding in the account records, heaviest first."""
    findings = [
        *network_findings(account.region, account.devices),
        *billing_findings(account.customer, account.invoices, account.payments),
        *access_findings(account.customer, account.access),
    ]
    return sorted(findings, key=lambda f: -f.weight)


def network_findings(region: RegionStatus, devices: DeviceReport) -> list[Finding]:
    findings = [_incident(region, incident) for incident in region.incidents if incident.status == "open"]
    for device in devices.devices:
        findings += device_findings(device)
    return findings


def _incident(region: RegionStatus, incident: Incident) -> Finding:
    outage = region.status == "outage"
    return Finding(
        "network",
        4.0 if outage else 3.0,
        "high" if outage else "normal",
        f"network: region {region.region} {region.status}, open {incident.severity} incident "
        f"{incident.incident_id}",
    )


def device_findings(device: Device) -> list[Finding]:
    name = f"network: device {device.device_id}"
    findings: list[Finding] = []
    if not device.online:
        findings.append(Finding("network", 3.0, "high", f"{name} offline"))
    elif device.packet_loss >= LOSSY_PACKET_LOSS or device.latency_ms >= LOSSY_LATENCY_MS:
        loss = f"{name} loses {device.packet_loss:.0%} of packets at {device.latency_ms} ms"
        findings.append(Finding("network", 2.0, "normal", loss))
    if device.firmware != device.latest_firmware:
        findings.append(Finding("network", 1.0, "low", f"{name} on old firmware"))
    if device.reboots_7d >= REPEATED_REBOOTS:
        findings.append(
            Finding("network", 1.0, "normal", f"{name} rebooted {device.reboots_7d} times in 7 days")
        )
    return findings


def billing_findings(customer: Customer, invoices: Invoices, payments: Payments) -> list[Finding]:
    findings: list[Finding] = []
    if customer.status == "suspended":
        findings.append(Finding("billing", 4.0, "high", "billing: account suspended"))
    overdue = [i.invoice_id for i in invoices.invoices if i.status == "overdue"]
    if overdue:
        findings.append(Finding("billing", 3.0, "normal", f"billing: {len(overdue)} overdue invoice(s)"))
    overpaid = [i.invoice_id for i in invoices.invoices if i.status == "overpaid"]
    if overpaid:
        findings.append(Finding("billing", 3.0, "high", f"billing: overpaid {', '.join(overpaid)}"))
    price = customer.monthly_price
    overbilled = [
        i.invoice_id
        for i in invoices.invoices
        if price is not None and any(line.kind == "plan" and line.amount > price for line in i.lines)
    ]
    if overbilled:
        findings.append(
            Finding(
                "billing", 3.0, "normal", f"billing: plan billed above its price on {', '.join(overbilled)}"
            )
        )
    failed = [p.payment_id for p in payments.payments if p.status == "failed"]
    if failed:
        findings.append(Finding("billing", 2.0, "normal", f"billing: {len(failed)} failed payment(s)"))
    pending = [r.refund_id for r in payments.refunds if r.status == "pending"]
    if pending:
        findings.append(Finding("billing", 1.5, "low", f"billing: refund pending {', '.join(pending)}"))
    return findings


def access_findings(customer: Customer, record: AccessRecord) -> list[Finding]:
    findings: list[Finding] = []
    now = record.as_of
    for user in record.users:
        if user.locked:
            findings.append(Finding("access", 4.0, "high", f"access: user {user.user_id} locked"))
        if now - user.password_changed <= RECENT:
            findings.append(Finding("access", 1.0, "normal", f"access: user {user.user_id} changed password"))
        if now - user.mfa_changed <= RECENT:
            findings.append(Finding("access", 1.0, "normal", f"access: user {user.user_id} changed MFA"))
    failures = record.auth_failures
    burst = [f for f in failures if now - f.at <= BURST_WINDOW]
    if len(burst) >= FAILURE_BURST:
        findings.append(Finding("access", 2.0, "normal", f"access: {len(burst)} failed sign-ins in 24 h"))
    foreign = [f for f in failures if f.device == "unknown" or _abroad(f.country, customer.country)]
    if foreign:
        countries = sorted({f.country for f in foreign})
        findings.append(
            Finding(
                "access",
                3.0,
                "urgent",
                f"access: {len(foreign)} sign-in attempts from unknown devices in {', '.join(countries)}",
            )
        )
    mfa_failures = [f for f in failures if f.reason == "mfa_failed"]
    if len(mfa_failures) >= FAILURE_BURST:
        findings.append(
            Finding("access", 2.0, "normal", f"access: {len(mfa_failures)} failed MFA challenges")
        )
    return findings


def _abroad(country: str, home: str | None) -> bool:
    """An attempt from another country than the customer's; unknowable without a home country."""
    return home is not None and country.casefold() != home.casefold()
