"""The bureau-tools MCP server: one tool, `get_credit_file`."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from accord.credit_files import CreditFile
from accord.tools_server import ToolsSettings
from bureau_tools.files import CreditBureau


def build_mcp(settings: ToolsSettings) -> MCPServer:
    """The MCP server over `<data_dir>/bureau.json` (loaded once, at build time)."""
    bureau = CreditBureau.load(settings.data_dir / "bureau.json")
    mcp = MCPServer("bureau-tools", version="0.1.0", instructions="Read an applicant's credit bureau file.")

    @mcp.tool(
        description=(
            "The applicant's credit file: score (300-850), tradelines, file age, delinquencies in 24 months, "
            "utilization (0-1), inquiries in 6 months and the address on file. found=false if there is none."
        )
    )
    def get_credit_file(
        applicant_id: Annotated[
            str, Field(min_length=1, max_length=64, description="Applicant id, e.g. APP-0001")
        ],
    ) -> CreditFile:
        return bureau.credit_file(applicant_id)

    return mcp
