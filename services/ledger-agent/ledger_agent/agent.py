"""The transaction-profile skill.

Levels come from the monthly aggregates; income volatility is the coefficient of variation of monthly
inflow (population standard deviation over mean); the gambling share is the gambling counterparties'
outflow over all outflow in the same window. Confidence grows with the number of months observed.
"""

from __future__ import annotations

import asyncio
import statistics

from pydantic import BaseModel, Field

from accord.agent import Agent, ToolBox

WINDOW_MONTHS = 12
# Enough counterparties that a gambling operator outside the biggest few is still counted.
COUNTERPARTY_LIMIT = 50
GAMBLING = "gambling"
NO_ACCOUNT_CONFIDENCE = 0.5

agent = Agent("ledger-agent")


class ProfileInput(BaseModel):
    account_id: str = Field(min_length=1, max_length=64, description="The applicant's bank account id")


class Address(BaseModel):
    line1: str
    city: str
    postcode: str
    country: str


class Account(BaseModel):
    account_id: str
    found: bool
    address: Address | None = None
    address_updated: str | None = None


class Period(BaseModel):
    period: str
    inflow: float = Field(ge=0)
    outflow: float = Field(ge=0)
    count: int = Field(ge=0)


class Counterparty(BaseModel):
    name: str
    category: str
    inflow: float = Field(ge=0)
    outflow: float = Field(ge=0)
    count: int = Field(ge=0)


class ProfileOutput(BaseModel):
    found: bool
    months_observed: int = Field(ge=0)
    avg_monthly_inflow: float = Field(ge=0)
    avg_monthly_outflow: float = Field(ge=0)
    net_monthly: float
    income_volatility: float = Field(ge=0, description="Coefficient of variation of monthly inflow")
    gambling_share: float = Field(ge=0, le=1, description="Share of outflow paid to gambling counterparties")
    address: Address | None
    address_updated: str | None = Field(description="When the account's address last changed, YYYY-MM-DD")
    confidence: float = Field(ge=0, le=1)


@agent.skill(
    "transaction-profile",
    tools=["ledger.get_account", "ledger.aggregate_by_period", "ledger.aggregate_by_counterparty"],
)
async def transaction_profile(request: ProfileInput, tools: ToolBox) -> ProfileOutput:
    account = Account.model_validate(
        await tools.call("ledger.get_account", {"account_id": request.account_id})
    )
    if not account.found:
        return not_found()
    by_period, by_counterparty = await asyncio.gather(
        tools.call("ledger.aggregate_by_period", {"account_id": request.account_id, "months": WINDOW_MONTHS}),
        tools.call(
            "ledger.aggregate_by_counterparty",
            {"account_id": request.account_id, "months": WINDOW_MONTHS, "top": COUNTERPARTY_LIMIT},
        ),
    )
    periods = [Period.model_validate(p) for p in by_period.get("periods", [])]
    counterparties = [Counterparty.model_validate(c) for c in by_counterparty.get("counterparties", [])]
    return profile(account, periods, counterparties)


def not_found() -> ProfileOutput:
    return ProfileOutput(
        found=False,
        months_observed=0,
        avg_monthly_inflow=0.0,
        avg_monthly_outflow=0.0,
        net_monthly=0.0,
        income_volatility=0.0,
        gambling_share=0.0,
        address=None,
        address_updated=None,
        confidence=NO_ACCOUNT_CONFIDENCE,
    )


def profile(account: Account, periods: list[Period], counterparties: list[Counterparty]) -> ProfileOutput:
    months = len(periods)
    inflows = [p.inflow for p in periods]
    total_outflow = sum(p.outflow for p in periods)
    avg_in = statistics.fmean(inflows) if periods else 0.0
    avg_out = total_outflow / months if months else 0.0
    return ProfileOutput(
        found=True,
        months_observed=months,
        avg_monthly_inflow=round(avg_in, 2),
        avg_monthly_outflow=round(avg_out, 2),
        net_monthly=round(avg_in - avg_out, 2),
        income_volatility=round(income_volatility(inflows), 4),
        gambling_share=round(gambling_share(counterparties, total_outflow), 4),
        address=account.address,
        address_updated=account.address_updated,
        confidence=history_confidence(months),
    )


def income_volatility(inflows: list[float]) -> float:
    """Coefficient of variation; 0 when it is undefined (under two months, or no income at all)."""
    if len(inflows) < 2:
        return 0.0
    mean = statistics.fmean(inflows)
    if mean <= 0:
        return 0.0
    return statistics.pstdev(inflows) / mean


def gambling_share(counterparties: list[Counterparty], total_outflow: float) -> float:
    if total_outflow <= 0:
        return 0.0
    gambled = sum(c.outflow for c in counterparties if c.category.casefold() == GAMBLING)
    return min(gambled / total_outflow, 1.0)


def history_confidence(months: int) -> float:
    """0.5 with no history, rising to 0.95 with a full window of months."""
    return round(0.5 + 0.45 * min(months / WINDOW_MONTHS, 1.0), 3)


def main() -> None:
    agent.run()
