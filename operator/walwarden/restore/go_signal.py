"""The go signal of a staged restore Job (runner/restore.py GoSignal): an object beside the
artifact whose content only the operator knows, written once the services are stopped."""

from __future__ import annotations

from botocore.exceptions import ClientError

from walwarden.kube.secrets import read_secret
from walwarden.restore import job as restore_jobs
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import source_of
from walwarden.runner.contract import GO_ABORT_CONTENT
from walwarden.storage import bounded
from walwarden.storage import s3 as storage
from walwarden.workflow.engine import StepFailed, Wait
from walwarden.workflow.steps import s3_client

GO_TIMEOUT_SECONDS = 2 * 3600  # covers the longest ScaleDown: sessionPolicy.waitSeconds ≤ 3600
GO_CONTENT_KEY = "goContent"  # in the restore URL Secret: what the go object must hold
# The go content is 64 hex digits; anyone who may write to the bucket may write a larger object
# there, which cannot be the go and is not read (the restore Job reads as much, runner/restore.py).
MAX_GO_BYTES = 4096


def go_key(run: RestoreRun) -> str:
    """Beside the artifact, one per request; kept afterwards like audit.log (a record, no secret)."""
    return f"{source_of(run).prefix.strip('/')}/restore-signals/{run.uid}"


def go_content(run: RestoreRun) -> str:
    """What the go object must hold: kept in the restore Job's URL Secret since Stage."""
    secret = read_secret(run.kube, run.namespace, restore_jobs.url_secret_name(run.name, run.uid, "restore")) or {}
    content = secret.get(GO_CONTENT_KEY)
    if not content:
        raise StepFailed(
            "GoSignalLost",
            "the restore Job's Secret with its go signal is gone, so it cannot be "
            "told to start; nothing was restored. Create a new RestoreRequest",
        )
    return content


def _write(run: RestoreRun, content: str) -> None:
    found = source_of(run)
    s3_client(run, found.storage).put_object(Bucket=found.bucket, Key=go_key(run), Body=content.encode())


def give_go(run: RestoreRun) -> None:
    _write(run, go_content(run))


def call_off(run: RestoreRun) -> None:
    _write(run, GO_ABORT_CONTENT)


def go_was_given(run: RestoreRun) -> bool:
    """The world's answer (an operator may have died between writing the go and recording it)."""
    found = source_of(run)
    client, key = s3_client(run, found.storage), go_key(run)
    try:
        body, _ = bounded.read_object(client, found.bucket, key, MAX_GO_BYTES, storage.s3_uri(found.bucket, key))
    except bounded.TooLarge:
        return False  # not the go: the content is 64 hex digits
    except ClientError as error:
        if storage.is_not_found(error):
            return False  # no go object: never given
        raise Wait(
            f"cannot tell whether the restore Job was told to go ({type(error).__name__}); looking again",
            delay=run.poll_seconds,
        ) from None
    return bool(body.decode(errors="replace") == go_content(run))
