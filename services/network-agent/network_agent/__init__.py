"""Accord network specialist: diagnoses a connectivity ticket from regional incidents and device data."""
