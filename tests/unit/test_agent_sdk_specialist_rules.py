"""The three specialists' decision rules, on hand-made tool results."""

from __future__ import annotations

import statistics

import pytest

from accord.credit_files import CreditFile
from bureau_agent.agent import summarize
from ledger_agent.agent import Account, Counterparty, Period, profile
from sanctions_agent.agent import SanctionsMatch, ScreeningInput, classify


def match(
    score: float, birth_dates: list[str] | None = None, countries: list[str] | None = None
) -> SanctionsMatch:
    return SanctionsMatch(
        entry_id="SDN-1",
        primary_name="Viktor Ivanovich Petrenkov",
        matched_name="Viktor Petrenkov",
        score=score,
        birth_dates=birth_dates or ["1962-02-17"],
        countries=countries or ["RU", "UA"],
        programs=["UKRAINE-EO13660"],
    )


APPLICANT = ScreeningInput(name="Viktor Petrenkov", birth_date="1962-02-17", country="RU")
STRANGER = ScreeningInput(name="Viktor Petrenkov", birth_date="1986-07-30", country="GB")


def test_a_strong_match_corroborated_by_birth_date_is_a_hit() -> None:
    result = classify(APPLICANT, [match(97.0)])
    assert result.status == "hit"
    assert result.best_score == 97.0
    assert 0.5 < result.confidence < 1.0


def test_a_strong_match_corroborated_by_country_alone_is_a_hit() -> None:
    applicant = ScreeningInput(name="Viktor Petrenkov", country="ru")
    assert classify(applicant, [match(93.0)]).status == "hit"


def test_a_strong_name_match_without_corroboration_is_only_a_potential_match() -> None:
    assert classify(STRANGER, [match(100.0)]).status == "potential_match"
    assert classify(ScreeningInput(name="Viktor Petrenkov"), [match(100.0)]).status == "potential_match"


@pytest.mark.parametrize(
    ("score", "status"), [(80.0, "potential_match"), (91.9, "potential_match"), (79.9, "clear")]
)
def test_scores_between_80_and_92_are_potential_matches(score: float, status: str) -> None:
    assert classify(APPLICANT, [match(score)]).status == status


def test_confidence_is_lowest_on_a_threshold_and_grows_with_the_margin() -> None:
    on_threshold = classify(APPLICANT, [match(92.0)])
    assert (on_threshold.status, on_threshold.confidence) == ("hit", 0.5)
    assert classify(APPLICANT, [match(100.0)]).confidence == 1.0
    assert classify(APPLICANT, [match(79.0)]).confidence < classify(APPLICANT, [match(60.0)]).confidence
    nothing = classify(APPLICANT, [])
    assert (nothing.status, nothing.best_score, nothing.confidence) == ("clear", 0.0, 1.0)


def test_the_best_match_decides_whatever_order_the_tool_used() -> None:
    result = classify(APPLICANT, sorted([match(70.0), match(95.0)], key=lambda m: m.score)[::-1])
    assert result.best_score == 95.0


def test_a_year_only_listed_birth_date_corroborates_a_full_date_in_that_year() -> None:
    same_year = match(95.0, birth_dates=["1962"], countries=["BY"])
    other_year = match(95.0, birth_dates=["1963"], countries=["BY"])
    assert classify(APPLICANT, [same_year]).status == "hit"
    assert classify(APPLICANT, [other_year]).status == "potential_match"


def credit(**fields: object) -> CreditFile:
    base: dict[str, object] = {
        "applicant_id": "APP-1",
        "found": True,
        "score": 720,
        "tradelines": 6,
        "file_age_months": 60,
        "delinquencies_24m": 1,
        "utilization": 0.3,
        "inquiries_6m": 2,
        "address": {"line1": "9 Mill Lane", "city": "Bristol", "postcode": "BS1 2LE", "country": "GB"},
        "address_reported": "2025-04-06",
    }
    base.update(fields)
    return CreditFile.model_validate(base)


@pytest.mark.parametrize(
    ("tradelines", "age", "thin"), [(2, 60, True), (3, 12, False), (3, 11, True), (10, 200, False)]
)
def test_a_file_is_thin_below_3_tradelines_or_12_months(tradelines: int, age: int, thin: bool) -> None:
    assert summarize(credit(tradelines=tradelines, file_age_months=age)).thin_file is thin


def test_a_deeper_file_earns_more_confidence() -> None:
    shallow = summarize(credit(tradelines=1, file_age_months=5)).confidence
    deep = summarize(credit(tradelines=8, file_age_months=120)).confidence
    assert 0.5 < shallow < deep <= 0.95


def test_no_bureau_file_is_reported_as_not_found_without_figures() -> None:
    result = summarize(CreditFile(applicant_id="APP-9", found=False))
    assert result.found is False
    assert result.score is None
    assert result.address is None
    assert result.thin_file is True


def test_the_transaction_profile_averages_months_and_measures_income_volatility_and_gambling() -> None:
    inflows = [3000.0, 3200.0, 2800.0, 3000.0]
    outflows = [2000.0, 2500.0, 2100.0, 2400.0]
    periods = [
        Period(period=f"2026-0{i + 1}", inflow=inflow, outflow=outflow, count=20)
        for i, (inflow, outflow) in enumerate(zip(inflows, outflows, strict=True))
    ]
    counterparties = [
        Counterparty(name="Acme Payroll", category="salary", inflow=12000.0, outflow=0.0, count=4),
        Counterparty(name="Lucky Bets", category="gambling", inflow=0.0, outflow=900.0, count=9),
        Counterparty(name="Spin Palace", category="gambling", inflow=100.0, outflow=450.0, count=3),
        Counterparty(name="Willow Homes", category="rent", inflow=0.0, outflow=4000.0, count=4),
    ]
    account = Account(account_id="ACC-1", found=True, address_updated="2026-08-01")
    result = profile(account, periods, counterparties)
    assert result.months_observed == 4
    assert result.avg_monthly_inflow == 3000.0
    assert result.avg_monthly_outflow == 2250.0
    assert result.net_monthly == 750.0
    assert result.income_volatility == round(statistics.pstdev(inflows) / statistics.fmean(inflows), 4)
    assert result.gambling_share == round(1350.0 / sum(outflows), 4)
    assert result.address_updated == "2026-08-01"
    assert 0.5 < result.confidence < 0.95


def test_an_account_without_income_has_zero_volatility_rather_than_a_division_by_zero() -> None:
    periods = [Period(period="2026-01", inflow=0.0, outflow=10.0, count=1)] * 3
    result = profile(Account(account_id="ACC-2", found=True), periods, [])
    assert (result.income_volatility, result.gambling_share, result.avg_monthly_inflow) == (0.0, 0.0, 0.0)
