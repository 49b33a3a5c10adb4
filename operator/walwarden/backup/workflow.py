"""The BackupRequest workflow: one ordered table of steps, read top to bottom.

    Validate        the spec's Secrets (and services, for quiesce) exist
    AcquireLock     one backup or restore at a time per namespace (others wait, visibly)
    Quiesce         optional: stop the services in stop order, recording their replica counts
    Dump            the runner Job streams pg_dump into S3 and writes the manifest beside it
    VerifyArtifact  the manifest is the one our Job signed, and every dump's size in S3 matches
    Resume          always: start stopped services in start order with their original counts
    ReleaseLock     always: let the next request in the namespace run

A Job that "completed" proves nothing by itself: VerifyArtifact checks what is in S3.
"""

from __future__ import annotations

import secrets

from walwarden.api import BackupRequestSpec
from walwarden.backup import job as backup_job
from walwarden.workflow.steps import acquire_lock, meta, release_lock, require_secret_keys, s3_client, topology_of
from walwarden.workflow.engine import Run, Skip, Step, StepFailed, Wait
from walwarden.kube import jobs
from walwarden.kube import runner_job
from walwarden.kube.api import owner_reference
from walwarden.kube.secrets import ensure_secret, read_secret
from walwarden.storage import audit
from walwarden.storage import manifest as manifests
from walwarden.storage import s3 as storage
from walwarden.workflow import tiers

DB_SECRET_KEYS = ("host", "port", "user", "password")
S3_SECRET_KEYS = ("accessKeyId", "secretAccessKey")


def _spec(run: Run) -> BackupRequestSpec:
    return run.spec


def validate(run: Run) -> str:
    spec = _spec(run)
    require_secret_keys(run, spec.database.secret_ref.name, DB_SECRET_KEYS, "the database admin connection")
    credentials = spec.storage.s3.credentials_secret_ref
    if credentials:
        require_secret_keys(run, credentials.name, S3_SECRET_KEYS, "the object-store credentials")
    for emp in spec.encryptor_secrets:
        require_secret_keys(run, emp.name, (emp.key,), "an Encryptor Master Password")
    if spec.quiesce:
        missing = tiers.missing_services(run.context.kube, meta(run)[0], topology_of(run))
        if missing:
            raise StepFailed("ServiceNotFound", f"quiesce needs the services {', '.join(missing)}, which this "
                                                "namespace does not have; fix spec.topology or set quiesce: false")
    return "Secrets" + (" and services" if spec.quiesce else "") + " checked"


def quiesce(run: Run) -> str:
    spec = _spec(run)
    if not spec.quiesce:
        raise Skip("spec.quiesce is false: services keep running during the dump")
    return tiers.stop_in_order(run, run.context.kube, meta(run)[0], topology_of(run),
                               run.context.config.poll_seconds, stuck_after=run.context.config.stop_timeout_seconds)


def dump(run: Run) -> str:
    namespace, name, uid = meta(run)
    kube, config = run.context.kube, run.context.config
    owner = owner_reference(run.body)
    # A per-request HMAC key: the runner signs the manifest with it, VerifyArtifact checks it.
    ensure_secret(kube, namespace, backup_job.result_key_secret_name(name, uid),
                  {"key": secrets.token_hex(32)}, owner, labels={runner_job.REQUEST_LABEL: name})
    manifest = backup_job.backup_job(spec=_spec(run), namespace=namespace, name=name, uid=uid, owner=owner,
                                     config=config)
    job_name = manifest["metadata"]["name"]
    jobs.ensure_job(kube, namespace, manifest)
    run.status["jobName"] = job_name
    outcome = jobs.job_outcome(kube, namespace, job_name)
    if outcome is None or outcome.state == "Running":
        raise Wait(f"Job {job_name} is dumping {', '.join(_spec(run).database.databases)} to S3",
                   delay=config.poll_seconds)
    if outcome.state == "Failed":
        raise StepFailed(outcome.reason, f"the backup Job {job_name} failed: {outcome.message}")
    return f"Job {job_name} finished"


def verify_artifact(run: Run) -> str:
    namespace, name, uid = meta(run)
    spec = _spec(run)
    bucket = spec.storage.s3.bucket
    prefix = backup_job.artifact_prefix(spec, namespace, name, uid)
    client = s3_client(run, spec.storage.s3)
    manifest_key = manifests.manifest_key(prefix)
    try:
        manifest = manifests.read_manifest(client, bucket, manifest_key)
    except Exception as error:  # absent or unreadable: either way the backup is not proven
        raise StepFailed("ManifestMissing", f"the Job finished but {storage.s3_uri(bucket, manifest_key)} "
                                            f"cannot be read ({type(error).__name__}); the backup is not usable")
    key = (read_secret(run.context.kube, namespace, backup_job.result_key_secret_name(name, uid)) or {}).get("key")
    if not key or not manifests.signature_valid(manifest, key.encode()):
        raise StepFailed("ManifestNotSigned", "the manifest in S3 is not the one this request's Job signed; "
                                              "do not use this artifact")
    dumped = [entry.name for entry in manifest.databases]
    if sorted(dumped) != sorted(spec.database.databases):
        raise StepFailed("ArtifactIncomplete", f"the manifest lists {dumped}, the request asked for "
                                               f"{spec.database.databases}")
    for entry in manifest.databases:
        size = storage.object_size(client, bucket, entry.key)
        if size != entry.size_bytes:
            raise StepFailed("ArtifactSizeMismatch", f"{entry.uri} is {size} bytes in S3 but the manifest says "
                                                     f"{entry.size_bytes}; the upload is incomplete")
    first = manifest.databases[0]
    run.status["artifact"] = {
        "uri": first.uri, "manifestUri": storage.s3_uri(bucket, manifest_key), "sha256": first.sha256,
        "sizeBytes": sum(entry.size_bytes for entry in manifest.databases),
        "pgServerVersion": manifest.pg_server_version, "pgDumpVersion": manifest.pg_dump_version,
        "databases": dumped, "completedAt": manifest.completed_at,
        "files": [{"database": e.name, "uri": e.uri, "sha256": e.sha256, "sizeBytes": e.size_bytes}
                  for e in manifest.databases],
    }
    return f"{len(dumped)} dump(s) verified in S3 against the signed manifest (sha256 {first.sha256[:12]}…)"


def resume(run: Run) -> str:
    spec = _spec(run)
    if not spec.quiesce:
        raise Skip("nothing was stopped")
    return tiers.start_in_order(run, run.context.kube, meta(run)[0], topology_of(run),
                                run.context.config.poll_seconds, loud_after=run.context.config.stop_timeout_seconds)


BACKUP_STEPS = [
    Step("Validate", validate),
    Step("AcquireLock", acquire_lock),
    Step("Quiesce", quiesce),
    Step("Dump", dump),
    Step("VerifyArtifact", verify_artifact),
    Step("Resume", resume, always=True),
    Step("ReleaseLock", release_lock, always=True),
]


def audit_location(run: Run):
    """Where this backup's transitions are logged: beside its artifact."""
    spec = _spec(run)
    namespace, name, uid = meta(run)
    prefix = backup_job.artifact_prefix(spec, namespace, name, uid)
    return s3_client(run, spec.storage.s3), spec.storage.s3.bucket, audit.audit_key(prefix)
