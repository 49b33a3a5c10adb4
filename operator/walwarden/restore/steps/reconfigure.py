"""Reconfigure (Redirected): snapshot and repoint every db-info secret, in Kubernetes, AWS
Secrets Manager or Azure Key Vault, and restart the consumers that kept running.

Undo: the db-info secrets put back from the snapshot, and every database user rolled (running
ones may have read the new values)."""

from __future__ import annotations

from walwarden.api import RestoreMode
from walwarden.restore import dbinfo
from walwarden.restore.run import RestoreRun
from walwarden.workflow.engine import Skip, UndoCause


def reconfigure(run: RestoreRun) -> str:
    redirect = run.spec.redirect
    if run.spec.mode != RestoreMode.REDIRECTED or redirect is None:
        raise Skip("InPlace: the services keep their database")
    dbinfo.keep_snapshot(run)
    new = {"DB_HOST": redirect.db_host}
    if redirect.db_port:
        new["DB_PORT"] = str(redirect.db_port)
    if redirect.db_name:
        new["DB_NAME"] = redirect.db_name
    run.status.secrets_repointed = True
    not_synced = dbinfo.write(run, lambda name: new)
    stopped = {name for tier in run.topology.stop_tiers for name in tier}
    running = [name for name in run.topology.restart_after_reconfigure if name not in stopped]
    restarted = dbinfo.restart_consumers(run, running, marker="reconfigure")
    waiting = f"; no synced Kubernetes copy yet of {', '.join(not_synced)}" if not_synced else ""
    return (
        f"repointed {len(dbinfo.secret_names(run))} db-info secrets ({run.secret_backend}) to {redirect.db_host}"
        f"{waiting}; restarted {restarted or 'nothing'}"
    )


def put_secrets_back(run: RestoreRun, cause: UndoCause) -> str | None:
    if not run.status.secrets_repointed:
        return None
    dbinfo.put_back(run)
    dbinfo.restart_consumers(run, run.topology.database_services, marker="rollback")
    return "db-info secrets restored from the snapshot"
