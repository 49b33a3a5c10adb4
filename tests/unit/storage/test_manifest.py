"""The manifest: camelCase JSON, a canonical form, and a signature over it."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from walwarden.security.fingerprints import fingerprint
from walwarden.storage.manifest import (
    DatabaseDump,
    EncryptorEntry,
    Manifest,
    manifest_key,
    sign_manifest,
    signature_valid,
)

KEY = b"per-request result key"


def make_manifest() -> Manifest:
    emp = fingerprint("emp value", salt=b"0123456789abcdef", n=2**14)
    return Manifest(
        created_at="2025-01-02T03:04:05Z",
        completed_at="2025-01-02T03:09:05Z",
        backup={"namespace": "vault", "name": "nightly", "uid": "1a2b"},
        pg_dump_version="15.18",
        pg_server_version="15.18",
        databases=[
            DatabaseDump(
                name="vault",
                key="p/vault.dump",
                uri="s3://b/p/vault.dump",
                sha256="ab" * 32,
                size_bytes=1234,
                row_counts={"public.accounts": 200},
            )
        ],
        encryptor_fingerprints=[EncryptorEntry(secret="emp/password", **emp.model_dump())],
    )


def test_json_is_camel_case_and_round_trips():
    manifest = make_manifest()
    data = manifest.to_json()
    assert data["formatVersion"] == 1 and data["archiveFormat"] == "custom"
    assert {"createdAt", "completedAt", "pgDumpVersion", "pgServerVersion", "encryptorFingerprints"} <= set(data)
    assert data["databases"][0]["sizeBytes"] == 1234 and data["databases"][0]["rowCounts"] == {"public.accounts": 200}
    assert set(data["encryptorFingerprints"][0]) == {"secret", "algorithm", "n", "r", "p", "salt", "hash"}
    assert "signature" not in data
    assert Manifest.model_validate_json(json.dumps(data)) == manifest


def test_canonical_bytes_are_sorted_compact_and_leave_the_signature_out():
    manifest = make_manifest()
    canonical = manifest.canonical_bytes()
    assert canonical == json.dumps(json.loads(canonical), sort_keys=True, separators=(",", ":")).encode()
    assert sign_manifest(manifest, KEY).canonical_bytes() == canonical


def test_a_signed_manifest_verifies_with_its_key_only():
    signed = sign_manifest(make_manifest(), KEY)
    assert signed.signature.startswith("hmac-sha256:")
    assert signature_valid(signed, KEY)
    assert not signature_valid(signed, b"another key")
    assert not signature_valid(make_manifest(), KEY)  # unsigned


def test_any_change_breaks_the_signature():
    signed = sign_manifest(make_manifest(), KEY)
    tampered = signed.model_copy(deep=True)
    tampered.databases[0].sha256 = "cd" * 32
    assert not signature_valid(tampered, KEY)
    # Also after a trip through JSON, as the operator reads it back from S3.
    assert signature_valid(Manifest.model_validate_json(json.dumps(signed.to_json())), KEY)


def test_unknown_fields_and_versions_are_refused():
    data = make_manifest().to_json()
    with pytest.raises(ValidationError):
        Manifest.model_validate({**data, "extra": 1})
    with pytest.raises(ValidationError):
        Manifest.model_validate({**data, "formatVersion": 2})


def test_manifest_key():
    assert manifest_key("backups/vault/nightly-1a2b3c4d") == "backups/vault/nightly-1a2b3c4d/manifest.json"
    assert manifest_key("/backups/x/") == "backups/x/manifest.json"


# --- the origin signature -----------------------------------------------------------------------


def test_the_origin_signature_covers_the_same_bytes_as_the_hmac_and_keeps_it_valid():
    from walwarden.security import origin
    from walwarden.storage.manifest import origin_signer, sign_origin

    key = origin.generate_private_key()
    hmac_signed = sign_manifest(make_manifest(), KEY)
    signed = sign_origin(hmac_signed, key)
    assert signed.canonical_bytes() == make_manifest().canonical_bytes()
    assert signature_valid(signed, KEY)  # adding the origin leaves the Job's HMAC valid
    data = signed.to_json()
    assert data["origin"] == {"keyId": origin.key_id(key.public_key()), "signature": signed.origin.signature}
    read = Manifest.model_validate_json(json.dumps(data))
    trusted = origin.trusted_keys({"prod.pub": origin.public_key_pem(key.public_key())}, "ConfigMap vault/t")
    assert origin_signer(read, trusted, "ConfigMap vault/t").entry == "prod.pub"
    changed = read.model_copy(update={"pg_server_version": "16.0"})
    with pytest.raises(origin.OriginError, match="does not verify"):
        origin_signer(changed, trusted, "ConfigMap vault/t")


def test_a_manifest_without_origin_has_no_origin_key():
    assert "origin" not in make_manifest().to_json()


@pytest.mark.parametrize(
    "name", ["host=127.0.0.77 port=55432 sslmode=disable dbname=x", "postgresql://attacker.example/x", "x'y", ""]
)
def test_a_manifest_whose_database_name_is_not_an_identifier_is_refused(name):
    """A manifest comes from wherever an artifact URI points; its database name becomes pg_restore's
    -d and a database created on the target, so a connection string in it is refused on reading."""
    body = make_manifest().to_json()
    body["databases"][0]["name"] = name
    with pytest.raises(ValidationError):
        Manifest.model_validate_json(json.dumps(body))


def test_a_manifest_whose_role_name_holds_a_control_character_is_refused():
    body = make_manifest().to_json()
    body["roles"] = [{"name": "vault_app\n; DROP"}]
    with pytest.raises(ValidationError):
        Manifest.model_validate_json(json.dumps(body))
