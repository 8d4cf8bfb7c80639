"""support-tools: the upstream MCP server over the (synthetic) support desk.

Tickets and customers, network status and device diagnostics, invoices and payments, identity records.
"""
