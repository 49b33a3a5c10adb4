"""Integrity and secrets: EMP fingerprints, HMAC signatures (DESIGN §4)."""
