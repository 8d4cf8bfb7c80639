"""sanctions-tools: the upstream MCP server that screens names against the (synthetic) sanctions list."""
