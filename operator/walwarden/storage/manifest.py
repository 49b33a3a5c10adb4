"""The manifest written beside every backup (DESIGN §4): what the artifact is and how to trust it.

`<prefix>/manifest.json` is written last, after every dump's upload has completed: a prefix
without a manifest holds no finished backup. When the runner is given a result key it signs the
manifest (HMAC-SHA256 over `canonical_bytes()`), so the operator can tell the manifest its own
Job wrote from any other object at that key.

With an origin signing key the operator then adds `origin` (security/origin.py): an Ed25519
signature over the same canonical bytes and the id of its key, which another environment checks
against the public keys it trusts. Neither signature covers the other: the HMAC is the Job's,
written first; the origin is the operator's, added after it checked the HMAC.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from walwarden.api.common import PgIdentifier
from walwarden.api.roles import DatabaseRole
from walwarden.security import origin, signing
from walwarden.security.fingerprints import EncryptorFingerprint
from walwarden.storage import bounded
from walwarden.storage import s3 as storage

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
# A real manifest is a few KiB (a table's row count is one line). Whoever can write to the bucket,
# or name an artifact in a RestoreRequest, chooses what is read here: 1 MiB leaves room for
# thousands of tables and keeps a forged manifest from taking the operator's memory.
MAX_MANIFEST_BYTES = 2**20


class ManifestTooLarge(bounded.TooLarge):
    """The object at the manifest's key is larger than any manifest Walwarden writes."""


class _ManifestModel(BaseModel):
    # camelCase in the JSON, snake_case in Python; unknown keys are errors, since a field this
    # reader does not know would be left out of the signed canonical bytes without anyone noticing.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class BackupIdentity(_ManifestModel):
    """The BackupRequest that asked for this backup (empty when run by hand)."""

    namespace: str = ""
    name: str = ""
    uid: str = ""


class DatabaseDump(_ManifestModel):
    # A manifest may come from anywhere a requester can point an artifact URI: its database name
    # becomes a database created on the target and pg_restore's -d, so it is an identifier first
    # (a name with `=` or a space would otherwise be read by libpq as a connection string).
    name: PgIdentifier
    key: str = Field(description="object key of the dump")
    uri: str = Field(description="s3://bucket/key of the dump")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    row_counts: dict[str, int] = Field(
        default_factory=dict, description='exact rows per "schema.table", in the dump\'s snapshot'
    )


class EncryptorEntry(EncryptorFingerprint):
    """The fingerprint of one EMP secret, named "<secretName>/<key>"."""

    secret: str


class OriginSignature(_ManifestModel):
    """Who vouches for this manifest across environments: an Ed25519 signature and its key's id."""

    key_id: str = Field(
        pattern=r"^ed25519:[0-9a-f]{16}$", description="ed25519:<16 hex digits of the public key's SHA-256>"
    )
    signature: str = Field(
        pattern=r"^ed25519:[A-Za-z0-9+/=]+$", description='"ed25519:<base64>" over canonical_bytes()'
    )


class Manifest(_ManifestModel):
    format_version: Literal[1] = 1  # FORMAT_VERSION
    created_at: str = Field(
        description="RFC 3339: when the backup started, just before the first snapshot; "
        "a data-loss window counted from it is never too short"
    )
    completed_at: str = Field(description="RFC 3339: when the last dump's upload completed")
    backup: BackupIdentity = Field(default_factory=BackupIdentity)
    pg_dump_version: str
    pg_server_version: str
    archive_format: Literal["custom"] = "custom"
    databases: list[DatabaseDump]
    encryptor_fingerprints: list[EncryptorEntry] = Field(default_factory=list)
    roles: list[DatabaseRole] | None = Field(
        None,
        description="the roles the databases need (postgres/roles.py), without passwords; "
        "None (left out of the signed bytes): a manifest written before roles were recorded",
    )
    signature: str | None = Field(None, description='"hmac-sha256:<hex>" over canonical_bytes()')
    origin: OriginSignature | None = Field(None, description="the origin signature over canonical_bytes()")

    def to_json(self) -> dict:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def canonical_bytes(self) -> bytes:
        """What both signatures cover: every field but the two signatures, as sorted-key compact JSON."""
        content = self.to_json()
        content.pop("signature", None)
        content.pop("origin", None)
        return signing.canonical_json(content)


def manifest_key(prefix: str) -> str:
    return f"{prefix.strip('/')}/{MANIFEST_NAME}"


def sign_manifest(manifest: Manifest, key: bytes) -> Manifest:
    return manifest.model_copy(update={"signature": signing.sign(key, manifest.canonical_bytes())})


def signature_valid(manifest: Manifest, key: bytes) -> bool:
    return signing.verify(key, manifest.canonical_bytes(), manifest.signature)


def sign_origin(manifest: Manifest, key: origin.Ed25519PrivateKey) -> Manifest:
    signed = origin.sign(key, manifest.canonical_bytes())
    return manifest.model_copy(update={"origin": OriginSignature(key_id=signed.key_id, signature=signed.signature)})


def origin_signer(manifest: Manifest, trusted: list[origin.TrustedKey], where: str) -> origin.TrustedKey:
    """The trusted key that signed the manifest's origin; origin.OriginError otherwise."""
    found = manifest.origin
    signature = origin.Signature(found.key_id, found.signature) if found else None
    return origin.check_origin(manifest.canonical_bytes(), signature, trusted, where)


def write_manifest(s3_client, bucket: str, key: str, manifest: Manifest, lock: storage.Lock | None = None) -> None:
    body = json.dumps(manifest.to_json(), indent=2, sort_keys=False).encode() + b"\n"
    s3_client.put_object(
        Bucket=bucket, Key=key, Body=body, ContentType="application/json", **storage.lock_arguments(lock)
    )


def read_manifest(s3_client, bucket: str, key: str) -> Manifest:
    """The manifest at `key`; ManifestTooLarge (read no further) over MAX_MANIFEST_BYTES."""
    where = f"the manifest {storage.s3_uri(bucket, key)}"
    body, _ = bounded.read_object(s3_client, bucket, key, MAX_MANIFEST_BYTES, where, too_large=ManifestTooLarge)
    return Manifest.model_validate_json(body)
