"""ledger-tools: the upstream MCP server over the (synthetic) bank accounts and their transactions."""
