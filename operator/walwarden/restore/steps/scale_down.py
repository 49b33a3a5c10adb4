"""ScaleDown: the services stopped tier by tier (wallet → policy nodes → nats), each tier gone
before the next, then no application session left on the target database (by sessionPolicy).

Undo: the services started again in start order with their original replica counts."""

from __future__ import annotations

from walwarden import postgres
from walwarden.api import RemainingSessionsAction, RestoreStrategy, format_timestamp, parse_timestamp, utcnow
from walwarden.restore.run import RestoreRun
from walwarden.restore.target import target_database, target_secret
from walwarden.workflow import tiers
from walwarden.workflow.engine import StepFailed, UndoCause, Wait

RECONNECT_GRACE_SECONDS = 30  # after the first termination, how long reconnecting clients are tolerated


def scale_down(run: RestoreRun) -> str:
    if run.status.scaled_down_at is None:
        run.status.scaled_down_at = format_timestamp(utcnow())
    stopped = tiers.stop_in_order(
        run, run.kube, run.namespace, run.topology, run.poll_seconds, stuck_after=run.settings.stop_timeout_seconds
    )
    return f"{stopped}; {check_sessions(run)}"


def check_sessions(run: RestoreRun) -> str:
    """No application may still be connected to the database about to be overwritten."""
    policy, secret, dbname = run.spec.session_policy, target_secret(run), target_database(run)
    if (
        run.spec.effective_strategy == RestoreStrategy.SWITCH
        and policy.on_remaining == RemainingSessionsAction.TERMINATE
    ):
        # Waiting costs downtime for nothing: the switch refuses connections to the database and then
        # ends every session left on it (the orchestrator's too, which would reconnect after a plain kill).
        return "sessions left are ended by the switch, after connections are refused"
    try:
        if not postgres.database_exists(secret, dbname):
            return "no sessions (the target database does not exist yet)"
        sessions = postgres.application_sessions(secret, dbname)
    except postgres.DatabaseError as error:
        raise StepFailed(error.reason, f"cannot check sessions on the target: {error.message}") from None
    if not sessions:
        return "no application sessions left"
    listed = "; ".join(s.describe() for s in sessions[:5])
    if policy.on_remaining == RemainingSessionsAction.FAIL:
        raise StepFailed(
            "SessionsRemain",
            f"{len(sessions)} session(s) still connected to {dbname}: {listed}. "
            "Stop those clients, or use sessionPolicy.onRemaining Wait or Terminate",
        )
    if run.status.sessions_seen_at is None:
        run.status.sessions_seen_at = format_timestamp(utcnow())
    waited = (utcnow() - parse_timestamp(run.status.sessions_seen_at)).total_seconds()
    if waited < policy.wait_seconds:
        raise Wait(
            f"{len(sessions)} session(s) still connected to {dbname}, waiting up to {policy.wait_seconds}s: {listed}",
            delay=run.poll_seconds,
        )
    if policy.on_remaining == RemainingSessionsAction.WAIT:
        raise StepFailed(
            "SessionsRemain",
            f"{len(sessions)} session(s) still connected to {dbname} after {policy.wait_seconds}s: {listed}",
        )
    if waited > policy.wait_seconds + RECONNECT_GRACE_SECONDS:
        # Terminated and back again: a client that was not stopped keeps reconnecting. Never loop.
        raise StepFailed(
            "SessionsRemain",
            f"clients keep reconnecting to {dbname} after being terminated: "
            f"{listed}. Stop them (add their service to spec.topology's stop "
            "tiers) and create a new request",
        )
    postgres.terminate_sessions(secret, sessions)
    run.event("SessionsTerminated", f"terminated {len(sessions)} session(s) on {dbname}: {listed}", warning=True)
    raise Wait(f"terminated {len(sessions)} session(s); checking again", delay=1)


def start_stopped_services(run: RestoreRun, cause: UndoCause) -> str | None:
    """Start what ScaleDown stopped (reads status: the recorded replica counts)."""
    if not run.status.original_replicas:
        return None
    loud_after = run.settings.stop_timeout_seconds if cause == UndoCause.FAILURE else None
    started = tiers.start_in_order(run, run.kube, run.namespace, run.topology, run.poll_seconds, loud_after=loud_after)
    run.status.record_downtime()
    return f"the services it had stopped were started again: {started}"
