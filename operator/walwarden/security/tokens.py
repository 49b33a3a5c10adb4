"""Approval tokens (DESIGN §4): short-lived, single-use HMAC-SHA256 tokens that approve one restore.

A token binds one RestoreRequest as its approver saw it: the request's name and namespace, the
sha256 of its whole spec (RestoreRequestSpec.approval_digest: target, strategy, redirect, Verify
URLs, everything but the token), the backup (a BackupRequest name or an artifact's s3:// URI,
exactly as the source names it), the artifact's sha256, the restore mode and an expiry, plus a
random nonce that is the token's id:

    wwt2.<base64url(claims as compact JSON, sorted keys)>.<base64url(HMAC-SHA256)>

So a token committed to git cannot be taken to another request, or to the same name with another
spec, before its own request is applied. (wwt1 tokens, which bound no request, are refused.)

The HMAC covers everything before the last dot, version prefix included. The claims are labels
only (names, a checksum, timestamps), never secrets: anyone holding the token can read them
(`parse_unverified`), only a holder of the key can make one.

Single use is the caller's job: this module is stateless, so the operator records the ids of
tokens it has accepted (`TokenClaims.token_id`) and refuses an id it has seen before. A token's
id never needs to outlive its expiry in that record, since an expired token is refused anyway.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from walwarden.api.common import format_timestamp
from walwarden.api.restore import RestoreMode, RestoreRequestSpec

PREFIX = "wwt2"
RETIRED_PREFIXES = ("wwt1",)  # formats that no longer approve anything
MAX_TTL_SECONDS = 30 * 86400
# A generous bound (an s3:// URI may be long), so a huge string is refused before any decoding.
MAX_TOKEN_LENGTH = 8192
MIN_KEY_BYTES = 16
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(rf"{PREFIX}\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
_NONCE_BYTES = 16  # 128 random bits: ids never collide, so "seen before" means "reused"

# Wire names of the claims; exactly these keys, with these types, make a well-formed token.
_CLAIM_TYPES: dict[str, type] = {
    "backup": str,
    "sha256": str,
    "mode": str,
    "namespace": str,
    "request": str,
    "spec": str,
    "iat": int,
    "exp": int,
    "jti": str,
}


class TokenErrorReason(StrEnum):
    """Why a token was refused; used as the `reason` of the RestoreRequest's Failed condition."""

    MALFORMED = "TokenMalformed"
    SIGNATURE_INVALID = "TokenSignatureInvalid"
    EXPIRED = "TokenExpired"
    MISMATCH = "TokenMismatch"
    RETIRED = "TokenFormatRetired"


class TokenError(Exception):
    """A token was refused. `reason` is a TokenErrorReason, `message` a sentence for the user."""

    def __init__(self, reason: TokenErrorReason, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class TokenClaims:
    """What a token says. expires_at and issued_at are unix seconds."""

    token_id: str
    backup: str
    sha256: str
    mode: str
    namespace: str
    request: str  # the RestoreRequest's name
    spec: str  # the sha256 of its spec (RestoreRequestSpec.approval_digest)
    issued_at: int
    expires_at: int

    def expired(self, now: float | None = None) -> bool:
        # No clock-skew allowance: the token is good strictly before expires_at.
        return _now(now) >= self.expires_at

    def to_wire(self) -> dict[str, Any]:
        return {
            "backup": self.backup,
            "sha256": self.sha256,
            "mode": self.mode,
            "namespace": self.namespace,
            "request": self.request,
            "spec": self.spec,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "jti": self.token_id,
        }

    @classmethod
    def from_wire(cls, claims: Any) -> TokenClaims:
        if not isinstance(claims, dict) or set(claims) != set(_CLAIM_TYPES):
            raise _malformed("its claims are not the expected set of fields")
        for name, kind in _CLAIM_TYPES.items():
            # bool is an int in Python, but never a valid timestamp.
            if not isinstance(claims[name], kind) or isinstance(claims[name], bool):
                raise _malformed(f"its claim {name!r} is not a {kind.__name__}")
        return cls(
            token_id=claims["jti"],
            backup=claims["backup"],
            sha256=claims["sha256"],
            mode=claims["mode"],
            namespace=claims["namespace"],
            request=claims["request"],
            spec=claims["spec"],
            issued_at=claims["iat"],
            expires_at=claims["exp"],
        )


@dataclass(frozen=True)
class Approval:
    """What a token approves: one RestoreRequest (namespace, name, spec digest) restoring `backup`
    (whose artifact has `sha256`) in `mode`."""

    backup: str
    sha256: str
    mode: str
    namespace: str
    request: str  # the RestoreRequest's name
    spec: str  # RestoreRequestSpec.approval_digest()

    @classmethod
    def of_request(cls, namespace: str, name: str, spec: RestoreRequestSpec, sha256: str) -> Approval:
        """The approval of a RestoreRequest as written: its backup, mode and digest come from its spec."""
        return cls(
            backup=spec.source.label,
            sha256=sha256,
            mode=str(spec.mode),
            namespace=namespace,
            request=name,
            spec=spec.approval_digest(),
        )


def issue_token(key: bytes, approval: Approval, *, ttl_seconds: int, now: float | None = None) -> str:
    """A new token granting `approval`, valid for ttl_seconds (1 s to 30 days). Raises ValueError
    on bad arguments."""
    if not isinstance(ttl_seconds, int) or isinstance(ttl_seconds, bool):
        raise ValueError(f"ttl_seconds must be an integer number of seconds, not {ttl_seconds!r}")
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(
            f"the token's lifetime must be more than 0 and at most 30 days "
            f"({MAX_TTL_SECONDS} s), not {ttl_seconds} s: approvals are meant to be short-lived"
        )
    if not approval.backup:
        raise ValueError("backup must name a BackupRequest or an s3:// artifact URI")
    if not approval.namespace or not approval.request:
        raise ValueError("namespace and request must name the RestoreRequest")
    issued_at = math.floor(_now(now))
    claims = TokenClaims(
        token_id=_b64encode(secrets.token_bytes(_NONCE_BYTES)),
        backup=approval.backup,
        sha256=normalize_sha256(approval.sha256),
        mode=_check_mode(approval.mode),
        namespace=approval.namespace,
        request=approval.request,
        spec=normalize_sha256(approval.spec),
        issued_at=issued_at,
        expires_at=issued_at + ttl_seconds,
    )
    payload = _b64encode(json.dumps(claims.to_wire(), separators=(",", ":"), sort_keys=True).encode())
    signed = f"{PREFIX}.{payload}"
    return f"{signed}.{_b64encode(_mac(key, signed))}"


def verify_token(key: bytes, token: str, approval: Approval, *, now: float | None = None) -> TokenClaims:
    """The token's claims if it was made with `key`, grants exactly `approval`, and has not
    expired; else TokenError. Does not check reuse: see the module's docstring."""
    signed, payload, signature = _split(token)
    # Constant time, so the comparison leaks nothing about how much of a forged MAC was right.
    if not hmac.compare_digest(_mac(key, signed), signature):
        raise TokenError(
            TokenErrorReason.SIGNATURE_INVALID,
            "the approval token was not signed with this operator's approval key, "
            "or it was altered after it was issued; issue a new one with `walwarden token issue`",
        )
    claims = _decode_claims(payload)
    # Mismatch before expiry: a token for another restore is the more useful thing to be told.
    expected = dataclasses.asdict(approval) | {"sha256": normalize_sha256(approval.sha256, strict=False)}
    said = [_difference(name, getattr(claims, name), value) for name, value in expected.items()]
    differences = [difference for difference in said if difference]
    if differences:
        raise TokenError(TokenErrorReason.MISMATCH, "; ".join(differences))
    if claims.expired(now):
        raise TokenError(
            TokenErrorReason.EXPIRED,
            f"the approval token expired at {rfc3339(claims.expires_at)}; issue a new one with `walwarden token issue`",
        )
    return claims


def _difference(name: str, issued: str, actual: str) -> str | None:
    if issued == actual:
        return None
    if name == "spec":
        return (
            f"the token was issued for another spec (sha256 {issued[:12]}…) than this request's ({actual[:12]}…): "
            "a field changed after it was approved; issue a token for the request as it is"
        )
    return f"the token was issued for {name} {issued}, this request is {actual}"


def parse_unverified(token: str) -> TokenClaims:
    """The claims of a well-formed token WITHOUT checking its signature or expiry: for display
    and bookkeeping only, never for a decision. Raises TokenError(TokenMalformed)."""
    return _decode_claims(_split(token)[1])


def token_id(token: str) -> str:
    """The token's id (its nonce), WITHOUT verifying the token: for recording which tokens were
    used (single use). Only an id from a token that verify_token accepted means anything."""
    return parse_unverified(token).token_id


def normalize_sha256(value: str, *, strict: bool = True) -> str:
    """Lower-case hex. With strict (issuing), anything but 64 hex digits is a ValueError; when
    verifying, a bad value simply fails to match."""
    normalized = value.strip().lower() if isinstance(value, str) else ""
    if strict and not _SHA256_HEX.fullmatch(normalized):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, not {value!r}")
    return normalized


def rfc3339(seconds: int) -> str:
    """A claim's unix time as Kubernetes writes timestamps (RFC 3339, UTC, `Z`)."""
    return format_timestamp(datetime.fromtimestamp(seconds, UTC))


# -- internals --------------------------------------------------------------------------------


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _check_mode(mode: str) -> str:
    modes = [m.value for m in RestoreMode]
    if mode not in modes:
        raise ValueError(f"mode must be one of {', '.join(modes)}, not {mode!r}")
    return mode


def _mac(key: bytes, signed: str) -> bytes:
    # Surrounding whitespace is never part of a key (a key file usually ends with a newline):
    # strip it here, so the issuer and the operator agree however each one read the key.
    key = key.strip()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the approval key must be at least {MIN_KEY_BYTES} bytes long")
    return hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest()


def _malformed(why: str) -> TokenError:
    return TokenError(
        TokenErrorReason.MALFORMED,
        f"this is not a Walwarden approval token ({why}); expected {PREFIX}.<claims>.<signature> "
        "as printed by `walwarden token issue`",
    )


def _split(token: str) -> tuple[str, str, bytes]:
    """(the signed part, the claims part, the signature's bytes) of a syntactically valid token."""
    if not isinstance(token, str) or not token.strip():
        raise _malformed("it is empty")
    token = token.strip()  # a token pasted into YAML often carries a newline
    if len(token) > MAX_TOKEN_LENGTH:
        raise _malformed(f"it is longer than {MAX_TOKEN_LENGTH} characters")
    if token.startswith(tuple(f"{retired}." for retired in RETIRED_PREFIXES)):
        raise TokenError(
            TokenErrorReason.RETIRED,
            "this approval token has an old format that did not bind the request it approves; issue a new one "
            "with `walwarden token issue --request <file>`",
        )
    match = _TOKEN.fullmatch(token)
    if not match:
        raise _malformed("wrong prefix or shape")
    signature = _b64decode(match[2])
    if len(signature) != hashlib.sha256().digest_size:
        raise _malformed("its signature has the wrong length")
    return token.rpartition(".")[0], match[1], signature


def _decode_claims(payload: str) -> TokenClaims:
    try:
        claims = json.loads(_b64decode(payload).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _malformed("its claims are not JSON") from None
    return TokenClaims.from_wire(claims)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # The alphabet was checked by _TOKEN. The round trip refuses non-canonical spellings (stray
    # low bits in the last character), so one token has exactly one string.
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _malformed("bad base64") from None
    if _b64encode(data) != text:
        raise _malformed("bad base64")
    return data
