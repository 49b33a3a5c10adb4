"""Origin signatures (DESIGN §4): Ed25519 over a manifest's canonical bytes, so an artifact carried
to another environment proves which key signed it there, without that environment holding any
secret of the one the backup was taken in.

A signature is written "ed25519:<base64>" and names its key by `key_id`: "ed25519:" and the first
16 hex digits of the SHA-256 of the raw 32-byte public key — a name, not a proof; the proof is the
signature checked with that public key. Keys are PEM: PKCS#8 private keys ("BEGIN PRIVATE KEY"),
SubjectPublicKeyInfo public keys ("BEGIN PUBLIC KEY"), as `openssl genpkey -algorithm ed25519`
and `walwarden keys generate` write them.

The policy (check_origin): with no trusted keys configured an artifact's origin is not checked
(its manifest's sha256 is, as always); with trusted keys configured a signature by one of them is
required — an unsigned manifest, a key not among them, or a signature that does not verify is
refused, each with its own reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SCHEME = "ed25519"
KEY_ID_HEX_DIGITS = 16


class OriginError(Exception):
    """An origin refused, or a key that cannot be used: a CamelCase reason and what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


# --- keys ---------------------------------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _load_pem(load: Callable[[bytes], object], pem: str) -> object | None:
    """What `load` reads from `pem`, or None for anything it cannot read (never quoting it)."""
    try:
        return load(pem.strip().encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def load_private_key(pem: str, where: str) -> Ed25519PrivateKey:
    """The Ed25519 private key in `pem`; OriginError naming `where` (never quoting the value)."""
    key = _load_pem(lambda data: serialization.load_pem_private_key(data, password=None), pem)
    if not isinstance(key, Ed25519PrivateKey):
        raise OriginError(
            "OriginKeyInvalid",
            f"{where} does not hold an unencrypted Ed25519 private key in PEM (PKCS#8, "
            '"BEGIN PRIVATE KEY"): make one with `walwarden keys generate`',
        )
    return key


def load_public_key(pem: str, where: str) -> Ed25519PublicKey:
    key = _load_pem(serialization.load_pem_public_key, pem)
    if not isinstance(key, Ed25519PublicKey):
        raise OriginError(
            "TrustedKeyInvalid",
            f'{where} is not an Ed25519 public key in PEM ("BEGIN PUBLIC KEY"): put there the public key '
            "`walwarden keys generate` wrote beside the signing key, or remove the entry",
        )
    return key


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{SCHEME}:{hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX_DIGITS]}"


# --- signatures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    key_id: str
    signature: str  # "ed25519:<base64>"


def sign(key: Ed25519PrivateKey, message: bytes) -> Signature:
    encoded = base64.b64encode(key.sign(message)).decode("ascii")
    return Signature(key_id(key.public_key()), f"{SCHEME}:{encoded}")


def verify(key: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    scheme, _, encoded = signature.partition(":")
    if scheme != SCHEME:
        return False
    try:
        key.verify(base64.b64decode(encoded, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


# --- trusted keys and the policy ----------------------------------------------------------------


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    entry: str  # the key of the ConfigMap's or Secret's data that holds it
    public_key: Ed25519PublicKey


def trusted_keys(entries: dict[str, str], where: str) -> list[TrustedKey]:
    """Every entry of a trusted-keys ConfigMap or Secret, each an Ed25519 public key in PEM. An
    entry that is none is an error, not skipped: a key meant to be trusted must not silently not be."""
    keys = []
    for entry, pem in sorted(entries.items()):
        public = load_public_key(pem, f"entry {entry!r} of {where}")
        keys.append(TrustedKey(key_id(public), entry, public))
    if not keys:
        raise OriginError(
            "TrustedKeysEmpty",
            f"{where} holds no public key: add the backup environment's public key (one entry per key, "
            "PEM), or name no trusted keys to restore without an origin check",
        )
    return keys


def check_origin(message: bytes, signature: Signature | None, trusted: list[TrustedKey], where: str) -> TrustedKey:
    """The trusted key that signed `message`; OriginError when none did (the policy above)."""
    known = ", ".join(f"{key.key_id} ({key.entry})" for key in trusted)
    if signature is None:
        raise OriginError(
            "OriginNotSigned",
            f"the manifest carries no origin signature, and {where} requires one by a trusted key ({known}). "
            "Restore an artifact of a BackupRequest with spec.originSigningKey (or an operator with "
            "WALWARDEN_ORIGIN_SIGNING_KEY_SECRET) whose public key is in it",
        )
    signer = next((key for key in trusted if key.key_id == signature.key_id), None)
    if signer is None:
        raise OriginError(
            "OriginKeyNotTrusted",
            f"the manifest is signed by key {signature.key_id}, which is not among the trusted keys of {where} "
            f"({known}). If that key is the backup environment's, add its public key to {where}; otherwise "
            "do not restore this artifact",
        )
    if not verify(signer.public_key, message, signature.signature):
        raise OriginError(
            "OriginSignatureInvalid",
            f"the manifest names the trusted key {signer.key_id} ({signer.entry} of {where}) but its "
            "signature does not verify: the manifest was changed after it was signed; do not restore it",
        )
    return signer
