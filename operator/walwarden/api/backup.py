"""BackupRequest: dump the vault's databases to S3, with a manifest beside the artifact (DESIGN §2)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field

from walwarden.api.common import (
    AGE_COLUMN,
    IMMUTABLE_SPEC,
    CrdInfo,
    DatabaseConnection,
    EncryptorSecretRef,
    OriginSigningKeyRef,
    PgIdentifier,
    PrinterColumn,
    RequestStatus,
    ResourceModel,
    SpecModel,
    StatusModel,
    Storage,
    Timestamp,
    Topology,
    cel_validations,
    short_uid,
)

KIND = "BackupRequest"
PLURAL = "backuprequests"
SINGULAR = "backuprequest"
SHORT_NAMES = ("wwbackup", "bkreq")


class BackupPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class BackupStep(StrEnum):
    """The steps of a backup, as status.steps names them; their order is backup/table.py's."""

    VALIDATE = "Validate"
    ACQUIRE_LOCK = "AcquireLock"
    QUIESCE = "Quiesce"
    DUMP = "Dump"
    VERIFY_ARTIFACT = "VerifyArtifact"
    RESUME = "Resume"
    RELEASE_LOCK = "ReleaseLock"


class BackupRequestSpec(SpecModel):
    """What to dump, where to put it, and how."""

    model_config = ConfigDict(json_schema_extra=cel_validations(IMMUTABLE_SPEC))

    database: DatabaseConnection = Field(description="The database server to dump and the databases to dump from it.")
    storage: Storage = Field(description="Where the artifact and its manifest are written.")
    encryptor_secrets: list[EncryptorSecretRef] = Field(
        default=[],
        max_length=16,
        description=(
            "The Encryptor Master Password (EMP) Secrets of this environment. Their fingerprints "
            "go into the manifest, so a restore can refuse a target whose EMP differs."
        ),
    )
    quiesce: bool = Field(
        False,
        description=(
            "Stop the services (stop order) for a cross-service consistent dump, then start them "
            "again. Costs downtime; without it each database is dumped from one consistent snapshot."
        ),
    )
    topology: Topology | None = Field(
        None,
        description="Overrides the built-in service topology (used by quiesce). Unset: the default profile.",
    )
    origin_signing_key: OriginSigningKeyRef | None = Field(
        None,
        description=(
            "A Secret with an Ed25519 private key that signs the manifest's origin, so a restore in another "
            "namespace or cluster that trusts its public key can prove where the artifact came from. Unset: "
            "the operator's key (WALWARDEN_ORIGIN_SIGNING_KEY_SECRET) if it has one, else no origin signature."
        ),
    )
    active_deadline_seconds: int = Field(
        3600,
        ge=60,
        le=604800,
        description="The backup fails when it has not finished within this many seconds.",
    )


class BackupFile(StatusModel):
    """One database's dump in a backup."""

    database: PgIdentifier = Field(description="The database dumped.")
    uri: str = Field(description="s3:// URI of the dump (pg_dump custom format).")
    sha256: str = Field(pattern=r"^[a-f0-9]{64}$", description="SHA-256 of the dump's bytes, hex.")
    size_bytes: int = Field(ge=0, json_schema_extra={"format": "int64"}, description="Size in bytes.")


class BackupArtifact(StatusModel):
    """A finished backup in object storage. With several databases, uri, sha256 and sizeBytes
    describe the first one's dump and `files` lists them all."""

    uri: str = Field(description="s3:// URI of the artifact (a pg_dump custom-format archive).")
    manifest_uri: str = Field(description="s3:// URI of the manifest written beside the artifact.")
    sha256: str = Field(pattern=r"^[a-f0-9]{64}$", description="SHA-256 of the artifact's bytes, hex.")
    size_bytes: int = Field(ge=0, json_schema_extra={"format": "int64"}, description="Size of the artifact in bytes.")
    size: str | None = Field(None, description="Size of the artifact as people read it (2.3 GiB).")
    pg_server_version: str | None = Field(None, description="Version of the PostgreSQL server that was dumped.")
    pg_dump_version: str | None = Field(None, description="Version of pg_dump that wrote the artifact.")
    databases: list[PgIdentifier] = Field(default_factory=list, description="Databases in the artifact.")
    files: list[BackupFile] = Field(default_factory=list, description="Every database's dump.")
    completed_at: Timestamp | None = Field(None, description="When the artifact was complete (RFC 3339).")
    origin_key_id: str | None = Field(
        None, description="Id of the Ed25519 key that signed the manifest's origin (ed25519:<hex>), when signed."
    )


class BackupRequestStatus(RequestStatus):
    """What the operator observed and did; written by the operator only."""

    phase: BackupPhase | None = Field(None, description="Pending, Running, Succeeded or Failed.")
    job_name: str | None = Field(None, description="Name of the Job that runs the dump.")
    artifact: BackupArtifact | None = Field(None, description="The artifact, once the backup has succeeded.")

    def _set_phase(self, phase: str) -> None:
        # A backup has nothing to roll back: a failed one that put the services back is Failed.
        self.phase = BackupPhase.FAILED if phase == "RolledBack" else BackupPhase(phase)


def signing_key_secret_name(name: str, uid: str) -> str:
    """The Secret holding a BackupRequest's per-request HMAC key, which signs its manifest."""
    return f"{name[:40]}-walwarden-{short_uid(uid)}"


def artifact_prefix(storage_prefix: str, namespace: str, name: str, uid: str) -> str:
    """The object-key folder of one backup: <storage prefix>/<namespace>/<name>-<uid8>."""
    parts = [storage_prefix.strip("/"), namespace, f"{name}-{short_uid(uid)}"]
    return "/".join(part for part in parts if part)


class BackupRequest(ResourceModel):
    """A one-shot request to back up the vault's PostgreSQL databases to S3."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind=KIND,
        plural=PLURAL,
        singular=SINGULAR,
        short_names=SHORT_NAMES,
        description=(
            "BackupRequest dumps the Institutional Vault's PostgreSQL databases to S3, with a "
            "manifest (checksum, versions, EMP fingerprints) beside the artifact. One-shot: the "
            "spec is immutable and a finished request never runs again."
        ),
        printer_columns=(
            PrinterColumn("Phase", ".status.phase", description="Pending, Running, Succeeded or Failed."),
            PrinterColumn("Quiesce", ".spec.quiesce", "boolean", "Services stopped during the dump."),
            PrinterColumn("Step", ".status.currentStep", description="The step running now."),
            PrinterColumn("Size", ".status.artifact.size", description="Artifact size (binary units)."),
            PrinterColumn(
                "Bytes", ".status.artifact.sizeBytes", "integer", "Artifact size in bytes.", priority=1, format="int64"
            ),
            PrinterColumn("Duration", ".status.durationSeconds", "number", "Seconds from start to finish."),
            PrinterColumn("Message", ".status.message", description="Current state.", priority=1),
            AGE_COLUMN,
        ),
    )

    kind: Literal["BackupRequest"] = Field("BackupRequest", description="BackupRequest.")
    spec: BackupRequestSpec = Field(description="What to back up and where to.")
    status: BackupRequestStatus | None = Field(None, description="Progress and result, written by the operator.")
