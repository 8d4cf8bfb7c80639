"""Generate the support-desk and compliance data sets behind `support-tools` and `compliance-tools`.

Everything comes from one `random.Random(seed)` and a fixed reference time, so running the script twice
writes byte-identical files (rendered like `scripts/generate_data.py` renders the credit-risk data):

    python scripts/generate_support_data.py [--out DIR] [--seed N]

writes `DIR/support/{customers,tickets,network,billing,identity}.json` and
`DIR/compliance/{rules,facts}.json`. Hard cases are named by `scenario` and explained by `note` on tickets
and memo topics; the tool servers never serve those two fields, they exist so tests and humans know what
each record is meant to exercise.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from generate_data import render_json

SEED = 20261101
AS_OF = datetime(2026, 10, 31, 18, 0, tzinfo=UTC)
COUNTRY = "GB"
PLAN_PRICES = {"basic": 25.0, "standard": 45.0, "premium": 70.0, "business": 120.0}
# Regions with a live incident; every other region is healthy.
OUTAGE_REGION, DEGRADED_REGION = "north", "east"
RESOLVED_REGION = "west"
HEALTHY_REGIONS = ("south", "west", "central")
REGIONS = ("north", "south", "east", "west", "central")
BILLING_MONTHS = ("2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10")
BACKGROUND_CUSTOMERS = 14
DEVICE_MODELS = {"Hub 3": "3.9.4", "Hub 4": "4.3.2", "FibreBox X2": "2.7.0", "Business Gateway 7": "7.1.5"}
RESIDENTIAL_DEVICES = ("Hub 3", "Hub 4", "FibreBox X2")
OUTDATED_FIRMWARE = {
    "Hub 3": "3.6.0",
    "Hub 4": "4.0.8",
    "FibreBox X2": "2.4.1",
    "Business Gateway 7": "6.9.0",
}


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "Amelia Oliver Isla George Ava Noah Mia Arthur Ivy Leo Grace Oscar Freya Harry Lily Jack Rosie "
    "Theo Ella Finley Maya Alfie Zara Reuben Nia Idris Priya Tomasz Aoife Kwame"
)
LAST_NAMES = _words(
    "Patel Walsh Okafor Jones Nowak Campbell Hughes Begum Murphy Evans Kowalski Ahmed Clarke Price "
    "Byrne Mensah Fraser Doyle Khan Ellis Reid Lloyd"
)
FOREIGN_COUNTRIES = ("RU", "BR", "VN", "NG", "RO", "CN")

Json = dict[str, Any]


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(**delta: float) -> datetime:
    return AS_OF - timedelta(**delta)


# ----------------------------------------------------------------------------------------------------------
# Support: the cases. Each case is one customer with one ticket; the customer's records are shaped so that
# the ticket means what the note says, whatever the ticket text claims.


@dataclass(frozen=True)
class Case:
    scenario: str
    note: str
    texts: tuple[tuple[str, str], ...]  # (subject, body) variants; one is picked
    region: str | None = None  # None: a healthy region
    plan: str | None = None  # None: any residential plan
    device: str = "auto"  # auto (follows the region), offline, offline_repeat, lossy_outdated
    billing: str = "clean"  # clean, duplicate, overbilled, failed, suspended, refund_pending
    access: str = "clean"  # clean, locked, takeover, mfa_failing
    status: str = "active"


CASES: tuple[Case, ...] = (
    Case(
        "network_regional_outage",
        "Residential customer in the region with a live critical outage: link the incident, no home fault.",
        (
            (
                "Internet down since this morning",
                "Our broadband has been down since this morning. The hub "
                "lights are red and nothing connects. Can you tell me what is going on?",
            ),
            (
                "No connection at all",
                "There is no internet on any device since early today. Is there an outage in my area?",
            ),
        ),
        region=OUTAGE_REGION,
        plan="standard",
    ),
    Case(
        "network_business_outage",
        "Business customer hit by the same critical outage: urgent, and escalated for priority restoration.",
        (
            (
                "Office broadband outage",
                "Our whole office lost its connection today. We take card payments "
                "over this line, so please treat this as urgent.",
            ),
        ),
        region=OUTAGE_REGION,
        plan="business",
    ),
    Case(
        "network_degraded_region",
        "Customer in the region with degraded backhaul: slow and lossy, tied to the open major incident.",
        (
            (
                "Very slow speeds and buffering",
                "Video calls keep freezing and pages load slowly since "
                "yesterday. A speed test shows high latency.",
            ),
        ),
        region=DEGRADED_REGION,
    ),
    Case(
        "network_device_offline",
        "Healthy region, the customer's hub is offline with no recent reboots: a remote reboot first.",
        (
            (
                "Hub keeps showing offline",
                "My router says offline and the wifi has disappeared. I have not changed anything.",
            ),
        ),
        device="offline",
    ),
    Case(
        "network_device_repeat_failure",
        "Hub offline again after many reboots this week: a technician visit, escalated.",
        (
            (
                "Router dropping out again",
                "This is the third time this week the connection drops and the "
                "hub restarts itself. I have rebooted it many times.",
            ),
        ),
        device="offline_repeat",
    ),
    Case(
        "network_outdated_firmware",
        "Online hub on old firmware with packet loss: push the firmware and run a line test.",
        (
            (
                "Connection drops every evening",
                "The wifi drops out for a few seconds every evening and streams keep buffering.",
            ),
        ),
        device="lossy_outdated",
    ),
    Case(
        "network_no_fault_found",
        "Vague slowness, healthy region and device: nothing to fix yet, ask for details; low confidence.",
        (("Slow internet?", "Sometimes the internet feels slow in the evenings, not sure if it is my end."),),
    ),
    Case(
        "billing_duplicate_charge",
        "September invoice collected twice, under the auto-refund limit: refund without escalation.",
        (
            (
                "Charged twice for September",
                "I was charged twice for my September bill, the same amount "
                "was taken two times from my card. Please refund the extra payment.",
            ),
        ),
        billing="duplicate",
    ),
    Case(
        "billing_duplicate_large",
        "Business customer's September direct debit collected twice, above the auto-refund limit: escalate.",
        (
            (
                "Duplicate direct debit",
                "Our direct debit for the September invoice was collected twice. "
                "We need the duplicate refunded.",
            ),
        ),
        plan="business",
        billing="duplicate",
    ),
    Case(
        "billing_overbilled_plan",
        "October plan line billed at a higher plan's price: credit the difference.",
        (
            (
                "Invoice higher than my plan",
                "My October invoice is more than my plan costs. Why was I charged more?",
            ),
        ),
        plan="standard",
        billing="overbilled",
    ),
    Case(
        "billing_failed_payment",
        "October payment failed on an expired card, invoice overdue: ask for a new card and a payment link.",
        (
            (
                "Payment failed?",
                "I got an email that my payment failed and the invoice is overdue. My card "
                "was renewed recently.",
            ),
        ),
        billing="failed",
    ),
    Case(
        "billing_refund_pending",
        "Duplicate payment already being refunded: tell the customer, nothing new to do.",
        (
            (
                "Where is my refund?",
                "You told me I would get a refund for the double payment. When will it arrive?",
            ),
        ),
        billing="refund_pending",
    ),
    Case(
        "access_locked_out",
        "Owner locked out after repeated wrong passwords from home: unlock after identity check.",
        (
            (
                "Locked out of my account",
                "I tried my password a few times and now the portal says my "
                "account is locked. Please unlock it.",
            ),
        ),
        access="locked",
    ),
    Case(
        "access_account_takeover",
        "Password changed and MFA removed yesterday, failures from unknown devices abroad: urgent, escalate.",
        (
            (
                "Someone changed my password",
                "I got an email saying my password was changed yesterday but "
                "it was not me. I cannot sign in now and I think my account was hacked.",
            ),
        ),
        access="takeover",
    ),
    Case(
        "access_mfa_lost_phone",
        "New phone, authenticator codes failing: reset MFA after identity verification.",
        (
            (
                "New phone, cannot get codes",
                "I replaced my phone and the authenticator app no longer gives "
                "me a valid verification code, so I cannot log in.",
            ),
        ),
        access="mfa_failing",
    ),
    Case(
        "access_no_record",
        "Login question with nothing on record: send login help; low confidence.",
        (
            (
                "Cannot log in to the portal",
                "How do I sign in to the new customer portal? It does not take my details.",
            ),
        ),
    ),
    Case(
        "ambiguous_refund_for_slow_internet",
        "Text asks for a refund and complains about slow internet; account data is clean on both sides, so "
        "neither reading is supported: low triage confidence.",
        (
            (
                "Refund for slow internet",
                "My internet has been slow and dropping for weeks and I want a "
                "refund on my last bill for the days it did not work.",
            ),
        ),
        region=RESOLVED_REGION,
    ),
    Case(
        "ambiguous_bill_and_connection",
        "Two complaints in one ticket (a bill and a connection), nothing wrong on record: low confidence.",
        (
            (
                "Bill and connection problems",
                "The connection keeps dropping at night and this month's bill "
                "looks higher than usual. Can you look at both?",
            ),
        ),
    ),
    Case(
        "misleading_suspended_for_non_payment",
        "Reads like a network fault, but the account is suspended for three unpaid invoices while network "
        "and hub are healthy: billing.",
        (
            (
                "Internet not working",
                "My internet stopped working two days ago. The router looks fine but "
                "nothing loads. Please fix the connection.",
            ),
        ),
        billing="suspended",
        status="suspended",
    ),
    Case(
        "misleading_outage_as_billing",
        "Reads like a billing complaint, but the customer is in the outage region with the hub offline and "
        "clean invoices: network.",
        (
            (
                "Why am I paying for this?",
                "Why am I paying for a service that does not work? Nothing since "
                "this morning, I want my money back.",
            ),
        ),
        region=OUTAGE_REGION,
    ),
    Case(
        "misleading_lockout_as_outage",
        "Reads like an outage, but the network is healthy and the owner is locked out: access.",
        (
            (
                "Service unavailable",
                "The app just says service unavailable when I open it. Is your service down today?",
            ),
        ),
        access="locked",
    ),
)


@dataclass
class Person:
    customer_id: str
    name: str
    email: str
    plan: str
    region: str
    status: str
    since: str
    addons: list[Json] = field(default_factory=list)


def _person(rng: random.Random, number: int, plan: str, region: str, status: str, taken: set[str]) -> Person:
    while True:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        if f"{first} {last}" not in taken:
            taken.add(f"{first} {last}")
            break
    since = date(2019, 1, 1) + timedelta(days=rng.randint(0, 2400))
    addons = [{"name": "Static IP", "monthly_price": 5.0}] if rng.random() < 0.25 else []
    return Person(
        customer_id=f"CUS-{number:04d}",
        name=f"{first} {last}",
        email=f"{first.lower()}.{last.lower()}@example.net",
        plan=plan,
        region=region,
        status=status,
        since=since.isoformat(),
        addons=addons,
    )


def _customer_json(person: Person) -> Json:
    return {
        "customer_id": person.customer_id,
        "name": person.name,
        "email": person.email,
        "plan": person.plan,
        "monthly_price": PLAN_PRICES[person.plan],
        "addons": person.addons,
        "region": person.region,
        "country": COUNTRY,
        "status": person.status,
        "since": person.since,
    }


# --- network


def build_regions(rng: random.Random) -> list[Json]:
    def incident_id() -> str:
        return f"INC-{rng.randint(1000, 9999)}"

    incidents = {
        OUTAGE_REGION: [
            {
                "incident_id": incident_id(),
                "severity": "critical",
                "status": "open",
                "started": stamp(ago(hours=5, minutes=rng.randint(0, 50))),
                "resolved": None,
                "services": ["broadband"],
                "summary": "Fibre cut between exchanges N-02 and N-05; broadband down for the area.",
            }
        ],
        DEGRADED_REGION: [
            {
                "incident_id": incident_id(),
                "severity": "major",
                "status": "open",
                "started": stamp(ago(hours=30, minutes=rng.randint(0, 50))),
                "resolved": None,
                "services": ["broadband"],
                "summary": "Congestion on backhaul link E-1; elevated latency and packet loss.",
            }
        ],
        RESOLVED_REGION: [
            {
                "incident_id": incident_id(),
                "severity": "minor",
                "status": "resolved",
                "started": stamp(ago(days=12, hours=3)),
                "resolved": stamp(ago(days=12)),
                "services": ["broadband"],
                "summary": "Planned maintenance overran at exchange W-03.",
            }
        ],
    }
    status = {OUTAGE_REGION: "outage", DEGRADED_REGION: "degraded"}
    return [
        {"region": r, "status": status.get(r, "operational"), "incidents": incidents.get(r, [])}
        for r in REGIONS
    ]


def _device(rng: random.Random, person: Person, state: str) -> Json:
    model = "Business Gateway 7" if person.plan == "business" else rng.choice(RESIDENTIAL_DEVICES)
    device = {
        "device_id": f"DEV-{rng.randint(10000, 99999)}",
        "model": model,
        "online": True,
        "last_seen": stamp(ago(minutes=rng.randint(1, 9))),
        "firmware": DEVICE_MODELS[model],
        "latest_firmware": DEVICE_MODELS[model],
        "packet_loss": round(rng.uniform(0.0, 0.004), 4),
        "latency_ms": rng.randint(8, 24),
        "reboots_7d": rng.randint(0, 1),
    }
    if state == "auto":
        state = {OUTAGE_REGION: "outage", DEGRADED_REGION: "degraded"}.get(person.region, "healthy")
    if state in ("outage", "offline", "offline_repeat"):
        device["online"] = False
        device["last_seen"] = stamp(ago(hours=rng.randint(3, 4) if state == "outage" else rng.randint(5, 20)))
    if state == "offline_repeat":
        device["reboots_7d"] = rng.randint(4, 6)
    if state == "degraded":
        device["packet_loss"] = round(rng.uniform(0.04, 0.08), 4)
        device["latency_ms"] = rng.randint(140, 260)
    if state == "lossy_outdated":
        device["firmware"] = OUTDATED_FIRMWARE[model]
        device["packet_loss"] = round(rng.uniform(0.06, 0.09), 4)
        device["latency_ms"] = rng.randint(40, 70)
    return device


# --- billing


def _money(value: float) -> float:
    return round(value, 2)


def _billing(rng: random.Random, person: Person, kind: str) -> Json:
    price = PLAN_PRICES[person.plan]
    addon_total = sum(a["monthly_price"] for a in person.addons)
    method = "direct_debit" if person.plan == "business" or rng.random() < 0.5 else "card"
    invoices: list[Json] = []
    payments: list[Json] = []
    refunds: list[Json] = []
    failing = {"failed": {"2026-10"}, "suspended": {"2026-08", "2026-09", "2026-10"}}.get(kind, set())
    for period in BILLING_MONTHS:
        year, month = (int(part) for part in period.split("-"))
        invoice_id = f"INV-{rng.randint(100000, 999999)}"
        plan_line = price
        if kind == "overbilled" and period == "2026-10":
            plan_line = PLAN_PRICES["premium"]
        lines = [{"description": f"{person.plan.title()} plan", "kind": "plan", "amount": plan_line}]
        lines += [
            {"description": a["name"], "kind": "addon", "amount": a["monthly_price"]} for a in person.addons
        ]
        amount = _money(plan_line + addon_total)
        invoices.append(
            {
                "invoice_id": invoice_id,
                "period": period,
                "issued": date(year, month, 1).isoformat(),
                "due": date(year, month, 15).isoformat(),
                "amount": amount,
                "lines": lines,
            }
        )
        paid_on = date(year, month, rng.randint(8, 14))
        if period in failing:
            reason = (
                "card_expired" if kind == "failed" else rng.choice(["card_expired", "insufficient_funds"])
            )
            payments.append(_payment(rng, invoice_id, paid_on, amount, method, "failed", reason))
            continue
        payments.append(_payment(rng, invoice_id, paid_on, amount, method, "settled"))
        if period == "2026-09" and kind in ("duplicate", "refund_pending"):
            again = paid_on + timedelta(days=rng.randint(1, 3))
            payments.append(_payment(rng, invoice_id, again, amount, method, "settled"))
            if kind == "refund_pending":
                refunds.append(
                    {
                        "refund_id": f"RF-{rng.randint(10000, 99999)}",
                        "invoice_id": invoice_id,
                        "requested": (AS_OF.date() - timedelta(days=3)).isoformat(),
                        "amount": amount,
                        "status": "pending",
                    }
                )
    return {"customer_id": person.customer_id, "invoices": invoices, "payments": payments, "refunds": refunds}


def _payment(
    rng: random.Random,
    invoice_id: str,
    on: date,
    amount: float,
    method: str,
    status: str,
    failure: str | None = None,
) -> Json:
    return {
        "payment_id": f"PAY-{rng.randint(1000000, 9999999)}",
        "invoice_id": invoice_id,
        "date": on.isoformat(),
        "amount": amount,
        "method": method,
        "status": status,
        "failure_reason": failure,
    }


# --- identity


def _identity(rng: random.Random, person: Person, kind: str) -> Json:
    owner = {
        "user_id": f"U-{rng.randint(10000, 99999)}",
        "email": person.email,
        "role": "owner",
        "mfa": rng.choice(["app", "app", "sms", "none"]),
        "mfa_changed": stamp(ago(days=rng.randint(60, 400))),
        "locked": False,
        "locked_at": None,
        "lock_reason": None,
        "password_changed": stamp(ago(days=rng.randint(20, 300))),
        "last_login": stamp(ago(hours=rng.randint(2, 70))),
    }
    users = [owner]
    if person.plan == "business":
        for role in ("admin", "member"):
            first = rng.choice(FIRST_NAMES).lower()
            users.append(
                {
                    **owner,
                    "user_id": f"U-{rng.randint(10000, 99999)}",
                    "email": f"{first}@{person.email.split('@')[0].replace('.', '-')}.example.net",
                    "role": role,
                    "mfa": "app",
                    "password_changed": stamp(ago(days=rng.randint(20, 300))),
                }
            )
    failures: list[Json] = []
    if kind == "clean" and rng.random() < 0.4:
        failures.append(_failure(owner, ago(days=rng.randint(1, 6)), "bad_password", COUNTRY, "known"))
    if kind == "locked":
        owner["mfa"] = "app"
        locked_at = ago(hours=2, minutes=rng.randint(0, 40))
        owner.update(locked=True, locked_at=stamp(locked_at), lock_reason="too_many_failed_passwords")
        for i in range(5):
            failures.append(
                _failure(owner, locked_at - timedelta(minutes=4 * (5 - i)), "bad_password", COUNTRY, "known")
            )
    if kind == "takeover":
        changed = ago(hours=20, minutes=rng.randint(0, 50))
        owner.update(
            password_changed=stamp(changed), mfa="none", mfa_changed=stamp(changed + timedelta(minutes=3))
        )
        countries = rng.sample(FOREIGN_COUNTRIES, 3)
        for i in range(6):
            at = ago(hours=40 - 6 * i, minutes=rng.randint(0, 50))
            failures.append(_failure(owner, at, "unknown_device", countries[i % 3], "unknown"))
    if kind == "mfa_failing":
        owner["mfa"] = "app"
        for i in range(4):
            failures.append(_failure(owner, ago(minutes=20 + 25 * i), "mfa_failed", COUNTRY, "new"))
    failures.sort(key=lambda f: f["at"])
    return {"customer_id": person.customer_id, "users": users, "auth_failures": failures}


def _failure(user: Json, at: datetime, reason: str, country: str, device: str) -> Json:
    return {
        "at": stamp(at),
        "user_id": user["user_id"],
        "reason": reason,
        "country": country,
        "device": device,
    }


def build_support(rng: random.Random) -> dict[str, Any]:
    cases = list(CASES)
    rng.shuffle(cases)
    taken: set[str] = set()
    customers, tickets, devices, accounts, identities = [], [], [], [], []
    residential = ("basic", "standard", "premium")
    for number, case in enumerate(cases, start=1):
        region = case.region or rng.choice(HEALTHY_REGIONS)
        person = _person(rng, number, case.plan or rng.choice(residential), region, case.status, taken)
        subject, body = rng.choice(case.texts)
        created = ago(minutes=rng.randint(20, 230))
        tickets.append(
            {
                "ticket_id": f"TKT-{7000 + number * 3}",
                "customer_id": person.customer_id,
                "subject": subject,
                "body": body,
                "created": stamp(created),
                "channel": rng.choice(["email", "web", "chat"]),
                "scenario": case.scenario,
                "note": case.note,
            }
        )
        customers.append(_customer_json(person))
        devices.append({"customer_id": person.customer_id, "devices": [_device(rng, person, case.device)]})
        accounts.append(_billing(rng, person, case.billing))
        identities.append(_identity(rng, person, case.access))
    for number in range(len(cases) + 1, len(cases) + 1 + BACKGROUND_CUSTOMERS):
        plan = rng.choice(("basic", "standard", "standard", "premium", "business"))
        person = _person(rng, number, plan, rng.choice(REGIONS), "active", taken)
        customers.append(_customer_json(person))
        devices.append({"customer_id": person.customer_id, "devices": [_device(rng, person, "auto")]})
        accounts.append(_billing(rng, person, "clean"))
        identities.append(_identity(rng, person, "clean"))
    meta = {"as_of": stamp(AS_OF)}
    return {
        "customers.json": {**meta, "customers": customers},
        "tickets.json": {**meta, "tickets": tickets},
        "network.json": {**meta, "regions": build_regions(rng), "devices": devices},
        "billing.json": {**meta, "accounts": accounts},
        "identity.json": {**meta, "accounts": identities},
    }


# ----------------------------------------------------------------------------------------------------------
# Compliance: two rule books and the fact bases of five memo topics.

RULE_SETS: tuple[Json, ...] = (
    {
        "rule_set": "data-protection",
        "title": "Data protection memo standard",
        "rules": [
            {
                "rule_id": "DP-01",
                "title": "Purpose stated",
                "requirement": "The Summary states the purpose of the processing and cites its source.",
                "severity": "critical",
                "section": "Summary",
                "required_elements": ["purpose"],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": [],
            },
            {
                "rule_id": "DP-02",
                "title": "Data inventory",
                "requirement": "Data Processed names the data categories and the data subjects.",
                "severity": "major",
                "section": "Data Processed",
                "required_elements": ["data categories", "data subjects"],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": [],
            },
            {
                "rule_id": "DP-03",
                "title": "Lawful basis",
                "requirement": "Legal Basis states the legal basis relied on for the processing.",
                "severity": "critical",
                "section": "Legal Basis",
                "required_elements": ["legal basis"],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": [],
            },
            {
                "rule_id": "DP-04",
                "title": "Retention and deletion",
                "requirement": "Retention gives the retention period and how deletion happens.",
                "severity": "major",
                "section": "Retention",
                "required_elements": ["retention period", "deletion"],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": [],
            },
            {
                "rule_id": "DP-05",
                "title": "Security controls",
                "requirement": "Security Controls covers encryption and access control.",
                "severity": "major",
                "section": "Security Controls",
                "required_elements": ["encryption", "access control"],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": [],
            },
            {
                "rule_id": "DP-06",
                "title": "International transfers",
                "requirement": "When the memo mentions a cross-border or third country transfer, a Transfers "
                "section names the transfer mechanism.",
                "severity": "major",
                "section": "Transfers",
                "required_elements": ["transfer mechanism"],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": ["cross-border", "third country"],
            },
            {
                "rule_id": "DP-07",
                "title": "Every section sourced",
                "requirement": "Every section cites at least one source.",
                "severity": "minor",
                "section": None,
                "required_elements": [],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": [],
            },
            {
                "rule_id": "DP-08",
                "title": "No absolute assurances",
                "requirement": "The memo makes no absolute assurance about security or compliance.",
                "severity": "major",
                "section": None,
                "required_elements": [],
                "forbidden_phrases": ["guaranteed", "fully secure", "zero risk", "100% compliant"],
                "requires_source": False,
                "trigger": [],
            },
            {
                "rule_id": "DP-09",
                "title": "Impact assessment for high-risk processing",
                "requirement": "When the memo covers biometric or special category data, Risks confirms a "
                "completed DPIA.",
                "severity": "critical",
                "section": "Risks",
                "required_elements": ["DPIA"],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": ["biometric", "special category"],
            },
            {
                "rule_id": "DP-10",
                "title": "Residual risk",
                "requirement": "Risks names the residual risk that remains after the controls.",
                "severity": "minor",
                "section": "Risks",
                "required_elements": ["residual risk"],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": [],
            },
        ],
    },
    {
        "rule_set": "vendor-risk",
        "title": "Third-party risk memo standard",
        "rules": [
            {
                "rule_id": "VR-01",
                "title": "Recommendation stated",
                "requirement": "The Summary gives the recommendation and cites its source.",
                "severity": "critical",
                "section": "Summary",
                "required_elements": ["recommendation"],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": [],
            },
            {
                "rule_id": "VR-02",
                "title": "Vendor due diligence",
                "requirement": "Vendor Profile covers due diligence and the vendor's financial standing.",
                "severity": "major",
                "section": "Vendor Profile",
                "required_elements": ["due diligence", "financial standing"],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": [],
            },
            {
                "rule_id": "VR-03",
                "title": "Independent assurance",
                "requirement": "Controls Assessment cites a SOC 2 report and a penetration test.",
                "severity": "critical",
                "section": "Controls Assessment",
                "required_elements": ["SOC 2", "penetration test"],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": [],
            },
            {
                "rule_id": "VR-04",
                "title": "Subprocessors",
                "requirement": "When the vendor uses subprocessors, a Subprocessors section covers the "
                "subprocessor list and change notification.",
                "severity": "major",
                "section": "Subprocessors",
                "required_elements": ["subprocessor list", "notification"],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": ["subprocessor"],
            },
            {
                "rule_id": "VR-05",
                "title": "Exit plan",
                "requirement": "Exit Plan gives the exit strategy and the terms of data return.",
                "severity": "major",
                "section": "Exit Plan",
                "required_elements": ["exit strategy", "data return"],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": [],
            },
            {
                "rule_id": "VR-06",
                "title": "Every section sourced",
                "requirement": "Every section cites at least one source.",
                "severity": "minor",
                "section": None,
                "required_elements": [],
                "forbidden_phrases": [],
                "requires_source": True,
                "trigger": [],
            },
            {
                "rule_id": "VR-07",
                "title": "No absolute assurances",
                "requirement": "The memo makes no absolute assurance about the vendor.",
                "severity": "major",
                "section": None,
                "required_elements": [],
                "forbidden_phrases": ["guaranteed", "risk-free", "fully secure"],
                "requires_source": False,
                "trigger": [],
            },
        ],
    },
)

DP_OUTLINE = [
    "Summary",
    "Data Processed",
    "Legal Basis",
    "Retention",
    "Security Controls",
    "Transfers",
    "Risks",
]
VR_OUTLINE = ["Summary", "Vendor Profile", "Controls Assessment", "Subprocessors", "Exit Plan"]
VENDORS = (
    "Northwind Payments",
    "Kestrel Pay",
    "Bluefin Processing",
    "Lumen Voice",
    "Harbor Contact",
    "Quill CX",
)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September")


@dataclass(frozen=True)
class Topic:
    topic: str
    title: str
    rule_set: str
    outline: list[str]
    scenario: str
    note: str
    # (section, detail, statement, source document); statements are single sentences.
    facts: list[tuple[str, str, str, str]]


def build_topics(rng: random.Random) -> list[Topic]:
    def section_ref(doc: str) -> str:
        return f"{doc} §{rng.randint(1, 9)}.{rng.randint(1, 9)}"

    vendor_a, vendor_b = rng.choice(VENDORS[:3]), rng.choice(VENDORS[3:])
    months = rng.choice((12, 18, 24, 36))
    recording_days = rng.choice((30, 60, 90))
    backup_days = rng.choice((28, 35, 42))
    replica_city = rng.choice(("Frankfurt", "Dublin", "Amsterdam"))
    retention_grace = rng.choice((14, 30))
    optout_hours = rng.choice((24, 48, 72))
    ret, ropa, isms, dpa = "POL-RET-2026", "ROPA-2026-Q3", "ISMS-CTRL-12", "DPA-ANNEX-3"
    return [
        Topic(
            "customer-data-retention",
            "Retention of customer support records",
            "data-protection",
            DP_OUTLINE,
            "converges_after_one_revision",
            "The first draft omits supporting facts that three rules need; one revision adds them.",
            [
                (
                    "Summary",
                    "core",
                    "The purpose of this memo is to set how long customer support records "
                    "are kept and when they are destroyed.",
                    section_ref(ret),
                ),
                (
                    "Data Processed",
                    "core",
                    "Support tickets hold customer names, email addresses, ticket text and call recordings.",
                    section_ref(ropa),
                ),
                (
                    "Data Processed",
                    "supporting",
                    "The data categories are contact details, ticket correspondence and call recordings.",
                    section_ref(ropa),
                ),
                (
                    "Data Processed",
                    "supporting",
                    "The data subjects are residential customers, business "
                    "customers and their authorised users.",
                    section_ref(ropa),
                ),
                (
                    "Legal Basis",
                    "core",
                    "The legal basis is legitimate interest in resolving customer requests "
                    "and defending claims.",
                    section_ref(ret),
                ),
                ("Retention", "core", f"Closed tickets are kept for {months} months.", section_ref(ret)),
                (
                    "Retention",
                    "supporting",
                    f"The retention period is {months} months after a ticket is "
                    f"closed, and {recording_days} days for call recordings.",
                    section_ref(ret),
                ),
                (
                    "Retention",
                    "supporting",
                    "Deletion runs monthly as an automated purge job that writes a deletion log.",
                    section_ref(isms),
                ),
                (
                    "Security Controls",
                    "core",
                    "Support records are stored with encryption at rest and in transit.",
                    section_ref(isms),
                ),
                (
                    "Security Controls",
                    "supporting",
                    "Access control is role-based and reviewed every quarter by the support lead.",
                    section_ref(isms),
                ),
                (
                    "Risks",
                    "core",
                    "The main residual risk is call recordings copied into local exports by agents.",
                    section_ref(ropa),
                ),
            ],
        ),
        Topic(
            "analytics-backup-replication",
            "Replication of analytics warehouse backups",
            "data-protection",
            DP_OUTLINE,
            "converges_after_two_revisions",
            "The first draft makes an absolute claim and lacks deletion; the deletion fact mentions a "
            "cross-border replica, which brings in the transfers rule, so a second revision is needed.",
            [
                (
                    "Summary",
                    "core",
                    "The purpose of this memo is to approve nightly replication of the "
                    "analytics warehouse backups.",
                    section_ref("CHG-2026-0412"),
                ),
                (
                    "Data Processed",
                    "core",
                    "The data categories are usage events, device identifiers and coarse location.",
                    section_ref(ropa),
                ),
                (
                    "Data Processed",
                    "core",
                    "The data subjects are broadband and mobile customers.",
                    section_ref(ropa),
                ),
                (
                    "Legal Basis",
                    "core",
                    "The legal basis is legitimate interest in network planning, "
                    "balanced in a documented assessment.",
                    section_ref("LIA-2026-07"),
                ),
                (
                    "Retention",
                    "core",
                    f"The retention period for backups is {backup_days} days.",
                    section_ref(ret),
                ),
                (
                    "Retention",
                    "supporting",
                    f"Deletion of expired backups also removes the cross-border "
                    f"replica held in {replica_city}.",
                    section_ref("CHG-2026-0412"),
                ),
                (
                    "Security Controls",
                    "core",
                    "Backups carry encryption with customer-managed keys, and access "
                    "control goes through break-glass approval.",
                    section_ref(isms),
                ),
                (
                    "Transfers",
                    "supporting",
                    "The transfer mechanism is the EU Standard Contractual Clauses, "
                    "with a transfer impact assessment on file.",
                    section_ref(dpa),
                ),
                (
                    "Risks",
                    "core",
                    "The residual risk is a delayed restore if both regions fail together.",
                    section_ref("BCP-2026"),
                ),
                (
                    "Risks",
                    "core",
                    "With these controls the replication carries zero risk of data loss.",
                    section_ref("CHG-2026-0412"),
                ),
            ],
        ),
        Topic(
            "biometric-login-rollout",
            "Voice biometric login for the support line",
            "data-protection",
            DP_OUTLINE,
            "never_converges_missing_facts",
            "The fact base states no legal basis and no completed DPIA (only that one is not done), so no "
            "draft can satisfy DP-03 or DP-09: the loop never converges.",
            [
                (
                    "Summary",
                    "core",
                    "The purpose of this memo is to approve voice biometric login for callers "
                    "to the support line.",
                    section_ref("PRJ-VOICE-01"),
                ),
                (
                    "Data Processed",
                    "core",
                    "The data categories are voiceprints and call metadata.",
                    section_ref(ropa),
                ),
                (
                    "Data Processed",
                    "core",
                    "The data subjects are customers who opt in on the support line.",
                    section_ref(ropa),
                ),
                (
                    "Legal Basis",
                    "supporting",
                    "Consent wording for callers is still being drafted by the legal team.",
                    section_ref("PRJ-VOICE-01"),
                ),
                (
                    "Retention",
                    "core",
                    f"The retention period for voiceprints is the life of the account plus "
                    f"{retention_grace} days.",
                    section_ref(ret),
                ),
                (
                    "Retention",
                    "core",
                    f"Deletion of a voiceprint follows an opt-out within {optout_hours} hours.",
                    section_ref(ret),
                ),
                (
                    "Security Controls",
                    "core",
                    "Voiceprints are held under encryption in a separate vault, with "
                    "access control limited to the matching service.",
                    section_ref(isms),
                ),
                (
                    "Risks",
                    "core",
                    "The residual risk is false acceptance of a recorded or synthetic voice.",
                    section_ref("PRJ-VOICE-01"),
                ),
                (
                    "Risks",
                    "supporting",
                    "A DPIA has not yet been completed for this processing.",
                    section_ref("PRJ-VOICE-01"),
                ),
            ],
        ),
        Topic(
            "payments-processor-onboarding",
            f"Onboarding {vendor_a} as card payments processor",
            "vendor-risk",
            VR_OUTLINE,
            "converges_after_one_revision",
            "The first draft repeats the vendor's guaranteed-uptime claim and has no exit plan; one revision "
            "drops the claim and adds the exit facts.",
            [
                (
                    "Summary",
                    "core",
                    f"The recommendation is to onboard {vendor_a} for card payments from "
                    f"{rng.choice(MONTHS)} 2027.",
                    section_ref("TPRM-2026-031"),
                ),
                (
                    "Vendor Profile",
                    "core",
                    f"{vendor_a} passed due diligence covering ownership, sanctions "
                    "screening and litigation.",
                    section_ref("TPRM-2026-031"),
                ),
                (
                    "Vendor Profile",
                    "core",
                    f"The financial standing of {vendor_a} is rated "
                    f"{rng.choice(('A-', 'BBB+', 'A'))} by an external agency.",
                    section_ref("FIN-RATING-26"),
                ),
                (
                    "Vendor Profile",
                    "core",
                    f"{vendor_a} offers guaranteed uptime of 99.99 percent.",
                    section_ref("VENDOR-PITCH-26"),
                ),
                (
                    "Controls Assessment",
                    "core",
                    f"{vendor_a} holds a current SOC 2 Type II report dated {rng.choice(MONTHS)} 2026.",
                    section_ref("SOC2-TPRM-26"),
                ),
                (
                    "Controls Assessment",
                    "core",
                    f"An independent penetration test in {rng.choice(MONTHS)} "
                    "2026 closed all critical findings.",
                    section_ref("PENTEST-26-14"),
                ),
                (
                    "Exit Plan",
                    "supporting",
                    f"The exit strategy is a {rng.choice((3, 6))}-month parallel run "
                    "with the incumbent processor.",
                    section_ref("TPRM-2026-031"),
                ),
                (
                    "Exit Plan",
                    "supporting",
                    f"Data return is due within {rng.choice((30, 45, 60))} days of "
                    "termination in a documented export format.",
                    section_ref("MSA-DRAFT-3"),
                ),
            ],
        ),
        Topic(
            "contact-centre-renewal",
            f"Renewal of the {vendor_b} contact-centre contract",
            "vendor-risk",
            VR_OUTLINE,
            "passes_first_draft",
            "Every rule, including the subprocessor rule its facts trigger, is met by the core facts.",
            [
                (
                    "Summary",
                    "core",
                    f"The recommendation is to renew the {vendor_b} contact-centre contract "
                    f"for {rng.choice((2, 3))} years.",
                    section_ref("TPRM-2026-044"),
                ),
                (
                    "Vendor Profile",
                    "core",
                    f"Annual due diligence on {vendor_b} was completed in {rng.choice(MONTHS)} 2026.",
                    section_ref("TPRM-2026-044"),
                ),
                (
                    "Vendor Profile",
                    "core",
                    f"The financial standing of {vendor_b} is stable, with audited accounts for 2025.",
                    section_ref("FIN-RATING-26"),
                ),
                (
                    "Controls Assessment",
                    "core",
                    f"{vendor_b} renewed its SOC 2 Type II report in {rng.choice(MONTHS)} 2026.",
                    section_ref("SOC2-TPRM-25"),
                ),
                (
                    "Controls Assessment",
                    "core",
                    "The annual penetration test was repeated this year and its findings were fixed.",
                    section_ref("PENTEST-26-21"),
                ),
                (
                    "Subprocessors",
                    "core",
                    f"{vendor_b} relies on two subprocessor firms for hosting and speech analytics.",
                    section_ref("MSA-2024-S4"),
                ),
                (
                    "Subprocessors",
                    "core",
                    "The subprocessor list is published, and changes need 30 days of advance notification.",
                    section_ref("MSA-2024-S4"),
                ),
                (
                    "Exit Plan",
                    "core",
                    f"The exit strategy is a staged migration of queues over {rng.choice((6, 8, 10))} weeks.",
                    section_ref("MSA-2024-S9"),
                ),
                (
                    "Exit Plan",
                    "core",
                    f"Data return of recordings and transcripts is due within {rng.choice((30, 60))} days.",
                    section_ref("MSA-2024-S9"),
                ),
            ],
        ),
    ]


def build_compliance(rng: random.Random) -> dict[str, Any]:
    topics = []
    for topic in build_topics(rng):
        prefix = "".join(word[0] for word in topic.topic.split("-")).upper()
        facts = [
            {"fact_id": f"{prefix}-{n:02d}", "section": s, "detail": d, "statement": text, "source": src}
            for n, (s, d, text, src) in enumerate(topic.facts, start=1)
        ]
        topics.append(
            {
                "topic": topic.topic,
                "title": topic.title,
                "rule_set": topic.rule_set,
                "outline": topic.outline,
                "scenario": topic.scenario,
                "note": topic.note,
                "facts": facts,
            }
        )
    return {"rules.json": {"rule_sets": list(RULE_SETS)}, "facts.json": {"topics": topics}}


# ----------------------------------------------------------------------------------------------------------
# Output.


def generate(seed: int = SEED) -> dict[str, Any]:
    """Every data file, by path relative to the data directory."""
    rng = random.Random(seed)
    support = build_support(rng)
    compliance = build_compliance(rng)
    files: dict[str, Any] = {}
    for name, content in support.items():
        files[f"support/{name}"] = {**content, "seed": seed}
    for name, content in compliance.items():
        files[f"compliance/{name}"] = {**content, "seed": seed}
    return files


def write(out: Path, seed: int = SEED) -> list[Path]:
    """Write every file under `out` (folders created if missing); returns the paths written."""
    written: list[Path] = []
    for name, content in generate(seed).items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_json(content) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    for path in write(args.out, args.seed):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
