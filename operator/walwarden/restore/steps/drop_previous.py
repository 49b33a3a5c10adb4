"""DropPrevious: after a Switch restore succeeded, what spec.previousDatabase says becomes of the
replaced database — kept (the default: it holds the history after the backup), dropped at once, or
dropped later (restore/previous.py, from the operator's timer). Never before Verify succeeded: this
step follows it and does not run on the failure path."""

from __future__ import annotations

from datetime import timedelta

from walwarden.api import format_timestamp, utcnow
from walwarden.restore.previous import drop_previous_database
from walwarden.restore.run import RestoreRun
from walwarden.workflow.engine import Skip, StepFailed


def drop_previous(run: RestoreRun) -> str:
    previous = run.status.previous_database
    if previous is None:
        raise Skip("no previous database")
    wanted = run.spec.previous_database
    after = wanted.drop_after_seconds if wanted else None
    if after is None:
        raise Skip(
            f"{previous.name} is kept, refusing connections, with the history after the backup; "
            "drop it when nobody needs that history (DROP DATABASE), or set spec.previousDatabase.dropAfterSeconds"
        )
    if after > 0:
        previous.drop_at = previous.drop_at or format_timestamp(utcnow() + timedelta(seconds=after))
        raise Skip(f"{previous.name} is kept until {previous.drop_at}, then dropped")
    try:
        return drop_previous_database(run)
    except StepFailed as failure:
        # The restore itself succeeded and was verified: a drop that cannot be done is said, not a failure.
        run.event(failure.reason, f"the previous database was not dropped: {failure.message}", warning=True)
        raise Skip(f"not dropped ({failure.reason}): {failure.message}") from None
