"""compliance-tools: the upstream MCP server over the (synthetic) memo rule books and fact bases."""
