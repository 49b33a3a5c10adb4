"""SafetyBackup: a BackupRequest of the target before an InPlace restore overwrites it, so a
failed restore can be rolled back."""

from __future__ import annotations

from walwarden.api import BackupPhase, BackupRequest, RestoreStrategy
from walwarden.api import backup as backup_api
from walwarden.api.common import API_VERSION, GROUP, VERSION
from walwarden.kube.api import Conflict, call
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import read_backup, source_of
from walwarden.restore.target import target_database, target_secret_name
from walwarden.workflow.engine import Skip, StepFailed, Wait


def safety_backup_name(run: RestoreRun) -> str:
    return f"{run.name[:40]}-safety-{run.uid.replace('-', '')[:8]}"


def safety_backup(run: RestoreRun) -> str:
    spec = run.spec
    if not spec.wants_safety_backup():
        if spec.safety_backup is False:
            raise Skip("spec.safetyBackup is false")
        if spec.effective_strategy == RestoreStrategy.SWITCH:
            raise Skip(
                "Switch: the vault's database is kept, renamed aside, and rollback renames it back: no safety dump "
                "needed, and no write before the stop is lost"
            )
        raise Skip("Redirected: the original database is left untouched, so rollback is a secret switch")
    child = safety_backup_name(run)
    run.status.safety_backup = child
    existing = read_backup(run, child)
    if existing is None:
        _create(run, child)
        raise Wait(f"safety backup {child} of the target started", delay=run.poll_seconds)
    _require_ours(run, existing)
    status = existing.status
    if status is not None and status.phase == BackupPhase.FAILED:
        raise StepFailed(
            "SafetyBackupFailed",
            f"the safety backup {child} failed ({status.message}); "
            "nothing was touched. Fix it, or set safetyBackup: false knowingly",
        )
    if status is None or status.phase != BackupPhase.SUCCEEDED or status.artifact is None:
        raise Wait(
            f"safety backup {child} is {(status.phase if status else None) or 'starting'}", delay=run.poll_seconds
        )
    return f"safety backup {child}: {status.artifact.uri}"


def _require_ours(run: RestoreRun, existing: BackupRequest) -> None:
    """The BackupRequest under the safety backup's name must be the one this restore made: owned by
    it and a backup of exactly its target. Its name is predictable, and whoever may create
    BackupRequests could have made one first, of another database or into another bucket, for a
    rollback to restore with --clean."""
    owners = existing.metadata.get("ownerReferences") or []
    owned = any(owner.get("uid") == run.uid for owner in owners)
    if not owned or existing.spec != BackupRequest.model_validate(_body(run, existing.name)).spec:
        raise StepFailed(
            "SafetyBackupNotOurs",
            f"a BackupRequest named {existing.name} exists that this restore did not make (another owner or another "
            "database, bucket or topology): it is not used as a safety backup. Nothing was touched; delete it if "
            "it is not yours to keep, and create a new request",
        )


def _create(run: RestoreRun, child: str) -> None:
    body = _body(run, child)
    BackupRequest.model_validate(body)  # our own body must be one the API accepts
    try:
        call(run.kube.custom.create_namespaced_custom_object, GROUP, VERSION, run.namespace, backup_api.PLURAL, body)
    except Conflict:
        pass  # created by an earlier pass whose status was lost


def _body(run: RestoreRun, child: str) -> dict:
    found = source_of(run)
    storage = found.storage.model_copy(update={"prefix": f"{found.storage.prefix.strip('/')}/safety".strip("/")})
    return {
        "apiVersion": API_VERSION,
        "kind": backup_api.KIND,
        "metadata": {
            "name": child,
            "ownerReferences": [run.owner],
            "labels": {"walwarden.io/safety-backup-of": run.name},
        },
        "spec": {
            "database": {"secretRef": {"name": target_secret_name(run)}, "databases": [target_database(run)]},
            "storage": {"s3": storage.to_dict()},
            "encryptorSecrets": [e.to_dict() for e in run.spec.encryptor_secrets],
            "topology": run.topology.to_dict(),
        },
    }
