"""The steps of a restore (the table is in restore/workflow.py). Each one looks at the world
first and acts only where the world is not yet right, so running it again — after a wait, or
after the operator was restarted — repeats nothing destructive."""

from __future__ import annotations

import hashlib
import json
import secrets as random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from botocore.exceptions import ClientError

from walwarden import database, dbinfo, tiers
from walwarden.api import (
    RestoreMode,
    RestoreRequestSpec,
    RollbackPolicy,
    S3Storage,
    SecretBackend,
    Topology,
    format_timestamp,
    parse_timestamp,
    utcnow,
)
from walwarden.api.common import GROUP, VERSION
from walwarden.backup.job import artifact_prefix, result_key_secret_name
from walwarden.common_steps import meta, require_secret_keys, s3_client, topology_of
from walwarden.engine import Run, Skip, StepFailed, Wait
from walwarden.kube import jobs, workloads
from walwarden.kube.api import Conflict, call, owner_reference
from walwarden.kube.secrets import ensure_secret, read_secret
from walwarden.restore import job as restore_jobs
from walwarden.runner import restore as restore_runner
from walwarden.security import fingerprints, tokens
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


# -- Validate ---------------------------------------------------------------------------------------

def validate(run: Run) -> str:
    spec, namespace = spec_of(run), meta(run)[0]
    found = source(run)
    target_secret(run)
    for emp in spec.encryptor_secrets:
        require_secret_keys(run, emp.name, (emp.key,), "an Encryptor Master Password")
    missing = tiers.missing_services(run.context.kube, namespace, topology(run))
    if missing:
        raise StepFailed("ServiceNotFound", f"no Deployment or StatefulSet named {', '.join(missing)} in namespace "
                                            f"{namespace}; fix spec.topology to name the vault's services")
    if spec.mode == RestoreMode.REDIRECTED:
        backend, _ = db_info_backends(run)
        for name in db_info_secret_names(run):
            values = _db_info(lambda: backend.read(name))
            if not values or not values.get("DB_HOST"):
                raise StepFailed("SecretNotFound", f"db-info secret {name} does not exist in "
                                                   f"{secret_backend(run)} or has no DB_HOST")
    check_approval(run, found)
    return f"source {found.label} ({found.dump.name}, {found.dump.size_bytes} bytes) and target checked"


def check_approval(run: Run, found: Source) -> None:
    spec, config = spec_of(run), run.context.config
    if run.status.get("approvalTokenId"):
        return  # consumed by this request already (a resumed pass)
    if not spec.approval_token:
        if config.approvals_required and not spec.dry_run:
            raise StepFailed("ApprovalRequired", "this operator requires an approval token: run `walwarden token "
                                                 "issue` and set spec.approvalToken in a new request")
        return
    key = (read_secret(run.context.kube, config.operator_namespace, config.approval_key_secret) or {}).get("key")
    if not key:
        raise StepFailed("ApprovalKeyMissing", f"Secret {config.operator_namespace}/{config.approval_key_secret} "
                                               "with the approval key (key 'key') does not exist")
    namespace = meta(run)[0]
    try:
        claims = tokens.verify_token(key.encode(), spec.approval_token, backup=found.label,
                                     sha256=found.dump.sha256, mode=str(spec.mode), namespace=namespace)
    except tokens.TokenError as error:
        raise StepFailed(str(error.reason), f"approval token refused: {error.message}") from None
    except ValueError as error:  # e.g. a key too short to be safe
        raise StepFailed("ApprovalKeyInvalid", f"the approval key in Secret {config.operator_namespace}/"
                                               f"{config.approval_key_secret} is not usable: {error}") from None
    if not spec.dry_run:
        _consume_token(run, claims)
    run.status["approvalTokenId"] = claims.token_id


def prune_expired_tokens(used: dict[str, str], now: float) -> dict[str, str]:
    """Used token ids whose token has expired can go: an expired token is refused anyway. Keeps the
    ConfigMap from growing with every restore."""
    def expired(record: str) -> bool:
        _, _, expires = record.rpartition(" expires ")
        return expires.isdigit() and int(expires) < now
    return {token_id: record for token_id, record in used.items() if not expired(record)}


def _consume_token(run: Run, claims) -> None:
    """Single use: the token id is recorded in a ConfigMap; a second request with it is refused."""
    core, namespace = run.context.kube.core, meta(run)[0]
    _, name, uid = meta(run)
    me = f"{run.kind}/{name}/{uid}"
    for _ in range(5):
        existing = call(core.read_namespaced_config_map, USED_TOKENS_CONFIGMAP, namespace)
        used = prune_expired_tokens(dict(existing.data or {}) if existing else {}, time.time())
        user = used.get(claims.token_id)
        if user and not user.startswith(me):
            raise StepFailed("TokenReused", f"approval token {claims.token_id} was already used by {user.split()[0]}; "
                                            "issue a new token")
        used[claims.token_id] = f"{me} expires {claims.expires_at}"
        body = {"apiVersion": "v1", "kind": "ConfigMap", "data": used,
                "metadata": {"name": USED_TOKENS_CONFIGMAP, "labels": {"app.kubernetes.io/managed-by": "walwarden"}}}
        try:
            if existing is None:
                call(core.create_namespaced_config_map, namespace, body)
            else:
                body["metadata"]["resourceVersion"] = existing.metadata.resource_version
                call(core.replace_namespaced_config_map, USED_TOKENS_CONFIGMAP, namespace, body)
            return
        except Conflict:
            continue
    raise Wait("the approvals ConfigMap is busy", delay=1)


# -- Plan -------------------------------------------------------------------------------------------

def plan(run: Run) -> str:
    spec, namespace = spec_of(run), meta(run)[0]
    found = source(run)
    services = []
    for tier_index, tier in enumerate(topology(run).stop_tiers, start=1):
        for name in tier:
            workload = workloads.find_workload(run.context.kube, namespace, name)
            replicas = workload.original_replicas if workload and workload.original_replicas is not None else (
                workload.replicas if workload else 0)
            services.append({"name": name, "tier": tier_index, "replicas": replicas})
    now = utcnow()
    window = {"backupTime": found.taken_at, "restoreTime": format_timestamp(now),
              "seconds": round((now - parse_timestamp(found.taken_at)).total_seconds())}
    from walwarden.restore.workflow import RESTORE_STEPS  # the table imports this module
    run.status["plan"] = {
        "steps": [step.name for step in RESTORE_STEPS if not step.only_on_failure],
        "services": services,
        "secrets": db_info_secret_names(run) if spec.mode == RestoreMode.REDIRECTED else [],
        "dataLossWindow": window,
    }
    run.status.setdefault("dataLossWindow", window)
    stopped = ", ".join(f"{s['name']}×{s['replicas']}" for s in services)
    lost = f"history after {found.taken_at} ({window['seconds']} s) is lost"
    return f"{'dry run: ' if spec.dry_run else ''}stops {stopped}; {lost}"


# -- Preflight ----------------------------------------------------------------------------------------

def _url_secret(run: Run, role: str, bucket: str, key: str, storage_spec: S3Storage,
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


def _run_job(run: Run, manifest: dict, start, what: str) -> jobs.JobOutcome:
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


def preflight(run: Run) -> str:
    not_in_dry_run(run)
    spec = spec_of(run)
    found = source(run)
    namespace, name, uid = meta(run)
    manifest = restore_jobs.verify_job(name=name, namespace=namespace, uid=uid, owner=owner_reference(run.body),
                                       config=run.context.config, sha256=found.dump.sha256,
                                       size=found.dump.size_bytes)
    outcome = _run_job(run, manifest, lambda: _url_secret(run, "verify", found.bucket, found.dump.key, found.storage),
                       "downloading the artifact and checking its sha256 against the manifest")
    if outcome.state == "Failed":
        raise StepFailed(outcome.reason, f"the artifact failed verification: {outcome.message}. Nothing was "
                                         "touched: every service is still running")
    secret = target_secret(run)
    try:
        version = database.server_version(secret)
        if spec.mode == RestoreMode.IN_PLACE and not database.database_exists(secret, target_database(run)):
            raise StepFailed("DatabaseNotFound", f"the InPlace target database {target_database(run)} does not exist")
    except database.DatabaseError as error:
        raise StepFailed(error.reason, f"the target database is not usable: {error.message}") from None
    check_target_version(version, found.manifest.pg_server_version)
    check_encryptor_fingerprints(run, found)
    return (f"artifact sha256 verified by Job {manifest['metadata']['name']}; target PostgreSQL {version} "
            f"reachable; EMP fingerprints match")


def major_version(version: str) -> int:
    """16 of "16.4 (Debian 16.4-1.pgdg120+1)"; 0 when unreadable (then nothing is refused on it)."""
    head = version.strip().split(".")[0].split()[0] if version.strip() else ""
    return int(head) if head.isdigit() else 0


def check_target_version(target: str, source: str) -> None:
    target_major, source_major = major_version(target), major_version(source)
    if target_major and source_major and target_major < source_major:
        raise StepFailed("TargetServerTooOld", f"the backup is of a PostgreSQL {source} server, the target runs "
                                               f"{target}: a dump restores into the same or a newer major version "
                                               "only. Nothing was touched: restore into a server of that major "
                                               "version or newer")


def check_encryptor_fingerprints(run: Run, found: Source) -> None:
    expected = {entry.secret: entry for entry in found.manifest.encryptor_fingerprints}
    given = {f"{emp.name}/{emp.key}": emp for emp in spec_of(run).encryptor_secrets}
    if expected and not given:
        raise StepFailed("EncryptorSecretsMissing", f"the backup was taken with the Encryptor Master Password(s) "
                                                    f"{', '.join(expected)}; name the target environment's EMP "
                                                    "secrets in spec.encryptorSecrets so they can be compared")
    for secret_name, emp in given.items():
        fingerprint = expected.get(secret_name) or (next(iter(expected.values())) if len(expected) == 1 else None)
        if fingerprint is None:
            raise StepFailed("EncryptorMismatch", f"the backup's manifest has no fingerprint for {secret_name}")
        value = require_secret_keys(run, emp.name, (emp.key,), "an Encryptor Master Password")[emp.key]
        if not fingerprints.matches(value, fingerprint):
            raise StepFailed("EncryptorMismatch", f"the Encryptor Master Password in {secret_name} differs from the "
                                                  "one the backup was taken with: restoring would leave the vault's "
                                                  "key shares and encrypted configuration undecryptable, an "
                                                  "irrecoverable vault. Nothing was changed. Restore into an "
                                                  "environment with the backup's EMP, or choose another backup")


# -- SafetyBackup -------------------------------------------------------------------------------------

def safety_backup(run: Run) -> str:
    not_in_dry_run(run)
    spec = spec_of(run)
    if not spec.wants_safety_backup():
        raise Skip("spec.safetyBackup is false" if spec.safety_backup is False else "Redirected: the original "
                   "database is left untouched, so rollback is a secret switch")
    namespace, name, uid = meta(run)
    child = f"{name[:40]}-safety-{uid.replace('-', '')[:8]}"
    custom = run.context.kube.custom
    existing = call(custom.get_namespaced_custom_object, GROUP, VERSION, namespace, "backuprequests", child)
    if existing is None:
        found = source(run)
        storage_spec = found.storage.to_dict()
        storage_spec["prefix"] = f"{found.storage.prefix.strip('/')}/safety".strip("/")
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BackupRequest",
                "metadata": {"name": child, "ownerReferences": [owner_reference(run.body)],
                             "labels": {"walwarden.io/safety-backup-of": name}},
                "spec": {"database": {"secretRef": {"name": target_secret_name(run)},
                                      "databases": [target_database(run)]},
                         "storage": {"s3": storage_spec},
                         "encryptorSecrets": [e.to_dict() for e in spec.encryptor_secrets],
                         "topology": topology(run).to_dict()}}
        try:
            call(custom.create_namespaced_custom_object, GROUP, VERSION, namespace, "backuprequests", body)
        except Conflict:
            pass
        run.status["safetyBackup"] = child
        raise Wait(f"safety backup {child} of the target started", delay=poll(run))
    run.status["safetyBackup"] = child
    status = existing.get("status") or {}
    if status.get("phase") == "Failed":
        raise StepFailed("SafetyBackupFailed", f"the safety backup {child} failed ({status.get('message')}); "
                                               "nothing was touched. Fix it, or set safetyBackup: false knowingly")
    if status.get("phase") != "Succeeded":
        raise Wait(f"safety backup {child} is {status.get('phase') or 'starting'}", delay=poll(run))
    return f"safety backup {child}: {status['artifact']['uri']}"


# -- ScaleDown ------------------------------------------------------------------------------------------

def scale_down(run: Run) -> str:
    not_in_dry_run(run)
    run.status.setdefault("scaledDownAt", format_timestamp(utcnow()))
    stopped = tiers.stop_in_order(run, run.context.kube, meta(run)[0], topology(run), poll(run),
                                  stuck_after=run.context.config.stop_timeout_seconds)
    return f"{stopped}; {check_sessions(run)}"


def check_sessions(run: Run) -> str:
    """No application may still be connected to the database about to be overwritten."""
    spec, secret, dbname = spec_of(run), target_secret(run), target_database(run)
    try:
        if not database.database_exists(secret, dbname):
            return "no sessions (the target database does not exist yet)"
        sessions = database.application_sessions(secret, dbname)
    except database.DatabaseError as error:
        raise StepFailed(error.reason, f"cannot check sessions on the target: {error.message}") from None
    if not sessions:
        return "no application sessions left"
    listed = "; ".join(s.describe() for s in sessions[:5])
    policy = spec.session_policy
    if policy.on_remaining == "Fail":
        raise StepFailed("SessionsRemain", f"{len(sessions)} session(s) still connected to {dbname}: {listed}. "
                                           "Stop those clients, or use sessionPolicy.onRemaining Wait or Terminate")
    seen = run.status.setdefault("sessionsSeenAt", format_timestamp(utcnow()))
    waited = (utcnow() - parse_timestamp(seen)).total_seconds()
    if waited < policy.wait_seconds:
        raise Wait(f"{len(sessions)} session(s) still connected to {dbname}, waiting up to "
                   f"{policy.wait_seconds}s: {listed}", delay=poll(run))
    if policy.on_remaining == "Wait":
        raise StepFailed("SessionsRemain", f"{len(sessions)} session(s) still connected to {dbname} after "
                                           f"{policy.wait_seconds}s: {listed}")
    if waited > policy.wait_seconds + RECONNECT_GRACE_SECONDS:
        # Terminated and back again: a client that was not stopped keeps reconnecting. Never loop.
        raise StepFailed("SessionsRemain", f"clients keep reconnecting to {dbname} after being terminated: "
                                           f"{listed}. Stop them (add their service to spec.topology's stop "
                                           "tiers) and create a new request")
    database.terminate_sessions(secret, sessions)
    run.event("SessionsTerminated", f"terminated {len(sessions)} session(s) on {dbname}: {listed}", warning=True)
    raise Wait(f"terminated {len(sessions)} session(s); checking again", delay=1)


# -- Stage ----------------------------------------------------------------------------------------------
#
# The restore Job starts before the services stop: while they stop, it downloads the artifact and
# checks its sha256 again; then it waits for the operator's go object (GoSignal in
# runner/restore.py), which Restore writes once ScaleDown is done. Downloading costs no downtime.

GO_TIMEOUT_SECONDS = 2 * 3600  # covers the longest ScaleDown: sessionPolicy.waitSeconds ≤ 3600
GO_CONTENT_KEY = "goContent"   # in the restore URL Secret: what the go object must hold
ABORT_CONTENT = restore_runner.ABORT_CONTENT


def go_key(run: Run) -> str:
    """Beside the artifact, one per request; kept afterwards like audit.log (a record, no secret)."""
    return f"{source(run).prefix.strip('/')}/restore-signals/{meta(run)[2]}"


def restore_job_manifest(run: Run, go_sha256: str | None = None) -> dict:
    spec, found = spec_of(run), source(run)
    namespace, name, uid = meta(run)
    return restore_jobs.restore_job(
        name=name, namespace=namespace, uid=uid, owner=owner_reference(run.body), config=run.context.config,
        sha256=found.dump.sha256, size=found.dump.size_bytes, target_secret=target_secret_name(run),
        database=target_database(run), clean=spec.mode == RestoreMode.IN_PLACE, go_sha256=go_sha256,
        go_timeout_seconds=GO_TIMEOUT_SECONDS)


def stage(run: Run) -> str:
    not_in_dry_run(run)
    found = source(run)
    namespace = meta(run)[0]
    name = restore_job_manifest(run)["metadata"]["name"]
    if jobs.job_outcome(run.context.kube, namespace, name) is None:
        content = random.token_hex(32)
        go_url = s3_client(run, found.storage).generate_presigned_url(
            "get_object", Params={"Bucket": found.bucket, "Key": go_key(run)}, ExpiresIn=GO_TIMEOUT_SECONDS + 600)
        # The artifact URL must outlive the wait: without staging room the runner streams it after the go.
        _url_secret(run, "restore", found.bucket, found.dump.key, found.storage,
                    extra={"go": go_url, GO_CONTENT_KEY: content}, expires=PRESIGNED_URL_SECONDS + GO_TIMEOUT_SECONDS)
        jobs.ensure_job(run.context.kube, namespace,
                        restore_job_manifest(run, hashlib.sha256(content.encode()).hexdigest()))
    run.status["restoreJob"] = name
    return (f"Job {name} downloads and verifies the artifact while the services stop; it restores only on the "
            "operator's go, after ScaleDown")


def _go_content(run: Run) -> str:
    """What the go object must hold: kept in the restore Job's URL Secret since Stage."""
    namespace, name, uid = meta(run)
    secret = read_secret(run.context.kube, namespace, restore_jobs.url_secret_name(name, uid, "restore")) or {}
    content = secret.get(GO_CONTENT_KEY)
    if not content:
        raise StepFailed("GoSignalLost", "the restore Job's Secret with its go signal is gone, so it cannot be "
                                         "told to start; nothing was restored. Create a new RestoreRequest")
    return content


def _signal_restore_job(run: Run, content: str) -> None:
    """Write the go object (the go content, or the abort)."""
    found = source(run)
    s3_client(run, found.storage).put_object(Bucket=found.bucket, Key=go_key(run), Body=content.encode())


def _go_was_given(run: Run) -> bool:
    """The world's answer (an operator may have died between writing the go and recording it)."""
    found = source(run)
    try:
        body = s3_client(run, found.storage).get_object(Bucket=found.bucket, Key=go_key(run))["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return False  # no go object: never given
        raise Wait(f"cannot tell whether the restore Job was told to go ({type(error).__name__}); "
                   "looking again", delay=poll(run)) from None
    return body.decode(errors="replace") == _go_content(run)


# -- Restore --------------------------------------------------------------------------------------------

def restore(run: Run) -> str:
    not_in_dry_run(run)
    found = source(run)
    name = run.status.get("restoreJob") or restore_job_manifest(run)["metadata"]["name"]
    outcome = jobs.job_outcome(run.context.kube, meta(run)[0], name)
    if outcome is None:
        raise StepFailed("RestoreJobMissing", f"the restore Job {name} is gone (deleted by hand?); nothing was "
                                              "restored. Create a new RestoreRequest")
    if not run.status.get("restoreGoAt") and (outcome.state == "Running" or _go_was_given(run)):
        # From here on the database may change: rollback has to restore, not just restart.
        run.status["databaseModified"] = True
        if outcome.state == "Running":
            _signal_restore_job(run, _go_content(run))
        run.status["restoreGoAt"] = format_timestamp(utcnow())
        run.event("RestoreGo", f"services stopped: Job {name} may now run pg_restore into {target_database(run)}")
    if outcome.state == "Running":
        raise Wait(f"Job {name}: pg_restore of {found.dump.name} into {target_database(run)}", delay=poll(run))
    if outcome.state == "Failed":
        raise StepFailed(outcome.reason or "RestoreFailed", f"pg_restore failed: {outcome.message}")
    restored = f"Job {name} restored {found.dump.size_bytes} bytes into {target_database(run)}"
    return "; ".join([restored, *compare_row_counts(run)])


def compare_row_counts(run: Run) -> list[str]:
    """Row counts against the manifest, while the services are still stopped (their writes after
    start-up would make any comparison meaningless)."""
    spec = spec_of(run)
    checks: list[str] = []
    if spec.verify.compare_row_counts and source(run).dump.row_counts:
        expected = source(run).dump.row_counts
        try:
            actual = database.row_counts(target_secret(run), target_database(run), list(expected))
        except database.DatabaseError as error:
            raise StepFailed(error.reason, f"cannot count rows on the target: {error.message}") from None
        different = {table: (count, actual.get(table)) for table, count in expected.items()
                     if actual.get(table) != count}
        if different:
            listed = ", ".join(f"{t}: {a} rows, manifest {e}" for t, (e, a) in list(different.items())[:5])
            raise StepFailed("RowCountMismatch", f"the restored database differs from the backup: {listed}")
        checks.append(f"row counts of {len(expected)} tables match the manifest")
    return checks


# -- Reconfigure ----------------------------------------------------------------------------------------

def snapshot_secret_name(run: Run) -> str:
    _, name, uid = meta(run)
    return f"{name[:40]}-snapshot-{uid.replace('-', '')[:8]}"


def reconfigure(run: Run) -> str:
    not_in_dry_run(run)
    spec = spec_of(run)
    if spec.mode != RestoreMode.REDIRECTED:
        raise Skip("InPlace: the services keep their database")
    namespace, kube = meta(run)[0], run.context.kube
    backend, synced = db_info_backends(run)
    names = db_info_secret_names(run)
    # The originals are kept once, before the first patch; a second pass reuses that snapshot.
    current = {name: _db_info(lambda name=name: backend.read(name)) or {} for name in names}
    snapshot = {f"{name}.{key}": current[name][key] for name in names for key in DB_INFO_KEYS if key in current[name]}
    ensure_secret(kube, namespace, snapshot_secret_name(run), snapshot, owner_reference(run.body),
                  labels={"walwarden.io/snapshot-of": meta(run)[1]})
    new = {"DB_HOST": spec.redirect.db_host}
    if spec.redirect.db_port:
        new["DB_PORT"] = str(spec.redirect.db_port)
    if spec.redirect.db_name:
        new["DB_NAME"] = spec.redirect.db_name
    run.status["secretsRepointed"] = True
    not_synced = write_db_info(backend, synced, names, lambda name: new)
    restarted = restart_consumers(run)
    waiting = f"; no synced Kubernetes copy yet of {', '.join(not_synced)}" if not_synced else ""
    return (f"repointed {len(names)} db-info secrets ({secret_backend(run)}) to {spec.redirect.db_host}"
            f"{waiting}; restarted {restarted or 'nothing'}")


def db_info_backends(run: Run) -> tuple[dbinfo.DbInfoBackend, dbinfo.KubernetesSecrets | None]:
    """Where the db-info secrets are written, and the synced Kubernetes copy (AWS only)."""
    spec, namespace = spec_of(run), meta(run)[0]
    kubernetes_secrets = dbinfo.KubernetesSecrets(run.context.kube.core, namespace)
    if secret_backend(run) == SecretBackend.AWS_SECRETS_MANAGER:
        aws = spec.redirect.aws
        client = _db_info(lambda: dbinfo.make_aws_client(aws.region if aws else None, aws.endpoint if aws else None))
        return dbinfo.AwsSecretsManager(client), kubernetes_secrets
    return kubernetes_secrets, None


def _db_info(action):
    """Run a db-info backend call; its errors become a wait (retryable) or a failure."""
    try:
        return action()
    except dbinfo.DbInfoError as error:
        if error.retryable:
            raise Wait(f"db-info backend: {error.message}", delay=5) from None
        raise StepFailed(error.reason, error.message) from None


def write_db_info(backend, synced, names: list[str], values_for) -> list[str]:
    """Write each secret's values (idempotent), and refresh its synced Kubernetes copy at once
    so restarted consumers read the change; returns the names that have no synced copy yet."""
    not_synced = []
    for name in names:
        values = values_for(name)
        _db_info(lambda: backend.update(name, values))
        if synced is not None and not _db_info(lambda: dbinfo.refresh_synced_copy(synced, name, values)):
            not_synced.append(name)
    return not_synced


def restart_consumers(run: Run, services: list[str] | None = None, marker: str = "reconfigure") -> str:
    """Services that were not stopped read their db-info only at start: roll them. The marker is
    fixed per request, so doing it again changes nothing."""
    namespace, _, uid = meta(run)
    stopped = {name for tier in topology(run).stop_tiers for name in tier} if services is None else set()
    marker = f"walwarden-{marker}-{uid}"
    names = []
    for name in services if services is not None else topology(run).restart_after_reconfigure:
        if name in stopped:
            continue  # it starts with the new secret anyway
        workload = workloads.find_workload(run.context.kube, namespace, name)
        if workload is None:
            continue
        workloads.restart(run.context.kube, workload, marker)
        names.append(name)
    return ", ".join(names)


# -- ScaleUp --------------------------------------------------------------------------------------------

def scale_up(run: Run) -> str:
    not_in_dry_run(run)
    started = tiers.start_in_order(run, run.context.kube, meta(run)[0], topology(run), poll(run),
                                   loud_after=run.context.config.stop_timeout_seconds)
    if run.status.get("scaledDownAt"):
        run.status["downtimeSeconds"] = round(
            (utcnow() - parse_timestamp(run.status["scaledDownAt"])).total_seconds(), 1)
    return started


# -- Verify -----------------------------------------------------------------------------------------------

def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except OSError as error:
        return 0, str(type(error).__name__).encode()


def _has_data(body: bytes) -> bool:
    try:
        document = json.loads(body)
    except ValueError:
        return False
    if isinstance(document, list):
        return bool(document)
    if isinstance(document, dict):
        return any(isinstance(value, list) and value for value in document.values()) or bool(document.get("count"))
    return False


def verify(run: Run) -> str:
    not_in_dry_run(run)
    spec, namespace = spec_of(run), meta(run)[0]
    checks = []
    scale_up_done = next((s.get("finishedAt") for s in run.status.get("steps", []) if s["name"] == "ScaleUp"), None)
    deadline_passed = scale_up_done and (utcnow() - parse_timestamp(scale_up_done)).total_seconds() > \
        spec.verify.timeout_seconds
    for url, what in ((spec.verify.health_url, "health"), (spec.verify.accounts_url, "accounts")):
        if not url:
            checks.append(f"{what} not checked (spec.verify.{what}Url is unset)")
            continue
        headers = {}
        if what == "accounts" and spec.verify.auth_header_secret_ref:
            ref = spec.verify.auth_header_secret_ref
            headers["Authorization"] = require_secret_keys(run, ref.name, (ref.key,), "the accounts auth header")[ref.key]
        status, body = _get(url, headers)
        ok = status == 200 and (what == "health" or _has_data(body))
        if not ok:
            problem = f"{what} check {url} answered {status or body.decode()}" + (
                "" if status != 200 else " without data")
            if deadline_passed:
                raise StepFailed("VerifyFailed", f"{problem} after {spec.verify.timeout_seconds}s")
            raise Wait(problem, delay=poll(run))
        checks.append(f"{what} OK")
    return "; ".join(["pods Ready", *checks])


# -- Rollback (only after a failure) ----------------------------------------------------------------------

def undo_before_restart(run: Run) -> list[str]:
    """What must be put back before any service starts again (also when a request is deleted
    mid-flight): a staged restore Job called off, the db-info secrets as they were."""
    done = []
    if run.status.get("restoreJob") and not run.status.get("restoreGoAt"):
        # Staged, never told to go: tell it to stop, so it does not sit waiting for a go signal.
        _signal_restore_job(run, ABORT_CONTENT)
        done.append("the staged restore Job was called off before it touched the database")
    if run.status.get("secretsRepointed"):
        snapshot = read_secret(run.context.kube, meta(run)[0], snapshot_secret_name(run)) or {}
        backend, synced = db_info_backends(run)
        write_db_info(backend, synced, db_info_secret_names(run), lambda name: {
            key: snapshot[f"{name}.{key}"] for key in DB_INFO_KEYS if f"{name}.{key}" in snapshot})
        done.append("db-info secrets restored from the snapshot")
    return done


def rollback(run: Run) -> str:
    """Put the world back: secrets, the database (by policy), then the services in start order."""
    spec, namespace, kube = spec_of(run), meta(run)[0], run.context.kube
    done = undo_before_restart(run)
    if run.status.get("databaseModified") and spec.mode == RestoreMode.IN_PLACE:
        done.append(_restore_safety_backup(run))
    if run.status.get("scaledDownAt"):
        done.append(tiers.start_in_order(run, kube, namespace, topology(run), poll(run),
                                         loud_after=run.context.config.stop_timeout_seconds))
        if run.status.get("secretsRepointed"):
            # Whatever runs now may have read the new secrets: roll every database user once more.
            restart_consumers(run, topology(run).database_services, marker="rollback")
        run.status["downtimeSeconds"] = round(
            (utcnow() - parse_timestamp(run.status["scaledDownAt"])).total_seconds(), 1)
    if not done:
        raise Skip("nothing had been changed")
    return "; ".join(done)


def _restore_safety_backup(run: Run) -> str:
    spec, namespace, kube = spec_of(run), meta(run)[0], run.context.kube
    child = run.status.get("safetyBackup")
    if not child:
        return "the database was modified and there is no safety backup: restore it from a backup by hand"
    if spec.rollback_policy == RollbackPolicy.MANUAL:
        return (f"the database was modified; rollbackPolicy is Manual: restore the safety backup {child} with a "
                "new RestoreRequest")
    backup = call(kube.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, "backuprequests", child) or {}
    artifact = (backup.get("status") or {}).get("artifact")
    if not artifact:
        return f"the safety backup {child} has no artifact: restore the database by hand"
    _, name, uid = meta(run)
    bucket, key = storage.parse_s3_uri(artifact["uri"])
    storage_spec = S3Storage.model_validate(backup["spec"]["storage"]["s3"])
    manifest = restore_jobs.restore_job(
        name=name, namespace=namespace, uid=uid, owner=owner_reference(run.body), config=run.context.config,
        sha256=artifact["sha256"], size=artifact["files"][0]["sizeBytes"] if artifact.get("files") else
        artifact["sizeBytes"], target_secret=target_secret_name(run), database=target_database(run), clean=True,
        role="rollback")
    outcome = jobs.job_outcome(kube, namespace, manifest["metadata"]["name"])
    if outcome is None or outcome.state == "Running":
        # Services must be down while the database is put back (a Verify failure had started them).
        tiers.stop_in_order(run, kube, namespace, topology(run), poll(run))
        outcome = _run_job(run, manifest, lambda: _url_secret(run, "rollback", bucket, key, storage_spec),
                           f"restoring the safety backup {child} into {target_database(run)}")
    if outcome.state == "Failed":
        raise StepFailed("RollbackFailed", f"restoring the safety backup {child} failed: {outcome.message}. The "
                                           "services are stopped; restore it by hand, then scale them up")
    return f"database restored from the safety backup {child}"
