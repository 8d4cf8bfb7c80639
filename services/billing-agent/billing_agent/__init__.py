"""Accord billing specialist: resolves a billing ticket from the customer's invoices and payments."""
