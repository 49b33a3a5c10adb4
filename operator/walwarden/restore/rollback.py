"""Rollback (only after a failure) and what a deleted request puts back: the staged Job called
off, the db-info secrets from the snapshot, the database from the safety backup (by policy),
the services started again."""

from __future__ import annotations

from walwarden.workflow import tiers
from walwarden.api import RestoreMode, RollbackPolicy, S3Storage, parse_timestamp, utcnow
from walwarden.api.common import GROUP, VERSION
from walwarden.workflow.steps import meta
from walwarden.workflow.engine import Run, Skip, StepFailed
from walwarden.kube import jobs
from walwarden.kube.api import call, owner_reference
from walwarden.kube.secrets import read_secret
from walwarden.restore import job as restore_jobs
from walwarden.restore.common import (
    DB_INFO_KEYS,
    db_info_secret_names,
    poll,
    run_job,
    spec_of,
    target_database,
    target_secret_name,
    topology,
    url_secret,
)
from walwarden.restore.reconfigure import (
    db_info_backends,
    restart_consumers,
    snapshot_secret_name,
    write_db_info,
)
from walwarden.restore.staging import ABORT_CONTENT, signal_restore_job
from walwarden.storage import s3 as storage


# -- Rollback (only after a failure) ----------------------------------------------------------------------

def undo_before_restart(run: Run) -> list[str]:
    """What must be put back before any service starts again: a staged restore Job called off, the
    db-info secrets as they were (and every database user rolled, since running ones may have read
    the new values)."""
    done = []
    if run.status.get("restoreJob") and not run.status.get("restoreGoAt"):
        # Staged, never told to go: tell it to stop, so it does not sit waiting for a go signal.
        signal_restore_job(run, ABORT_CONTENT)
        done.append("the staged restore Job was called off before it touched the database")
    if run.status.get("secretsRepointed"):
        snapshot = read_secret(run.context.kube, meta(run)[0], snapshot_secret_name(run)) or {}
        backend, synced = db_info_backends(run)
        write_db_info(backend, synced, db_info_secret_names(run), lambda name: {
            key: snapshot[f"{name}.{key}"] for key in DB_INFO_KEYS if f"{name}.{key}" in snapshot})
        restart_consumers(run, topology(run).database_services, marker="rollback")
        done.append("db-info secrets restored from the snapshot")
    return done


def undo_when_deleted(run: Run) -> list[str]:
    """A request deleted mid-flight: undo what can be undone at once (the services are started by
    the delete handler); a database under way is not restored, but said."""
    done = undo_before_restart(run)
    if run.status.get("databaseModified") and spec_of(run).mode == RestoreMode.IN_PLACE:
        done.append("the database may be half-restored: restore the safety backup "
                    f"{run.status.get('safetyBackup') or '(none was taken)'} with a new RestoreRequest")
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
        outcome = run_job(run, manifest, lambda: url_secret(run, "rollback", bucket, key, storage_spec),
                           f"restoring the safety backup {child} into {target_database(run)}")
    if outcome.state == "Failed":
        raise StepFailed("RollbackFailed", f"restoring the safety backup {child} failed: {outcome.message}. The "
                                           "services are stopped; restore it by hand, then scale them up")
    return f"database restored from the safety backup {child}"
