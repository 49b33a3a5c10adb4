"""Fingerprints of Encryptor Master Passwords (EMP): a salted scrypt hash per secret (DESIGN §4).

The manifest carries the fingerprint of each EMP the backup was taken with; before a restore, the
target environment's EMP is hashed with the same salt and parameters and must match, or the
restore would produce a vault whose key shares cannot be decrypted. scrypt is slow and
memory-hard on purpose: a manifest in a bucket must not make guessing the password cheap.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ALGORITHM = "scrypt"
DEFAULT_N, DEFAULT_R, DEFAULT_P = 2**15, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
# scrypt needs about 128 * r * (n + p + 2) bytes. A fingerprint read from a bucket decides n, r
# and p, so they are bounded: a forged manifest must not make the operator allocate gigabytes.
MAX_MEMORY = 256 * 2**20


def _scrypt_memory(n: int, r: int, p: int) -> int:
    return 128 * r * (n + p + 2)


class EncryptorFingerprint(BaseModel):
    """scrypt(secret, salt, n, r, p); salt and hash in base64."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: Literal["scrypt"] = "scrypt"
    n: int = Field(ge=2, le=2**20, description="scrypt CPU/memory cost, a power of two")
    r: int = Field(ge=1, le=64, description="scrypt block size")
    p: int = Field(ge=1, le=16, description="scrypt parallelism")
    salt: str = Field(min_length=1, description="the random salt, base64")
    hash: str = Field(min_length=1, description="the derived key, base64")


def _derive(secret_value: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    if n & (n - 1) or _scrypt_memory(n, r, p) > MAX_MEMORY:
        raise ValueError(
            f"scrypt parameters n={n}, r={r}, p={p} are not a power-of-two n within {MAX_MEMORY // 2**20} MiB"
        )
    return hashlib.scrypt(
        secret_value.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES, maxmem=_scrypt_memory(n, r, p) + 2**20
    )  # OpenSSL's default limit is too low for n=2**15


def fingerprint(
    secret_value: str, salt: bytes | None = None, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P
) -> EncryptorFingerprint:
    """The fingerprint of one EMP value, with a new random salt unless one is given."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    return EncryptorFingerprint(
        n=n,
        r=r,
        p=p,
        salt=base64.b64encode(salt).decode(),
        hash=base64.b64encode(_derive(secret_value, salt, n, r, p)).decode(),
    )


def matches(secret_value: str, fingerprint: EncryptorFingerprint) -> bool:
    """Whether secret_value is the EMP the fingerprint was made from (constant-time comparison)."""
    try:
        salt = base64.b64decode(fingerprint.salt, validate=True)
        expected = base64.b64decode(fingerprint.hash, validate=True)
        actual = _derive(secret_value, salt, fingerprint.n, fingerprint.r, fingerprint.p)
    except ValueError:  # malformed base64 or parameters out of bounds: not a match, never a crash
        return False
    return hmac.compare_digest(actual, expected)
