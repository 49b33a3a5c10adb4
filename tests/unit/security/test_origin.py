"""Origin signatures (security/origin.py): Ed25519 over canonical bytes, key ids, trusted keys and
the policy — with trusted keys, a signature by one of them is required."""

from __future__ import annotations

import re

import pytest

from walwarden.security import origin
from walwarden.security.origin import OriginError, Signature

MESSAGE = b'{"databases":[],"formatVersion":1}'
WHERE = "ConfigMap vault/trusted"


def trusted(*keys, names=("prod.pub", "other.pub")):
    entries = {name: origin.public_key_pem(key.public_key()) for name, key in zip(names, keys, strict=False)}
    return origin.trusted_keys(entries, WHERE)


def refused(message: bytes, signature: Signature | None, keys) -> OriginError:
    with pytest.raises(OriginError) as failed:
        origin.check_origin(message, signature, keys, WHERE)
    return failed.value


def test_a_signature_names_its_key_and_verifies_only_what_was_signed(key_a, key_b):
    signed = origin.sign(key_a, MESSAGE)
    assert re.fullmatch(r"ed25519:[0-9a-f]{16}", signed.key_id) and signed.key_id == origin.key_id(key_a.public_key())
    assert signed.signature.startswith("ed25519:")
    assert origin.verify(key_a.public_key(), MESSAGE, signed.signature)
    assert not origin.verify(key_a.public_key(), MESSAGE + b" ", signed.signature)
    assert not origin.verify(key_b.public_key(), MESSAGE, signed.signature)
    assert not origin.verify(key_a.public_key(), MESSAGE, "hmac-sha256:" + signed.signature[8:])
    assert not origin.verify(key_a.public_key(), MESSAGE, "ed25519:not base64!")
    assert origin.sign(key_a, MESSAGE) == signed  # deterministic: signing again writes the same bytes


def test_keys_round_trip_through_pem_and_their_ids_differ(key_a, key_b):
    private = origin.load_private_key(origin.private_key_pem(key_a), "Secret vault/k")
    public = origin.load_public_key(origin.public_key_pem(key_a.public_key()), WHERE)
    assert origin.key_id(private.public_key()) == origin.key_id(public) == origin.key_id(key_a.public_key())
    assert origin.key_id(key_a.public_key()) != origin.key_id(key_b.public_key())


@pytest.mark.parametrize("pem", ["", "not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"])
def test_what_is_no_ed25519_private_key_is_refused_without_quoting_it(pem):
    with pytest.raises(OriginError) as failed:
        origin.load_private_key(pem, "key privateKey of Secret vault/k")
    assert failed.value.reason == "OriginKeyInvalid" and "Secret vault/k" in failed.value.message
    assert (pem or "\0") not in failed.value.message


def test_a_private_key_of_another_algorithm_is_refused():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(OriginError, match="Ed25519"):
        origin.load_private_key(pem, "k")


def test_trusted_keys_name_their_entries(key_a, key_b):
    keys = trusted(key_a, key_b)
    assert [(k.entry, k.key_id) for k in keys] == sorted(
        [("prod.pub", origin.key_id(key_a.public_key())), ("other.pub", origin.key_id(key_b.public_key()))]
    )


def test_a_trusted_keys_entry_that_is_no_public_key_is_an_error_not_skipped(key_a):
    entries = {"prod.pub": origin.public_key_pem(key_a.public_key()), "typo.pub": "-----BEGIN PUBLIC KEY-----"}
    with pytest.raises(OriginError) as failed:
        origin.trusted_keys(entries, WHERE)
    assert failed.value.reason == "TrustedKeyInvalid" and "'typo.pub'" in failed.value.message


def test_trusted_keys_without_any_key_are_an_error():
    with pytest.raises(OriginError) as failed:
        origin.trusted_keys({}, WHERE)
    assert failed.value.reason == "TrustedKeysEmpty" and WHERE in failed.value.message


# --- the policy ---------------------------------------------------------------------------------


def test_a_signature_by_a_trusted_key_names_that_key(key_a, key_b):
    signer = origin.check_origin(MESSAGE, origin.sign(key_a, MESSAGE), trusted(key_b, key_a), WHERE)
    assert (signer.key_id, signer.entry) == (origin.key_id(key_a.public_key()), "other.pub")


def test_with_trusted_keys_an_unsigned_manifest_is_refused(key_a):
    failure = refused(MESSAGE, None, trusted(key_a))
    assert failure.reason == "OriginNotSigned" and "spec.originSigningKey" in failure.message


def test_a_key_not_trusted_is_refused_naming_it_and_the_trusted_ones(key_a, key_b):
    failure = refused(MESSAGE, origin.sign(key_a, MESSAGE), trusted(key_b))
    assert failure.reason == "OriginKeyNotTrusted"
    assert origin.key_id(key_a.public_key()) in failure.message and origin.key_id(key_b.public_key()) in failure.message
    assert f"add its public key to {WHERE}" in failure.message


def test_a_signature_that_does_not_verify_is_refused(key_a):
    signed = origin.sign(key_a, MESSAGE)
    failure = refused(MESSAGE + b"changed", signed, trusted(key_a))
    assert failure.reason == "OriginSignatureInvalid" and "do not restore it" in failure.message


def test_a_signature_under_a_trusted_keys_id_but_by_another_key_is_refused(key_a, key_b):
    forged = Signature(origin.key_id(key_a.public_key()), origin.sign(key_b, MESSAGE).signature)
    assert refused(MESSAGE, forged, trusted(key_a)).reason == "OriginSignatureInvalid"
