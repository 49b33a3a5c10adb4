"""Reconfigure (Redirected): snapshot and repoint every db-info secret, in Kubernetes, AWS
Secrets Manager or Azure Key Vault, and restart the consumers that kept running.

Undo: the db-info secrets put back from the snapshot. Services ScaleUp had started on the new
database are stopped first (a rolling restart would run old and new pods against two databases at
once), and start again on the original with ScaleDown's undo; the ones kept running are rolled."""

from __future__ import annotations

from walwarden.api import RestoreMode, RestoreStep
from walwarden.restore import dbinfo
from walwarden.restore.run import RestoreRun
from walwarden.workflow import tiers
from walwarden.workflow.engine import Skip, UndoCause


def reconfigure(run: RestoreRun) -> str:
    redirect = run.spec.redirect
    if run.spec.mode != RestoreMode.REDIRECTED or redirect is None:
        raise Skip("InPlace: the services keep their database")
    if not run.status.secrets_repointed:
        tiers.check_still_stopped(run, run.kube, run.namespace, run.topology)
    repointed = dbinfo.repointed_values(run)
    dbinfo.keep_snapshot(run, repointed)
    run.status.secrets_repointed = True
    not_synced = dbinfo.write(run, lambda name: repointed[name])
    restarted = dbinfo.restart_consumers(run, run.topology.kept_running(), marker="reconfigure")
    waiting = f"; no synced Kubernetes copy yet of {', '.join(not_synced)}" if not_synced else ""
    logins = [entry.service for entry in redirect.credentials]
    with_logins = f", with new logins for {', '.join(logins)}" if logins else ""
    return (
        f"repointed {len(dbinfo.secret_names(run))} db-info secrets ({run.secret_backend}) to {redirect.db_host}"
        f"{with_logins}{waiting}; restarted {restarted or 'nothing'}"
    )


def put_secrets_back(run: RestoreRun, cause: UndoCause) -> str | None:
    if run.status.secrets_repointed is None:
        return None
    if run.status.secrets_repointed:
        if run.status.step_ran(RestoreStep.SCALE_UP):
            tiers.stop_in_order(run, run.kube, run.namespace, run.topology, run.poll_seconds)
        dbinfo.put_back(run)
        dbinfo.restart_consumers(run, run.topology.kept_running(), marker="rollback")
        run.status.secrets_repointed = False  # put back: a later pass of the rollback does not stop again
    # Said on every call: a later undo's wait makes the rollback step run (and report) again.
    return "db-info secrets restored from the snapshot"
