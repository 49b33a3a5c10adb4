"""What every restore step needs: the request's spec and settings, the backup being restored
(its manifest checked against the BackupRequest that proved it), the target, and the runner Jobs'
presigned-URL Secrets."""

from __future__ import annotations

from dataclasses import dataclass

from walwarden.api import RestoreRequestSpec, S3Storage, SecretBackend, Topology
from walwarden.api.common import GROUP, VERSION
from walwarden.backup.job import result_key_secret_name
from walwarden.workflow.steps import meta, require_secret_keys, s3_client, topology_of
from walwarden.workflow.engine import Run, Skip, StepFailed, Wait
from walwarden.kube import jobs
from walwarden.kube.api import call, owner_reference
from walwarden.kube.secrets import read_secret
from walwarden.restore import job as restore_jobs
from walwarden.storage import manifest as manifests
from walwarden.storage import s3 as storage


DB_SECRET_KEYS = ("host", "port", "user", "password")
DB_INFO_KEYS = ("DB_HOST", "DB_PORT", "DB_NAME")
PRESIGNED_URL_SECONDS = 15 * 60
USED_TOKENS_CONFIGMAP = "walwarden-approvals"
RECONNECT_GRACE_SECONDS = 30  # after the first termination, how long reconnecting clients are tolerated


def spec_of(run: Run) -> RestoreRequestSpec:
    return run.spec


def topology(run: Run) -> Topology:
    return topology_of(run)


def secret_backend(run: Run) -> SecretBackend:
    return spec_of(run).redirect.secret_backend or run.context.config.default_secret_backend


def poll(run: Run) -> float:
    return run.context.config.poll_seconds


def not_in_dry_run(run: Run) -> None:
    if spec_of(run).dry_run:
        raise Skip("dry run: nothing changed")


# -- where the backup is, and where it goes -------------------------------------------------------

@dataclass(frozen=True)
class Source:
    label: str                      # what approval tokens bind: the BackupRequest name or the s3:// URI
    storage: S3Storage
    bucket: str
    prefix: str
    manifest: manifests.Manifest
    dump: manifests.DatabaseDump
    backup_secret: str | None       # the backup's admin Secret: InPlace's default target

    @property
    def taken_at(self) -> str:
        return self.manifest.created_at


def source(run: Run) -> Source:
    """The backup being restored, looked up once per pass."""
    if "source" not in run.cache:
        run.cache["source"] = _resolve_source(run)
    return run.cache["source"]


def _resolve_source(run: Run) -> Source:
    spec, namespace = spec_of(run), meta(run)[0]
    if spec.source.backup_ref:
        name = spec.source.backup_ref.name
        backup = call(run.context.kube.custom.get_namespaced_custom_object, GROUP, VERSION, namespace,
                      "backuprequests", name)
        if backup is None:
            raise StepFailed("SourceNotFound", f"BackupRequest {namespace}/{name} does not exist")
        phase = (backup.get("status") or {}).get("phase")
        if phase == "Failed":
            raise StepFailed("SourceFailed", f"BackupRequest {name} failed; only a Succeeded backup can be restored")
        if phase != "Succeeded":  # applied together (GitOps): wait for the backup to finish
            raise Wait(f"waiting for BackupRequest {name} to succeed (it is {phase or 'not started'})",
                       delay=poll(run))
        storage_spec = S3Storage.model_validate(backup["spec"]["storage"]["s3"])
        artifact = backup["status"]["artifact"]
        bucket, manifest_key = storage.parse_s3_uri(artifact["manifestUri"])
        label, backup_secret = name, backup["spec"]["database"]["secretRef"]["name"]
    else:
        storage_spec = spec.storage.s3
        bucket, key = storage.parse_s3_uri(spec.source.artifact)
        manifest_key = manifests.manifest_key(key.rpartition("/")[0])
        label, backup_secret = spec.source.artifact, None
    try:
        manifest = manifests.read_manifest(s3_client(run, storage_spec), bucket, manifest_key)
    except Exception as error:
        raise StepFailed("ManifestMissing", f"the manifest {storage.s3_uri(bucket, manifest_key)} cannot be read "
                                            f"({type(error).__name__}); without it the artifact cannot be "
                                            "verified, so it is not restored") from None
    wanted = spec.target.database if spec.target and spec.target.database else None
    dumps = {entry.name: entry for entry in manifest.databases}
    if spec.source.artifact:
        dump = next((e for e in manifest.databases if storage.s3_uri(bucket, e.key) == spec.source.artifact), None)
    else:
        dump = dumps.get(wanted) if wanted in dumps else manifest.databases[0]
    if dump is None:
        raise StepFailed("ArtifactNotInManifest", f"{spec.source.artifact} is not listed in its manifest")
    if spec.source.backup_ref:
        check_manifest_is_the_backups(run, backup, manifest, dump)
    return Source(label, storage_spec, bucket, manifest_key.rpartition("/")[0], manifest, dump, backup_secret)


def check_manifest_is_the_backups(run: Run, backup: dict, manifest: manifests.Manifest,
                                  dump: manifests.DatabaseDump) -> None:
    """The manifest in S3 must still be the one the BackupRequest proved: signed with its key (while
    that Secret lives) and with the sha256 and size it recorded. Otherwise someone rewrote the
    artifact *and* its manifest, and the checksum checks against the manifest would prove nothing."""
    namespace, name, uid = meta(run)[0], backup["metadata"]["name"], backup["metadata"]["uid"]
    key = (read_secret(run.context.kube, namespace, result_key_secret_name(name, uid)) or {}).get("key")
    if key and not manifests.signature_valid(manifest, key.encode()):
        raise StepFailed("ManifestNotSigned", f"the manifest of BackupRequest {name} in S3 is no longer the one its "
                                              "Job signed: the backup was replaced; do not restore it. Nothing was "
                                              "touched")
    recorded = next((f for f in backup["status"]["artifact"].get("files", []) if f.get("database") == dump.name),
                    None)
    if recorded and (recorded["sha256"], recorded["sizeBytes"]) != (dump.sha256, dump.size_bytes):
        raise StepFailed("ManifestChanged", f"the manifest of BackupRequest {name} in S3 describes another "
                                            f"{dump.name} dump (sha256 {dump.sha256[:12]}…) than the backup recorded "
                                            f"({recorded['sha256'][:12]}…): the backup was replaced; do not restore "
                                            "it. Nothing was touched")


def target_secret_name(run: Run) -> str:
    spec = spec_of(run)
    if spec.target:
        return spec.target.secret_ref.name
    if source(run).backup_secret:
        return source(run).backup_secret
    raise StepFailed("TargetMissing", "an InPlace restore of an s3:// artifact needs spec.target: the Secret "
                                      "with the admin connection of the database to restore into")


def target_database(run: Run) -> str:
    spec = spec_of(run)
    return spec.target.database if spec.target and spec.target.database else source(run).dump.name


def target_secret(run: Run) -> dict[str, str]:
    return require_secret_keys(run, target_secret_name(run), DB_SECRET_KEYS, "the target database")


def db_info_secret_names(run: Run) -> list[str]:
    spec, namespace = spec_of(run), meta(run)[0]
    return [topology(run).db_info_secret_name(spec.redirect.environment, namespace, service)
            for service in topology(run).database_services]


# -- Preflight ----------------------------------------------------------------------------------------

def url_secret(run: Run, role: str, bucket: str, key: str, storage_spec: S3Storage,
                extra: dict[str, str] | None = None, expires: int = PRESIGNED_URL_SECONDS) -> None:
    """A fresh short-lived presigned GET URL in a Secret the runner Job reads (with `extra` keys)."""
    namespace, name, uid = meta(run)
    url = s3_client(run, storage_spec).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires)
    secret_name = restore_jobs.url_secret_name(name, uid, role)
    core = run.context.kube.core
    call(core.delete_namespaced_secret, secret_name, namespace)
    call(core.create_namespaced_secret, namespace, {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": secret_name, "ownerReferences": [owner_reference(run.body)]},
        "stringData": {"url": url, **(extra or {})}})


def run_job(run: Run, manifest: dict, start, what: str) -> jobs.JobOutcome:
    """Create the Job once (after `start` prepared its inputs) and report its outcome; wait while it runs."""
    namespace = meta(run)[0]
    name = manifest["metadata"]["name"]
    outcome = jobs.job_outcome(run.context.kube, namespace, name)
    if outcome is None:
        start()
        jobs.ensure_job(run.context.kube, namespace, manifest)
        raise Wait(f"Job {name} started: {what}", delay=poll(run))
    if outcome.state == "Running":
        raise Wait(f"Job {name}: {what}", delay=poll(run))
    return outcome


