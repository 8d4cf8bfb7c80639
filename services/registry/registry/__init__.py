"""Accord registry: the catalog of agents, registered from their Agent Card URLs (REST + gRPC)."""
