"""Accord review specialist: checks a compliance memo draft against its rule book."""
