"""`python -m support_tools`: the MCP server at /mcp on ACCORD_PORT until SIGTERM."""

from accord.tools_server import run_tools_server
from support_tools.server import build_mcp

if __name__ == "__main__":
    run_tools_server("support-tools", build_mcp)
