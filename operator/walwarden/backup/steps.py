"""The backup's steps (their order is backup/table.py's)."""

from __future__ import annotations

import secrets
from typing import Any

from walwarden.api import BackupArtifact, BackupFile
from walwarden.api.common import ADMIN_SECRET_KEYS, human_size
from walwarden.backup import job as backup_job
from walwarden.backup import origin
from walwarden.backup.run import BackupRun
from walwarden.kube import jobs, runner_job
from walwarden.kube.jobs import JobState
from walwarden.kube.secrets import read_secret
from walwarden.storage import audit
from walwarden.storage import manifest as manifests
from walwarden.storage import s3 as storage
from walwarden.workflow import gitops, tiers
from walwarden.workflow.engine import Skip, StepFailed, UndoCause, Wait
from walwarden.workflow.steps import (
    ensure_own_secret,
    require_secret_keys,
    require_storage_allowed,
    s3_client,
    topology_of,
)

S3_SECRET_KEYS = ("accessKeyId", "secretAccessKey")


def validate(run: BackupRun) -> str:
    spec = run.spec
    require_secret_keys(run, spec.database.secret_ref.name, ADMIN_SECRET_KEYS, "the database admin connection")
    credentials = spec.storage.s3.credentials_secret_ref
    if credentials:
        require_secret_keys(run, credentials.name, S3_SECRET_KEYS, "the object-store credentials")
    for emp in spec.encryptor_secrets:
        require_secret_keys(run, emp.name, (emp.key,), "an Encryptor Master Password")
    require_storage_allowed(run, spec.storage.s3, "spec.storage.s3")  # where the vault's dump would go
    signer = origin.signing_key_id(run)  # a key named but unusable fails here, before the dump
    if spec.storage.s3.object_lock:
        require_object_lock(run)
    if spec.quiesce:
        missing = tiers.missing_services(run.kube, run.namespace, topology_of(run))
        if missing:
            raise StepFailed(
                "ServiceNotFound",
                f"quiesce needs the services {', '.join(missing)}, which this "
                "namespace does not have; fix spec.topology or set quiesce: false",
            )
        gitops.check_gitops_leaves_replicas_alone(run.kube, run.namespace, topology_of(run))
    signing = f"; the manifest's origin will be signed by {signer}" if signer else ""
    return "Secrets" + (" and services" if spec.quiesce else "") + " checked" + signing


def require_object_lock(run: BackupRun) -> None:
    """spec.storage.s3.objectLock asks for locked objects: S3 can lock them only in a bucket created
    with Object Lock, and would otherwise refuse the dump's upload at its very end."""
    bucket = run.spec.storage.s3.bucket
    try:
        enabled = storage.object_lock_enabled(s3_client(run, run.spec.storage.s3), bucket)
    except Exception as error:  # no rights to read the configuration, bucket missing, S3 down
        raise StepFailed(
            "ObjectLockUnknown",
            f"cannot read the Object Lock configuration of bucket {bucket} ({type(error).__name__}: {error}): the "
            "credentials need s3:GetBucketObjectLockConfiguration, or remove spec.storage.s3.objectLock",
        ) from None
    if not enabled:
        raise StepFailed(
            "ObjectLockNotEnabled",
            f"bucket {bucket} was not created with S3 Object Lock, so its objects cannot be locked: use a bucket "
            "created with Object Lock enabled (it cannot be turned on later on every S3 server), or remove "
            "spec.storage.s3.objectLock",
        )


def quiesce(run: BackupRun) -> str:
    if not run.spec.quiesce:
        raise Skip("spec.quiesce is false: services keep running during the dump")
    return tiers.stop_in_order(
        run, run.kube, run.namespace, topology_of(run), run.poll_seconds, stuck_after=run.settings.stop_timeout_seconds
    )


def dump(run: BackupRun) -> str:
    # A per-request HMAC key: the runner signs the manifest with it, VerifyArtifact checks it.
    ensure_own_secret(
        run,
        backup_job.result_key_secret_name(run.name, run.uid),
        {backup_job.RESULT_KEY_SECRET_KEY: secrets.token_hex(32)},
        labels={runner_job.REQUEST_LABEL: run.name},
    )
    manifest = backup_job.backup_job(
        spec=run.spec,
        namespace=run.namespace,
        name=run.name,
        uid=run.uid,
        owner=run.owner,
        config=run.settings,
        created_at=run.created,
    )
    job_name = manifest["metadata"]["name"]
    if run.spec.quiesce:  # before the dump starts, on every look while it runs, and once it ended
        tiers.check_still_stopped(run, run.kube, run.namespace, topology_of(run), doing="the quiesced backup")
    jobs.ensure_job(run.kube, run.namespace, manifest)
    run.status.job_name = job_name
    outcome = jobs.job_outcome(run.kube, run.namespace, job_name, run.uid)
    if outcome is None or outcome.state == JobState.RUNNING:
        raise Wait(f"Job {job_name} is dumping {', '.join(run.spec.database.databases)} to S3", delay=run.poll_seconds)
    if outcome.state == JobState.FAILED:
        raise StepFailed(outcome.reason, f"the backup Job {job_name} failed: {outcome.message}")
    return f"Job {job_name} finished"


def verify_artifact(run: BackupRun) -> str:
    """A Job that "completed" proves nothing by itself: what is in S3 is checked."""
    spec = run.spec
    bucket = spec.storage.s3.bucket
    client = s3_client(run, spec.storage.s3)
    manifest_key = manifests.manifest_key(backup_job.artifact_prefix(spec, run.namespace, run.name, run.uid))
    try:
        manifest = manifests.read_manifest(client, bucket, manifest_key)
    except manifests.ManifestTooLarge as error:
        raise StepFailed(
            "ManifestTooLarge",
            f"the Job finished but {error}: no manifest this Job writes is that large, so it was not "
            "read further; the backup is not usable",
        ) from None
    except Exception as error:  # absent or unreadable: either way the backup is not proven
        raise StepFailed(
            "ManifestMissing",
            f"the Job finished but {storage.s3_uri(bucket, manifest_key)} "
            f"cannot be read ({type(error).__name__}); the backup is not usable",
        ) from None
    key_secret = read_secret(run.kube, run.namespace, backup_job.result_key_secret_name(run.name, run.uid)) or {}
    key = key_secret.get(backup_job.RESULT_KEY_SECRET_KEY)
    if not key or not manifests.signature_valid(manifest, key.encode()):
        raise StepFailed(
            "ManifestNotSigned", "the manifest in S3 is not the one this request's Job signed; do not use this artifact"
        )
    manifest = origin.sign_manifest_origin(run, client, bucket, manifest_key, manifest)
    dumped = [entry.name for entry in manifest.databases]
    if sorted(dumped) != sorted(spec.database.databases):
        raise StepFailed(
            "ArtifactIncomplete", f"the manifest lists {dumped}, the request asked for {spec.database.databases}"
        )
    for entry in manifest.databases:
        size = storage.object_size(client, bucket, entry.key)
        if size != entry.size_bytes:
            raise StepFailed(
                "ArtifactSizeMismatch",
                f"{entry.uri} is {size} bytes in S3 but the manifest says {entry.size_bytes}; the upload is incomplete",
            )
    first = manifest.databases[0]
    total_bytes = sum(entry.size_bytes for entry in manifest.databases)
    run.status.artifact = BackupArtifact(
        uri=first.uri,
        manifest_uri=storage.s3_uri(bucket, manifest_key),
        sha256=first.sha256,
        size_bytes=total_bytes,
        size=human_size(total_bytes),
        pg_server_version=manifest.pg_server_version,
        pg_dump_version=manifest.pg_dump_version,
        databases=dumped,
        completed_at=manifest.completed_at,
        origin_key_id=manifest.origin.key_id if manifest.origin else None,
        files=[
            BackupFile(database=e.name, uri=e.uri, sha256=e.sha256, size_bytes=e.size_bytes) for e in manifest.databases
        ],
    )
    signed = f"; origin signed by {manifest.origin.key_id}" if manifest.origin else ""
    return f"{len(dumped)} dump(s) verified in S3 against the signed manifest (sha256 {first.sha256[:12]}…){signed}"


def resume(run: BackupRun) -> str:
    if not run.spec.quiesce:
        raise Skip("nothing was stopped")
    return tiers.start_in_order(
        run, run.kube, run.namespace, topology_of(run), run.poll_seconds, loud_after=run.settings.stop_timeout_seconds
    )


def start_quiesced_services(run: BackupRun, cause: UndoCause) -> str | None:
    """Quiesce's undo (a deletion mid-flight; on a failure the Resume clean-up step does it)."""
    if not run.status.original_replicas:
        return None
    tiers.start_in_order(run, run.kube, run.namespace, topology_of(run), run.poll_seconds)
    return "the services it had stopped were started again with their original replica counts"


def audit_location(run: BackupRun) -> tuple[Any, str, str]:
    """Where this backup's transitions are logged: beside its artifact."""
    s3 = run.spec.storage.s3
    prefix = backup_job.artifact_prefix(run.spec, run.namespace, run.name, run.uid)
    return s3_client(run, s3), s3.bucket, audit.audit_key(prefix)
