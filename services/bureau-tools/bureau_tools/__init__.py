"""bureau-tools: the upstream MCP server over the (synthetic) credit bureau files."""
