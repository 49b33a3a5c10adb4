"""Running the restore Job that builds a database while the vault runs (Build of Switch and
Redirected, a drill's Build): start it once, wait for it, say how it ended; stop it before what
it writes into is dropped."""

from __future__ import annotations

from collections.abc import Callable

from walwarden.kube import jobs
from walwarden.kube.jobs import JobState
from walwarden.restore import job as restore_jobs
from walwarden.restore.artifact_urls import url_secret
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import source_of
from walwarden.workflow.engine import StepFailed, Wait
from walwarden.workflow.steps import run_job


def restore_into(
    run: RestoreRun, database: str, prepare: Callable[[], None], running: str, failed: Callable[[str], str]
) -> str:
    """Returns the Job's name once it Succeeded. First pass: `prepare()` (make the database), then
    the Job; `running` ends the Wait message, `failed(its message)` the failure's."""
    found = source_of(run)
    manifest = restore_jobs.restore_job_of(run, database=database, clean=False)
    name = run.status.restore_job = manifest["metadata"]["name"]

    def start() -> None:
        prepare()
        url_secret(run, "restore", found.bucket, found.dump.key, found.storage)

    outcome = run_job(run, manifest, start, f"pg_restore of {found.dump.name} into {database}, {running}")
    if outcome.state == JobState.FAILED:
        raise StepFailed(outcome.reason or "RestoreFailed", failed(outcome.message))
    return name


def stop_restore_job(run: RestoreRun, database: str) -> None:
    """Before `database` is dropped: a runner still going would create or fill it again after."""
    name = run.status.restore_job
    running = jobs.job_outcome(run.kube, run.namespace, name, run.uid) if name else None
    if name and running is not None and running.state == JobState.RUNNING:
        jobs.delete_job(run.kube, run.namespace, name)
        raise Wait(f"stopping the restore Job {name} before dropping {database}", delay=1)
