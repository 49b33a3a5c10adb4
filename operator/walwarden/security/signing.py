"""HMAC-SHA256 signatures over canonical JSON: the runner's signed manifest, later approval tokens.

A signature is written "hmac-sha256:<hex>" so a reader knows the scheme without guessing, and is
checked in constant time so its bytes cannot be found by timing the comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SCHEME = "hmac-sha256"


def canonical_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no whitespace, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def sign(key: bytes, message: bytes) -> str:
    if not key:
        raise ValueError("an HMAC key must not be empty")
    return f"{SCHEME}:{hmac.new(key, message, hashlib.sha256).hexdigest()}"


def verify(key: bytes, message: bytes, signature: str | None) -> bool:
    if not key or not signature:
        return False
    return hmac.compare_digest(sign(key, message).encode(), signature.encode())
