"""Accord drafting specialist: writes and revises compliance memos from a sourced fact base."""
