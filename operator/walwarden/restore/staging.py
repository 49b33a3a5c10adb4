"""Stage and Restore: the restore Job started while the services stop (it downloads and verifies
the artifact, then waits for the operator's go object), the go once they are gone, and the
restored database's row counts against the manifest."""

from __future__ import annotations

import hashlib
import secrets as random

from botocore.exceptions import ClientError

from walwarden import postgres as database
from walwarden.api import RestoreMode, format_timestamp, utcnow
from walwarden.workflow.steps import meta, s3_client
from walwarden.workflow.engine import Run, StepFailed, Wait
from walwarden.kube import jobs
from walwarden.kube.api import owner_reference
from walwarden.kube.runner_job import job_name
from walwarden.kube.secrets import read_secret
from walwarden.restore import job as restore_jobs
from walwarden.restore.common import (
    PRESIGNED_URL_SECONDS,
    not_in_dry_run,
    poll,
    source,
    spec_of,
    target_database,
    target_secret,
    target_secret_name,
    url_secret,
)
from walwarden.runner import restore as restore_runner


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
    namespace, request, uid = meta(run)
    name = job_name(request, uid, "restore")
    if not jobs.job_exists(run.context.kube, namespace, name):
        content = random.token_hex(32)
        go_url = s3_client(run, found.storage).generate_presigned_url(
            "get_object", Params={"Bucket": found.bucket, "Key": go_key(run)}, ExpiresIn=GO_TIMEOUT_SECONDS + 600)
        # The artifact URL must outlive the wait: without staging room the runner streams it after the go.
        url_secret(run, "restore", found.bucket, found.dump.key, found.storage,
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


def signal_restore_job(run: Run, content: str) -> None:
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
    name = run.status.get("restoreJob") or job_name(meta(run)[1], meta(run)[2], "restore")
    outcome = jobs.job_outcome(run.context.kube, meta(run)[0], name)
    if outcome is None:
        raise StepFailed("RestoreJobMissing", f"the restore Job {name} is gone (deleted by hand?); nothing was "
                                              "restored. Create a new RestoreRequest")
    if not run.status.get("restoreGoAt") and (outcome.state == "Running" or _go_was_given(run)):
        # From here on the database may change: rollback has to restore, not just restart.
        run.status["databaseModified"] = True
        if outcome.state == "Running":
            signal_restore_job(run, _go_content(run))
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


