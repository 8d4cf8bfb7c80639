"""The support and compliance data sets: reproducible from the seed, small, shaped for every hard case."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from accord.topology import repo_root
from tests.in_process_tools import load
from triage_agent.lexicon import read_text

DATA = repo_root() / "data"
GENERATOR = repo_root() / "scripts" / "generate_support_data.py"
FILES = (
    "support/customers.json",
    "support/tickets.json",
    "support/network.json",
    "support/billing.json",
    "support/identity.json",
    "compliance/rules.json",
    "compliance/facts.json",
)
TICKET_CASES = {
    "network_regional_outage",
    "network_business_outage",
    "network_degraded_region",
    "network_device_offline",
    "network_device_repeat_failure",
    "network_outdated_firmware",
    "network_no_fault_found",
    "billing_duplicate_charge",
    "billing_duplicate_large",
    "billing_overbilled_plan",
    "billing_failed_payment",
    "billing_refund_pending",
    "access_locked_out",
    "access_account_takeover",
    "access_mfa_lost_phone",
    "access_no_record",
    "ambiguous_refund_for_slow_internet",
    "ambiguous_bill_and_connection",
    "misleading_suspended_for_non_payment",
    "misleading_outage_as_billing",
    "misleading_lockout_as_outage",
}
NEGATION = re.compile(r"\b(?:no|not|never|without|pending|yet to)\b", re.IGNORECASE)


def generate_into(out: Path, *extra: str) -> None:
    subprocess.run(  # noqa: S603
        [sys.executable, str(GENERATOR), "--out", str(out), *extra],
        check=True,
        capture_output=True,
        timeout=60,
    )


def tickets() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = load("support/tickets.json")["tickets"]
    return rows


def by_customer(name: str, key: str) -> dict[str, Any]:
    return {row["customer_id"]: row for row in load(name)[key]}


def topic(scenario: str) -> dict[str, Any]:
    return next(t for t in load("compliance/facts.json")["topics"] if t["scenario"] == scenario)


def test_regenerating_with_the_fixed_seed_reproduces_the_committed_files_byte_for_byte(
    tmp_path: Path,
) -> None:
    generate_into(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_a_different_seed_gives_different_data(tmp_path: Path) -> None:
    generate_into(tmp_path, "--seed", "7")
    assert (tmp_path / "support/billing.json").read_bytes() != (DATA / "support/billing.json").read_bytes()
    assert (tmp_path / "compliance/facts.json").read_bytes() != (DATA / "compliance/facts.json").read_bytes()


def test_the_data_sets_together_stay_under_500_kb() -> None:
    assert sum((DATA / name).stat().st_size for name in FILES) < 500_000


def test_every_ticket_case_is_present_once_with_unique_ids() -> None:
    rows = tickets()
    assert sorted(t["scenario"] for t in rows) == sorted(TICKET_CASES)
    assert len({t["ticket_id"] for t in rows}) == len(rows)
    assert all(t["note"] and t["subject"] and t["body"] for t in rows)


def test_every_customer_has_network_billing_and_identity_records_and_every_ticket_a_customer() -> None:
    customers = by_customer("support/customers.json", "customers")
    assert len(customers) > len(TICKET_CASES)
    for name, key in (("support/network.json", "devices"), ("support/billing.json", "accounts")):
        assert set(by_customer(name, key)) == set(customers), name
    assert set(by_customer("support/identity.json", "accounts")) == set(customers)
    assert {t["customer_id"] for t in tickets()} <= set(customers)


def test_ambiguous_tickets_use_both_billing_and_network_words() -> None:
    for row in tickets():
        if row["scenario"].startswith("ambiguous_"):
            scores = read_text(row["subject"], row["body"]).scores
            assert scores["billing"] > 0, row["scenario"]
            assert scores["network"] > 0, row["scenario"]


def test_misleading_tickets_read_as_one_category_while_the_records_say_another() -> None:
    customers = by_customer("support/customers.json", "customers")
    regions = {r["region"]: r for r in load("support/network.json")["regions"]}
    cases = {t["scenario"]: t for t in tickets()}
    suspended = cases["misleading_suspended_for_non_payment"]
    assert read_text(suspended["subject"], suspended["body"]).scores["billing"] == 0
    assert customers[suspended["customer_id"]]["status"] == "suspended"
    assert regions[customers[suspended["customer_id"]]["region"]]["status"] == "operational"
    outage = cases["misleading_outage_as_billing"]
    assert read_text(outage["subject"], outage["body"]).scores["network"] == 0
    assert regions[customers[outage["customer_id"]]["region"]]["status"] == "outage"
    lockout = cases["misleading_lockout_as_outage"]
    assert read_text(lockout["subject"], lockout["body"]).scores["access"] == 0
    identity = by_customer("support/identity.json", "accounts")[lockout["customer_id"]]
    assert any(user["locked"] for user in identity["users"])


def test_the_memo_topics_cover_first_draft_one_revision_two_revisions_and_never() -> None:
    scenarios = sorted(t["scenario"] for t in load("compliance/facts.json")["topics"])
    assert scenarios == sorted(
        [
            "passes_first_draft",
            "converges_after_one_revision",
            "converges_after_one_revision",
            "converges_after_two_revisions",
            "never_converges_missing_facts",
        ]
    )


def test_the_missing_facts_topic_never_affirms_a_legal_basis_or_a_completed_dpia() -> None:
    facts = topic("never_converges_missing_facts")["facts"]
    assert not any("legal basis" in f["statement"].casefold() for f in facts)
    dpia = [f["statement"] for f in facts if "dpia" in f["statement"].casefold()]
    assert dpia
    assert all(NEGATION.search(s) for s in dpia)


def test_every_fact_is_one_sourced_sentence_in_its_topics_outline() -> None:
    for item in load("compliance/facts.json")["topics"]:
        assert len({f["fact_id"] for f in item["facts"]}) == len(item["facts"])
        for fact in item["facts"]:
            assert fact["section"] in item["outline"], fact["fact_id"]
            assert fact["source"]
            assert fact["statement"].endswith(".")
            assert not re.search(r"[.!?]\s", fact["statement"]), fact["fact_id"]


def test_forbidden_phrases_appear_only_in_the_topics_meant_to_trip_on_them() -> None:
    forbidden = {
        phrase
        for rule_set in load("compliance/rules.json")["rule_sets"]
        for rule in rule_set["rules"]
        for phrase in rule["forbidden_phrases"]
    }
    tripping = {
        item["topic"]
        for item in load("compliance/facts.json")["topics"]
        for fact in item["facts"]
        if any(phrase in fact["statement"].casefold() for phrase in forbidden)
    }
    assert tripping == {"analytics-backup-replication", "payments-processor-onboarding"}
