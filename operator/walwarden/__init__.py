"""Walwarden: backs up and restores an Institutional Vault's PostgreSQL state safely."""

__version__ = "0.1.0"
