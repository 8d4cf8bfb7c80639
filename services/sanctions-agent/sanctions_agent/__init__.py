"""Accord sanctions specialist: screens an applicant against the sanctions list through the gateway."""
