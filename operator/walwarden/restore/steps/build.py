"""Build: the restored database, made while the vault keeps running on its own (Switch, Redirected).

Switch: a sibling of the vault's database on the same server (<db>_walwarden_<uid>), made the way
the original is (owner, encoding, locale, tablespace) with what pg_dump keeps only for --create
(comment, ACL, per-database settings); then a restore Job runs pg_restore --exit-on-error into it,
in parallel from the staged artifact; then its row counts are checked against the manifest and
it stops accepting connections until the switch. Redirected: the same Job restores into the new
server's database (creating it when missing) and the counts are checked there.

Both first create the roles the backup records and the target lacks, with spec.target.roles
CreateMissing (restore/roles.py).

Undo: what Build made is dropped — the sibling (after a switch back it holds the restored copy
again), or a Redirected database this restore created. A database it did not create is left. Then
the roles this restore created (never one that was there before).
"""

from __future__ import annotations

from walwarden import failpoints, postgres
from walwarden.api import RestoreStrategy
from walwarden.postgres import databases
from walwarden.restore.restore_job import restore_into, stop_restore_job
from walwarden.restore.roles import create_missing_roles, drop_created_roles
from walwarden.restore.row_counts import compare_row_counts
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import source_of
from walwarden.restore.switch import switch_names
from walwarden.restore.target import target_database, target_secret
from walwarden.workflow.engine import StepFailed, UndoCause


def restored_database(run: RestoreRun) -> str:
    if run.spec.effective_strategy == RestoreStrategy.SWITCH:
        return switch_names(run).restored
    return target_database(run)


def build(run: RestoreRun) -> str:
    found, status = source_of(run), run.status
    database, secret = restored_database(run), target_secret(run)
    status.restored_database = database

    def make_database() -> None:
        try:
            if run.spec.effective_strategy == RestoreStrategy.SWITCH:
                _make_sibling(run, secret, database)
            elif status.restored_database_created is None:
                status.restored_database_created = not postgres.database_exists(secret, database)
            create_missing_roles(run, secret)
        except postgres.DatabaseError as error:
            raise StepFailed(error.reason, f"{error.message}. The vault was not touched: it runs as before") from None

    name = restore_into(
        run,
        database,
        make_database,
        "the vault running",
        lambda said: f"the restore Job failed: {said}. The vault's own database was not touched",
    )
    switching = run.spec.effective_strategy == RestoreStrategy.SWITCH
    try:
        sibling = databases.states(secret, [database])[database]
    except postgres.DatabaseError as error:
        raise StepFailed(error.reason, error.message) from None
    # A sibling that refuses connections (closed only once its counts matched) or that is gone
    # (switched in already: Build runs again when its record was lost) was counted by an earlier pass.
    counted = switching and not sibling.allows_connections
    checked = ["row counts matched the manifest"] if counted else compare_row_counts(run, database)
    if switching and not counted:
        try:  # nobody may use it before it is switched in (a wrong DB_NAME, a curious person)
            databases.allow_connections(secret, database, False)
            databases.terminate_all_sessions(secret, [database])
        except postgres.DatabaseError as error:
            raise StepFailed(error.reason, error.message) from None
        failpoints.reached("build:closed")
    if switching and sibling.exists:
        _require_previous_name_free(run, secret)
    where = f"{database} (refusing connections until the switch)" if switching else database
    created = [f"created the role(s) {', '.join(status.created_roles)} first"] if status.created_roles else []
    return "; ".join([f"Job {name} restored {found.dump.size_bytes} bytes into {where}", *created, *checked])


def _require_previous_name_free(run: RestoreRun, secret: dict[str, str]) -> None:
    """Rechecked last before the stop: the name the switch gives the vault's database is free. It is
    predictable, and with the sibling not switched in yet, a database under it is not this
    restore's: the switch would find a state it does not know, with the services stopped."""
    previous = switch_names(run).previous
    try:
        taken = postgres.database_exists(secret, previous)
    except postgres.DatabaseError as error:
        raise StepFailed(error.reason, error.message) from None
    if taken:
        raise StepFailed(
            "PreviousNameTaken",
            f"a database named {previous} exists on the target server, and the switch keeps the vault's database "
            "under that name: it was not made by this restore. The vault was not touched: it runs as before. Find "
            f"out who made {previous}, drop or rename it, and create a new request",
        )


def _make_sibling(run: RestoreRun, secret: dict[str, str], database: str) -> None:
    original = switch_names(run).database
    databases.create_like(secret, database, databases.read_properties(secret, original))
    failpoints.reached("build:created")
    run.event("RestoredDatabaseCreated", f"created {database} the way {original} is made, for the restore")


def drop_restored_database(run: RestoreRun, cause: UndoCause) -> str | None:
    """The restored database, then the roles this restore created for it (they own what it held)."""
    done = [said for said in (_drop_database(run), drop_created_roles(run)) if said]
    return "; ".join(done) or None


def _drop_database(run: RestoreRun) -> str | None:
    database, status = run.status.restored_database, run.status
    if database is None:
        return None
    switch = run.spec.effective_strategy == RestoreStrategy.SWITCH
    if not switch and not status.restored_database_created:
        return f"{database} was there before the restore and is left as it is (it may be partly restored)"
    stop_restore_job(run, database)
    try:
        secret = target_secret(run)
        if not postgres.database_exists(secret, database):
            return None
        databases.drop(secret, database)
    except postgres.DatabaseError as error:
        raise StepFailed("RollbackFailed", f"dropping the restored database {database}: {error.message}") from None
    return f"the restored database {database} was dropped"
