"""Stage: the restore Job starts before the services stop. While they stop it downloads the
artifact and checks its sha256 again, then waits for the operator's go object (go_signal), which
the Restore step writes once ScaleDown is done: downloading costs no downtime.

Undo: a staged Job that never got its go is called off, so it does not sit waiting."""

from __future__ import annotations

import hashlib
import secrets as random

from walwarden.api import RestoreMode
from walwarden.kube import jobs
from walwarden.restore import go_signal
from walwarden.restore import job as restore_jobs
from walwarden.restore.artifact_urls import PRESIGNED_URL_SECONDS, presign_get, url_secret
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import source_of
from walwarden.restore.target import target_database
from walwarden.workflow.engine import UndoCause


def stage(run: RestoreRun) -> str:
    found = source_of(run)
    name = restore_jobs.restore_job_name(run)
    if not jobs.job_exists(run.kube, run.namespace, name):
        content = random.token_hex(32)
        go_url = presign_get(
            run, found.storage, found.bucket, go_signal.go_key(run), go_signal.GO_TIMEOUT_SECONDS + 600
        )
        # The artifact URL must outlive the wait: without staging room the runner streams it after the go.
        url_secret(
            run,
            "restore",
            found.bucket,
            found.dump.key,
            found.storage,
            extra={restore_jobs.URL_SECRET_GO_KEY: go_url, go_signal.GO_CONTENT_KEY: content},
            expires=PRESIGNED_URL_SECONDS + go_signal.GO_TIMEOUT_SECONDS,
        )
        jobs.ensure_job(
            run.kube,
            run.namespace,
            restore_jobs.restore_job_of(
                run,
                database=target_database(run),
                clean=run.spec.mode == RestoreMode.IN_PLACE,
                go_sha256=hashlib.sha256(content.encode()).hexdigest(),
                go_timeout_seconds=go_signal.GO_TIMEOUT_SECONDS,
            ),
        )
    run.status.restore_job = name
    return (
        f"Job {name} downloads and verifies the artifact while the services stop; it restores only on the "
        "operator's go, after ScaleDown"
    )


def call_off_staged_job(run: RestoreRun, cause: UndoCause) -> str | None:
    """Staged, never told to go: tell it to stop (reads status only; once)."""
    status = run.status
    if not status.restore_job or status.restore_go_at:
        return None
    if not status.staged_job_called_off:
        go_signal.call_off(run)
        status.staged_job_called_off = True
    return "the staged restore Job was called off before it touched the database"
