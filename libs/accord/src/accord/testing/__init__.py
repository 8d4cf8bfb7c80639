"""Helpers for testing Accord services against real processes and real stores."""
