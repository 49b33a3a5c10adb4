"""Switch: inside the stop window, the restored database takes the vault's database's name.

Connections to both are refused (the orchestrator keeps running and would reconnect), the sessions
left are ended, the vault's database is renamed aside to <db>_pre_restore_<time> (kept, refusing
connections: it holds every write up to the stop), the restored one is renamed to <db> and accepts
connections again; the consumers that kept running (orchestrator) are restarted. Each statement is
chosen from what the server shows (restore/switch.py), so a kill between any two is resumed.

Undo: the switch back — the services stopped again if they had started on the restored database,
the restored one renamed back to its sibling name, the previous one to <db>; seconds, no pg_restore.
"""

from __future__ import annotations

from walwarden import postgres
from walwarden.api import PreviousDatabaseStatus, RestoreStep, format_timestamp, utcnow
from walwarden.postgres import databases
from walwarden.postgres.databases import DatabaseInUse
from walwarden.restore import dbinfo
from walwarden.restore.run import RestoreRun
from walwarden.restore.switch import Direction, SwitchNames, SwitchStateUnknown, drive, is_switched, switch_names
from walwarden.restore.target import target_secret
from walwarden.workflow import tiers
from walwarden.workflow.engine import StepFailed, UndoCause, Wait


def switch(run: RestoreRun) -> str:
    names = switch_names(run)
    if run.status.switched_at is None:
        tiers.check_still_stopped(run, run.kube, run.namespace, run.topology)
    if run.status.previous_database is None:
        run.status.previous_database = PreviousDatabaseStatus(name=names.previous)
    done = _drive(run, Direction.FORWARD, names, "the switch")
    if run.status.switched_at is None:
        run.status.switched_at = format_timestamp(utcnow())
    restarted = dbinfo.restart_consumers(run, run.topology.kept_running(), marker="switch")
    did = "; ".join(done) if done else "already switched"
    return (
        f"{did}; {names.database} is the restored database, the previous one is kept as {names.previous} "
        f"(refusing connections); restarted {restarted or 'nothing'}"
    )


def switch_back(run: RestoreRun, cause: UndoCause) -> str | None:
    names, secret = switch_names(run), target_secret(run)
    try:
        observed = databases.states(secret, names.all())
    except postgres.DatabaseError as error:
        raise StepFailed("RollbackFailed", f"cannot read the databases to switch back: {error.message}") from None
    if is_switched(names, observed) and run.status.step_ran(RestoreStep.SCALE_UP):
        # ScaleUp had started services on the restored database: stop them before it goes.
        tiers.stop_in_order(run, run.kube, run.namespace, run.topology, run.poll_seconds)
    done = _drive(run, Direction.BACK, names, "the switch back")
    if done:
        run.status.switched_back = "; ".join(done)
        run.status.previous_database = None
        dbinfo.restart_consumers(run, run.topology.kept_running(), marker="rollback")
    if not run.status.switched_back:
        return None  # nothing had been switched
    # Said on every call: a later undo's wait makes the rollback step run (and report) again.
    return (
        f"switched back in seconds ({run.status.switched_back}): {names.database} is the database from "
        "before the restore"
    )


def _drive(run: RestoreRun, direction: Direction, names: SwitchNames, what: str) -> list[str]:
    try:
        return drive(target_secret(run), direction, names, lambda did: run.event("Switched", did))
    except DatabaseInUse as error:
        raise Wait(f"{what}: {error.message}; ending it again", delay=0.5) from None
    except SwitchStateUnknown as error:
        raise StepFailed("SwitchStateUnknown", str(error)) from None
    except postgres.DatabaseError as error:
        raise StepFailed(error.reason, f"{what} failed: {error.message}") from None
