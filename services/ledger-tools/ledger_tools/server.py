"""The ledger-tools MCP server: `get_account`, `aggregate_by_period`, `aggregate_by_counterparty`."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from accord.tools_server import ToolsSettings
from ledger_tools.accounts import Address, Ledger
from ledger_tools.aggregation import Counterparty, Period, by_counterparty, by_period

AccountId = Annotated[str, Field(min_length=1, max_length=64, description="Account id, e.g. ACC-100007")]
Months = Annotated[int, Field(ge=1, le=36, description="Calendar months back from the ledger date")]


class AccountSummary(BaseModel):
    """The account's holder and address; `found=False` (other fields empty) for an unknown account."""

    account_id: str
    found: bool
    holder_name: str | None = None
    opened: str | None = Field(default=None, description="YYYY-MM-DD")
    address: Address | None = None
    address_updated: str | None = Field(default=None, description="YYYY-MM-DD the address last changed")


class PeriodAggregate(BaseModel):
    account_id: str
    found: bool
    periods: list[Period] = Field(default_factory=list, description="Oldest month first")


class CounterpartyAggregate(BaseModel):
    account_id: str
    found: bool
    counterparties: list[Counterparty] = Field(default_factory=list, description="Most money moved first")


def build_mcp(settings: ToolsSettings) -> MCPServer:
    """The MCP server over `<data_dir>/ledger.json` (loaded once; aggregates computed per call)."""
    ledger = Ledger.load(settings.data_dir / "ledger.json")
    mcp = MCPServer(
        "ledger-tools", version="0.1.0", instructions="Read bank accounts and their transactions."
    )

    @mcp.tool(description="The account holder, opening date and current address (with the date it changed).")
    def get_account(account_id: AccountId) -> AccountSummary:
        account = ledger.account(account_id)
        if account is None:
            return AccountSummary(account_id=account_id, found=False)
        return AccountSummary(
            account_id=account_id,
            found=True,
            holder_name=account.holder_name,
            opened=account.opened.isoformat(),
            address=account.address,
            address_updated=account.address_updated.isoformat() if account.address_updated else None,
        )

    @mcp.tool(description="Inflow, outflow (positive) and transaction count per calendar month.")
    def aggregate_by_period(account_id: AccountId, months: Months = 12) -> PeriodAggregate:
        account = ledger.account(account_id)
        if account is None:
            return PeriodAggregate(account_id=account_id, found=False)
        return PeriodAggregate(
            account_id=account_id, found=True, periods=by_period(account, ledger.as_of, months)
        )

    @mcp.tool(
        description=(
            "Totals per counterparty with its category (salary, rent, mortgage, groceries, utilities, "
            "transport, dining, shopping, gambling, loan_repayment, transfer), largest first."
        )
    )
    def aggregate_by_counterparty(
        account_id: AccountId,
        months: Months = 12,
        top: Annotated[int, Field(ge=1, le=100, description="Most counterparties to return")] = 10,
    ) -> CounterpartyAggregate:
        account = ledger.account(account_id)
        if account is None:
            return CounterpartyAggregate(account_id=account_id, found=False)
        rows = by_counterparty(account, ledger.as_of, months, top)
        return CounterpartyAggregate(account_id=account_id, found=True, counterparties=rows)

    return mcp
