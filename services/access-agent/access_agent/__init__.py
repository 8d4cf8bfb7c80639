"""Accord access specialist: resolves a sign-in ticket from the customer's identity records."""
