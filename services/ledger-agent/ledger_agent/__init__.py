"""Accord ledger specialist: profiles an applicant's transactions fetched through the gateway."""
