"""Accord bureau specialist: summarizes an applicant's credit bureau file fetched through the gateway."""
