"""The sanctions-tools MCP server: one tool, `search`."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from accord.tools_server import ToolsSettings
from sanctions_tools.screening import SanctionsList, SearchResult


def build_mcp(settings: ToolsSettings) -> MCPServer:
    """The MCP server over `<data_dir>/sanctions.json` (loaded once, at build time)."""
    sanctions = SanctionsList.load(settings.data_dir / "sanctions.json")
    mcp = MCPServer(
        "sanctions-tools",
        version="0.1.0",
        instructions="Screen a person or entity name against the sanctions list.",
    )

    @mcp.tool(
        description=(
            "Fuzzy, transliteration-insensitive search of the sanctions list over primary names and aliases. "
            "A matching birth date or country raises the 0-100 score; a different one lowers it."
        )
    )
    def search(
        name: Annotated[str, Field(min_length=1, max_length=200, description="Full name to screen")],
        birth_date: Annotated[
            str | None, Field(pattern=r"^\d{4}(-\d{2}-\d{2})?$", description="YYYY-MM-DD or YYYY")
        ] = None,
        country: Annotated[
            str | None, Field(pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2 nationality")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=50, description="Most matches to return")] = 5,
    ) -> SearchResult:
        return sanctions.search(name, birth_date=birth_date, country=country, limit=limit)

    return mcp
