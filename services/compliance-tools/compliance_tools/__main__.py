"""`python -m compliance_tools`: the MCP server at /mcp on ACCORD_PORT until SIGTERM."""

from accord.tools_server import run_tools_server
from compliance_tools.server import build_mcp

if __name__ == "__main__":
    run_tools_server("compliance-tools", build_mcp)
