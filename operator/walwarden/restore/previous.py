"""The previous database of a Switch restore: dropped when spec.previousDatabase asks, at once
(step DropPrevious) or once its time has come (the operator's timer on finished requests)."""

from __future__ import annotations

from walwarden import postgres
from walwarden.api import RestorePhase, format_timestamp, parse_timestamp, utcnow
from walwarden.postgres import databases
from walwarden.restore.run import RestoreRun
from walwarden.restore.switch import switch_names
from walwarden.restore.target import target_secret
from walwarden.workflow.engine import StepFailed


def drop_previous_database(run: RestoreRun) -> str:
    previous = run.status.previous_database
    if previous is None or previous.dropped_at:
        return "nothing to drop"
    names, secret = switch_names(run), target_secret(run)
    try:
        state = databases.states(secret, [previous.name])[previous.name]
        if previous.name != names.previous:
            raise StepFailed("PreviousDatabaseUnknown", f"{previous.name} is not the database this restore set aside")
        if state.allows_connections:  # somebody opened it again, to read it: not ours to drop any more
            raise StepFailed(
                "PreviousDatabaseInUse",
                f"{previous.name} accepts connections (someone allowed them): it is left; drop it by hand",
            )
        if state.exists:
            databases.drop(secret, previous.name)
    except postgres.DatabaseError as error:
        raise StepFailed(error.reason, f"dropping {previous.name}: {error.message}") from None
    previous.dropped_at = format_timestamp(utcnow())
    run.event("PreviousDatabaseDropped", f"dropped {previous.name}, as spec.previousDatabase asked")
    return f"dropped {previous.name}, as spec.previousDatabase asked"


def drop_when_due(run: RestoreRun) -> str | None:
    """For a finished, Succeeded request whose previous database's time has come: drop it."""
    previous = run.status.previous_database
    if run.status.phase != RestorePhase.SUCCEEDED or previous is None or previous.dropped_at or not previous.drop_at:
        return None
    if parse_timestamp(previous.drop_at) > utcnow():
        return None
    return drop_previous_database(run)
