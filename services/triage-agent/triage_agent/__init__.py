"""Accord triage specialist: classifies a support ticket from its text and the customer's account records."""
