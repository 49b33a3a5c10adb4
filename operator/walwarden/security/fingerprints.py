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

from pydantic import BaseModel, ConfigDict, Field, model_validator

ALGORITHM = "scrypt"
DEFAULT_N, DEFAULT_R, DEFAULT_P = 2**15, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
# A fingerprint read from a bucket decides n, r and p, so they are bounded both ways. From below:
# a forged manifest with n=2 would publish a fingerprint anyone can brute-force, and make the check
# prove little; 2**14 with r=8 is scrypt's interactive-login minimum. From above: scrypt needs about
# 128 * r * (n + p + 2) bytes and time in n * r * p, and the operator must not allocate gigabytes
# or spin for minutes on a manifest's say-so: 2**17 with r=8 is 128 MiB, four times the default.
MIN_N, MAX_N = 2**14, 2**17
MIN_R, MAX_R = 8, 32
MIN_P, MAX_P = 1, 4
MAX_MEMORY = 256 * 2**20


def _scrypt_memory(n: int, r: int, p: int) -> int:
    return 128 * r * (n + p + 2)


def parameter_problem(n: int, r: int, p: int) -> str | None:
    """Why scrypt must not be run with these parameters, or None when they are within bounds."""
    if not (MIN_N <= n <= MAX_N and MIN_R <= r <= MAX_R and MIN_P <= p <= MAX_P):
        return (
            f"scrypt parameters n={n}, r={r}, p={p} are out of bounds "
            f"({MIN_N} ≤ n ≤ {MAX_N}, {MIN_R} ≤ r ≤ {MAX_R}, {MIN_P} ≤ p ≤ {MAX_P})"
        )
    if n & (n - 1):
        return f"scrypt's n must be a power of two, not {n}"
    if _scrypt_memory(n, r, p) > MAX_MEMORY:
        return f"scrypt parameters n={n}, r={r}, p={p} need more than {MAX_MEMORY // 2**20} MiB"
    return None


class EncryptorFingerprint(BaseModel):
    """scrypt(secret, salt, n, r, p); salt and hash in base64."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: Literal["scrypt"] = "scrypt"
    n: int = Field(ge=MIN_N, le=MAX_N, description="scrypt CPU/memory cost, a power of two")
    r: int = Field(ge=MIN_R, le=MAX_R, description="scrypt block size")
    p: int = Field(ge=MIN_P, le=MAX_P, description="scrypt parallelism")
    salt: str = Field(min_length=1, description="the random salt, base64")
    hash: str = Field(min_length=1, description="the derived key, base64")

    @model_validator(mode="after")
    def _parameters_are_bounded(self) -> EncryptorFingerprint:
        problem = parameter_problem(self.n, self.r, self.p)
        if problem:
            raise ValueError(problem)
        return self


def _derive(secret_value: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    problem = parameter_problem(n, r, p)  # again: model_copy(update=...) skips the model's check
    if problem:
        raise ValueError(problem)
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
