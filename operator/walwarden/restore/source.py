"""The backup being restored: its manifest, checked against the BackupRequest that proved it, or,
restored by artifact URI, against the keys this environment trusts to sign its origin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from walwarden.api import BackupPhase, BackupRequest, OriginStatus, S3Storage
from walwarden.api import backup as backup_api
from walwarden.api.common import GROUP, VERSION
from walwarden.kube.api import call
from walwarden.kube.secrets import read_secret
from walwarden.restore.origin import check_origin
from walwarden.restore.run import RestoreRun
from walwarden.storage import audit
from walwarden.storage import manifest as manifests
from walwarden.storage import s3 as storage
from walwarden.workflow.engine import StepFailed, Wait
from walwarden.workflow.steps import require_storage_allowed, s3_client


@dataclass(frozen=True)
class Source:
    label: str  # what approval tokens bind: the BackupRequest name or the s3:// URI
    storage: S3Storage
    bucket: str
    prefix: str
    manifest: manifests.Manifest
    dump: manifests.DatabaseDump
    backup_secret: str | None  # the backup's admin Secret: InPlace's default target
    origin: OriginStatus | None = None  # by artifact URI with trusted keys: the key that signed it

    @property
    def taken_at(self) -> str:
        return self.manifest.created_at


def source_of(run: RestoreRun) -> Source:
    """The backup being restored, looked up once per pass."""
    if run.resolved_source is None:
        run.resolved_source = _resolve(run)
    return run.resolved_source


def read_backup(run: RestoreRun, name: str) -> BackupRequest | None:
    found = call(run.kube.custom.get_namespaced_custom_object, GROUP, VERSION, run.namespace, backup_api.PLURAL, name)
    return None if found is None else BackupRequest.model_validate(found)


def _resolve(run: RestoreRun) -> Source:
    spec = run.spec
    backup: BackupRequest | None = None
    if spec.source.backup_ref:
        name = spec.source.backup_ref.name
        backup = read_backup(run, name)
        if backup is None:
            raise StepFailed(
                "SourceNotFound",
                f"BackupRequest {run.namespace}/{name} does not exist: spec.source.backupRef names a "
                f"BackupRequest of the restore's own namespace ({run.namespace}). To restore a backup taken "
                "in another namespace or cluster, set spec.source.artifact to its artifact URI (that "
                "BackupRequest's status.artifact.uri) with spec.storage, and spec.source.trustedKeys to check "
                "its origin signature",
            )
        phase = backup.status.phase if backup.status else None
        if phase == BackupPhase.FAILED:
            raise StepFailed("SourceFailed", f"BackupRequest {name} failed; only a Succeeded backup can be restored")
        if phase != BackupPhase.SUCCEEDED or backup.status is None or backup.status.artifact is None:
            # Applied together (GitOps): wait for the backup to finish.
            raise Wait(
                f"waiting for BackupRequest {name} to succeed (it is {phase or 'not started'})", delay=run.poll_seconds
            )
        storage_spec = backup.spec.storage.s3
        bucket, manifest_key = storage.parse_s3_uri(backup.status.artifact.manifest_uri)
        label, backup_secret = name, backup.spec.database.secret_ref.name
    else:
        assert spec.storage is not None and spec.source.artifact is not None  # the CRD's rules
        storage_spec = spec.storage.s3
        bucket, key = storage.parse_s3_uri(spec.source.artifact)
        manifest_key = manifests.manifest_key(key.rpartition("/")[0])
        label, backup_secret = spec.source.artifact, None
    where = "the backup's spec.storage.s3" if backup is not None else "spec.storage.s3"
    folder = manifest_key.rpartition("/")[0]  # the artifact's own place, whatever prefix the spec says
    require_storage_allowed(run, storage_spec.model_copy(update={"bucket": bucket, "prefix": folder}), where)
    client = s3_client(run, storage_spec)  # its refusals are the request's, before any read
    try:
        manifest = manifests.read_manifest(client, bucket, manifest_key)
    except manifests.ManifestTooLarge as error:
        raise StepFailed(
            "ManifestTooLarge",
            f"{error}: no Walwarden manifest is that large, so this is not the backup's manifest; "
            "it was not read further and nothing was touched. Check what was written at that key",
        ) from None
    except ValidationError as error:  # read, but not a manifest this reader trusts with a name or a key
        raise StepFailed(
            "ManifestInvalid",
            f"the manifest {storage.s3_uri(bucket, manifest_key)} is not a valid Walwarden manifest "
            f"({_first_problems(error)}); it names what becomes a database, a command line and a connection, "
            "so it is not restored. Nothing was touched",
        ) from None
    except Exception as error:  # absent or unreadable: either way the artifact cannot be verified
        raise StepFailed(
            "ManifestMissing",
            f"the manifest {storage.s3_uri(bucket, manifest_key)} cannot be read "
            f"({type(error).__name__}); without it the artifact cannot be "
            "verified, so it is not restored",
        ) from None
    dump = _dump_to_restore(run, manifest, bucket)
    found_origin = None
    if backup is not None:
        check_manifest_is_the_backups(run, backup, manifest, dump)
    else:
        found_origin = check_origin(run, manifest)
    prefix = manifest_key.rpartition("/")[0]
    return Source(label, storage_spec, bucket, prefix, manifest, dump, backup_secret, found_origin)


def _first_problems(error: ValidationError, shown: int = 3) -> str:
    """Where and what, without the offending values (they are the manifest writer's, of any size)."""
    problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_input=False)]
    more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    return "; ".join(problems[:shown]) + more


def _dump_to_restore(run: RestoreRun, manifest: manifests.Manifest, bucket: str) -> manifests.DatabaseDump:
    spec = run.spec
    if spec.source.artifact:
        dump = next((e for e in manifest.databases if storage.s3_uri(bucket, e.key) == spec.source.artifact), None)
        if dump is None:
            raise StepFailed("ArtifactNotInManifest", f"{spec.source.artifact} is not listed in its manifest")
        return dump
    if spec.is_drill:  # spec.target.database is the scratch database's name, not the backup's
        wanted = spec.drill_settings.database
        found = next((e for e in manifest.databases if e.name == wanted), None if wanted else manifest.databases[0])
        if found is None:
            names = ", ".join(e.name for e in manifest.databases)
            raise StepFailed(
                "DatabaseNotInBackup", f"spec.drill.database {wanted} is not in the backup (it has {names})"
            )
        return found
    wanted = spec.target.database if spec.target else None
    return next((e for e in manifest.databases if e.name == wanted), manifest.databases[0])


def check_manifest_is_the_backups(
    run: RestoreRun, backup: BackupRequest, manifest: manifests.Manifest, dump: manifests.DatabaseDump
) -> None:
    """The manifest in S3 must still be the one the BackupRequest proved: signed with its key (while
    that Secret lives) and with the sha256 and size it recorded. Otherwise someone rewrote the
    artifact *and* its manifest, and the checksum checks against the manifest would prove nothing."""
    name, uid = backup.name, str(backup.metadata.get("uid", ""))
    key = (read_secret(run.kube, run.namespace, backup_api.signing_key_secret_name(name, uid)) or {}).get("key")
    if key and not manifests.signature_valid(manifest, key.encode()):
        raise StepFailed(
            "ManifestNotSigned",
            f"the manifest of BackupRequest {name} in S3 is no longer the one its "
            "Job signed: the backup was replaced; do not restore it. Nothing was "
            "touched",
        )
    artifact = backup.status.artifact if backup.status else None
    recorded = next((f for f in artifact.files if f.database == dump.name), None) if artifact else None
    if recorded and (recorded.sha256, recorded.size_bytes) != (dump.sha256, dump.size_bytes):
        raise StepFailed(
            "ManifestChanged",
            f"the manifest of BackupRequest {name} in S3 describes another "
            f"{dump.name} dump (sha256 {dump.sha256[:12]}…) than the backup recorded "
            f"({recorded.sha256[:12]}…): the backup was replaced; do not restore "
            "it. Nothing was touched",
        )


def audit_location(run: RestoreRun) -> tuple[Any, str, str] | None:
    """Where this restore's transitions are logged: beside the artifact it restores."""
    try:
        found = source_of(run)
    except (StepFailed, Wait):
        return None  # no artifact to log beside (yet); the Events and status still record it
    return s3_client(run, found.storage), found.bucket, audit.audit_key(found.prefix)
