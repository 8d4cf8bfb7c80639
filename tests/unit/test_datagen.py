"""The synthetic data set: reproducible from its seed, small, and shaped to exercise every hard case."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.topology import repo_root
from sanctions_tools.screening import SanctionsList

DATA = repo_root() / "data"
GENERATOR = repo_root() / "scripts" / "generate_data.py"
FILES = ("applicants.json", "bureau.json", "ledger.json", "sanctions.json")
HARD_CASES = {
    "sanctions_exact_hit",
    "sanctions_alias_hit",
    "sanctions_near_miss",
    "thin_file",
    "address_conflict",
    "gambling_heavy",
    "high_utilization_delinquent",
    "strong_clean",
    "bureau_unknown",
}
APPLICANT_FIELDS = {
    "applicant_id",
    "account_id",
    "name",
    "birth_date",
    "country",
    "requested_amount",
    "scenario",
    "note",
}


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def generate_into(out: Path, *extra: str) -> None:
    subprocess.run(  # noqa: S603
        [sys.executable, str(GENERATOR), "--out", str(out), *extra],
        check=True,
        capture_output=True,
        timeout=60,
    )


def applicant(scenario: str) -> dict[str, Any]:
    return next(a for a in load("applicants.json") if a["scenario"] == scenario)


def credit_file(applicant_id: str) -> dict[str, Any] | None:
    return next((f for f in load("bureau.json")["files"] if f["applicant_id"] == applicant_id), None)


def account(account_id: str) -> dict[str, Any]:
    return next(a for a in load("ledger.json")["accounts"] if a["account_id"] == account_id)


def outflows(account_id: str) -> Iterator[tuple[str, float]]:
    for row in account(account_id)["transactions"]:
        if row["amount"] < 0:
            yield row["category"], -row["amount"]


def test_regenerating_with_the_fixed_seed_reproduces_the_committed_files_byte_for_byte(
    tmp_path: Path,
) -> None:
    generate_into(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_a_different_seed_gives_different_data(tmp_path: Path) -> None:
    generate_into(tmp_path, "--seed", "7")
    assert (tmp_path / "ledger.json").read_bytes() != (DATA / "ledger.json").read_bytes()


def test_the_data_set_is_small_enough_to_commit() -> None:
    assert sum((DATA / name).stat().st_size for name in FILES) < 1_000_000


def test_applicants_carry_exactly_the_contract_fields_with_unique_ids() -> None:
    applicants = load("applicants.json")
    assert 35 <= len(applicants) <= 45
    assert all(set(a) == APPLICANT_FIELDS for a in applicants)
    assert len({a["applicant_id"] for a in applicants}) == len(applicants)
    assert len({a["account_id"] for a in applicants}) == len(applicants)
    assert all(a["note"] and a["requested_amount"] > 0 for a in applicants)


def test_every_hard_case_is_present_and_baselines_cover_prime_near_prime_and_subprime() -> None:
    scenarios = {a["scenario"] for a in load("applicants.json")}
    assert scenarios >= HARD_CASES
    assert {"baseline_prime", "baseline_near_prime", "baseline_subprime"} <= scenarios


def test_the_sanctions_list_has_about_300_unique_entries_with_aliases_and_programs() -> None:
    entries = load("sanctions.json")["entries"]
    assert 280 <= len(entries) <= 320
    assert len({e["entry_id"] for e in entries}) == len(entries)
    assert len({e["primary_name"] for e in entries}) == len(entries)
    assert sum(1 for e in entries if e["aliases"]) > len(entries) // 2
    programs = {p for e in entries for p in e["programs"]}
    assert {"SDGT", "UKRAINE-EO13662", "IRAN"} <= programs
    assert any(e["entry_type"] == "entity" for e in entries)
    assert any(not name.isascii() for e in entries for name in [e["primary_name"], *e["aliases"]])


def test_the_exact_hit_applicant_is_listed_verbatim_and_the_alias_hit_applicant_is_not() -> None:
    listed = {name for e in load("sanctions.json")["entries"] for name in [e["primary_name"], *e["aliases"]]}
    assert applicant("sanctions_exact_hit")["name"] in listed
    assert applicant("sanctions_alias_hit")["name"] not in listed
    assert applicant("sanctions_near_miss")["name"] not in listed


def test_the_thin_file_has_one_tradeline_a_young_file_and_a_short_ledger() -> None:
    person = applicant("thin_file")
    file = credit_file(person["applicant_id"])
    assert file is not None
    assert file["tradelines"] <= 2
    assert file["file_age_months"] < 12
    assert account(person["account_id"])["opened"] > "2025-11-01"


def test_the_bureau_reports_an_older_address_than_the_ledger_for_the_address_conflict() -> None:
    person = applicant("address_conflict")
    file, ledger = credit_file(person["applicant_id"]), account(person["account_id"])
    assert file is not None
    assert file["address"] != ledger["address"]
    assert ledger["address_updated"] > file["address_reported"]


def test_ordinary_applicants_have_one_address_at_bureau_and_bank() -> None:
    for person in load("applicants.json"):
        file = credit_file(person["applicant_id"])
        if person["scenario"].startswith("baseline_") and file is not None:
            assert file["address"] == account(person["account_id"])["address"], person["applicant_id"]


def test_the_bureau_has_no_file_for_the_unknown_applicant_but_the_bank_has_an_account() -> None:
    person = applicant("bureau_unknown")
    assert credit_file(person["applicant_id"]) is None
    assert account(person["account_id"])["transactions"]


def test_the_heavy_gambler_spends_about_a_third_on_gambling_and_the_strong_applicant_none_to_speak_of() -> (
    None
):
    def gambling_share(scenario: str) -> float:
        rows = list(outflows(applicant(scenario)["account_id"]))
        return sum(v for c, v in rows if c == "gambling") / sum(v for _, v in rows)

    assert gambling_share("gambling_heavy") > 0.25
    assert gambling_share("strong_clean") < 0.02


def test_the_distressed_file_is_near_its_limits_with_several_delinquencies() -> None:
    file = credit_file(applicant("high_utilization_delinquent")["applicant_id"])
    assert file is not None
    assert file["utilization"] > 0.9
    assert file["delinquencies_24m"] >= 3
    strong = credit_file(applicant("strong_clean")["applicant_id"])
    assert strong is not None
    assert strong["score"] >= 780
    assert strong["delinquencies_24m"] == 0


def test_ledgers_hold_twelve_months_of_raw_transactions_up_to_the_reference_date() -> None:
    ledger = load("ledger.json")
    assert ledger["as_of"] == "2026-10-31"
    for item in ledger["accounts"]:
        dates = [row["date"] for row in item["transactions"]]
        assert dates == sorted(dates)
        assert dates[-1] <= "2026-10-31"
        assert dates[0] >= "2025-11-01"
    months = {row["date"][:7] for row in account(applicant("strong_clean")["account_id"])["transactions"]}
    assert len(months) == 12


@pytest.mark.parametrize("prefix", ["baseline_", "thin_file", "strong_clean", "gambling_heavy"])
def test_ordinary_applicants_are_far_from_every_listed_name(prefix: str) -> None:
    sanctions = SanctionsList.load(DATA / "sanctions.json")
    for person in load("applicants.json"):
        if person["scenario"].startswith(prefix):
            result = sanctions.search(person["name"], person["birth_date"], person["country"])
            best = result.matches[0].score if result.matches else 0.0
            assert best < 70, (person["name"], result.matches[:1])
