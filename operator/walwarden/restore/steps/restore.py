"""Restore: the go for the staged Job once the services are gone, pg_restore --exit-on-error, and
the restored database's row counts against the manifest (while the services are still stopped).

Undo (InPlace, once the database may have changed): the safety backup restored into it, by
rollbackPolicy, with the services stopped; on a deletion, the user is told instead."""

from __future__ import annotations

from walwarden.api import BackupPhase, RestoreMode, RollbackPolicy, format_timestamp, utcnow
from walwarden.kube import jobs
from walwarden.kube.jobs import JobState
from walwarden.restore import go_signal
from walwarden.restore import job as restore_jobs
from walwarden.restore.artifact_urls import url_secret
from walwarden.restore.row_counts import compare_row_counts
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import read_backup, source_of
from walwarden.restore.target import target_database, target_secret_name
from walwarden.storage import s3 as storage
from walwarden.workflow import tiers
from walwarden.workflow.engine import StepFailed, UndoCause, Wait
from walwarden.workflow.steps import run_job


def restore(run: RestoreRun) -> str:
    found, status = source_of(run), run.status
    name = status.restore_job
    outcome = jobs.job_outcome(run.kube, run.namespace, name, run.uid) if name else None
    if name is None or outcome is None:
        raise StepFailed(
            "RestoreJobMissing",
            f"the restore Job {name or '(never staged)'} is gone (deleted by "
            "hand?); nothing was restored. Create a new RestoreRequest",
        )
    if not status.restore_go_at and outcome.state == JobState.RUNNING and not go_signal.go_was_given(run):
        tiers.check_still_stopped(run, run.kube, run.namespace, run.topology)
    if not status.restore_go_at and (outcome.state == JobState.RUNNING or go_signal.go_was_given(run)):
        # From here on the database may change: rollback has to restore, not just restart.
        status.database_modified = True
        if outcome.state == JobState.RUNNING:
            go_signal.give_go(run)
        status.restore_go_at = format_timestamp(utcnow())
        run.event("RestoreGo", f"services stopped: Job {name} may now run pg_restore into {target_database(run)}")
    if outcome.state == JobState.RUNNING:
        raise Wait(f"Job {name}: pg_restore of {found.dump.name} into {target_database(run)}", delay=run.poll_seconds)
    if outcome.state == JobState.FAILED:
        # The runner's message says whether the database was touched (runner/restore.py).
        raise StepFailed(outcome.reason or "RestoreFailed", f"the restore Job failed: {outcome.message}")
    restored = f"Job {name} restored {found.dump.size_bytes} bytes into {target_database(run)}"
    return "; ".join([restored, *compare_row_counts(run, target_database(run))])


def put_database_back(run: RestoreRun, cause: UndoCause) -> str | None:
    if not run.status.database_modified or run.spec.mode != RestoreMode.IN_PLACE:
        return None
    child = run.status.safety_backup
    if cause == UndoCause.DELETION:
        return (
            "the database may be half-restored: restore the safety backup "
            f"{child or '(none was taken)'} with a new RestoreRequest"
        )
    if not child:
        return "the database was modified and there is no safety backup: restore it from a backup by hand"
    if run.spec.rollback_policy == RollbackPolicy.MANUAL:
        return (
            f"the database was modified; rollbackPolicy is Manual: restore the safety backup {child} with a "
            "new RestoreRequest"
        )
    return _restore_safety_backup(run, child)


def _restore_safety_backup(run: RestoreRun, child: str) -> str:
    backup = read_backup(run, child)
    artifact = (
        backup.status.artifact if backup and backup.status and backup.status.phase == BackupPhase.SUCCEEDED else None
    )
    if backup is None or artifact is None:
        return f"the safety backup {child} has no artifact: restore the database by hand"
    bucket, key = storage.parse_s3_uri(artifact.uri)
    size = artifact.files[0].size_bytes if artifact.files else artifact.size_bytes
    manifest = restore_jobs.restore_job(
        **run.job_identity(),
        sha256=artifact.sha256,
        size=size,
        target_secret=target_secret_name(run),
        database=target_database(run),
        clean=True,
        role="rollback",
    )
    outcome = jobs.job_outcome(run.kube, run.namespace, manifest["metadata"]["name"], run.uid)
    if outcome is None or outcome.state == JobState.RUNNING:
        # Services must be down while the database is put back (a Verify failure had started them).
        tiers.stop_in_order(run, run.kube, run.namespace, run.topology, run.poll_seconds)
        outcome = run_job(
            run,
            manifest,
            lambda: url_secret(run, "rollback", bucket, key, backup.spec.storage.s3),
            f"restoring the safety backup {child} into {target_database(run)}",
        )
    if outcome.state == JobState.FAILED:
        raise StepFailed(
            "RollbackFailed",
            f"restoring the safety backup {child} failed: {outcome.message}. The "
            "services are stopped; restore it by hand, then scale them up",
        )
    return f"database restored from the safety backup {child}"
