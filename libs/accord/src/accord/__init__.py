"""Accord: shared library and agent SDK for the protocol-native agent mesh."""

__version__ = "0.1.0"
