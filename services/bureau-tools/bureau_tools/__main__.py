"""`python -m bureau_tools`: the MCP server at /mcp on ACCORD_PORT until SIGTERM."""

from accord.tools_server import run_tools_server
from bureau_tools.server import build_mcp

if __name__ == "__main__":
    run_tools_server("bureau-tools", build_mcp)
