"""The RestoreRequest workflow: the vault's restore runbook as one ordered table of steps.

    Validate      the source backup, target, secrets, services and approval token are right
    Plan          what will happen: services and replicas, secrets, data-loss window (a dry run ends here)
    AcquireLock   one backup or restore at a time per namespace
    Preflight     a Job downloads the artifact and checks its sha256; target reachable; EMP matches
                  (any failure here ends with every service untouched)
    SafetyBackup  InPlace: a BackupRequest of the target, so a failed restore can be undone
    Stage         the restore Job starts: it downloads and verifies the artifact while the services
                  stop, then waits for the operator's go (no download inside the downtime)
    ScaleDown     stop wallet → policy nodes → nats, each tier gone; no application sessions left
    Restore       the go: the staged Job runs pg_restore --exit-on-error; row counts
                  match the manifest (checked while the services are still stopped)
    Reconfigure   Redirected: snapshot and repoint every db-info secret; restart orchestrator
    ScaleUp       start nats → policy nodes → wallet with their original replica counts
    Verify        pods Ready, wallet /health, /api/v2/accounts has data
    Rollback      only after a failure: original secrets, safety backup (by policy), services
    ReleaseLock   always
"""

from __future__ import annotations

from walwarden.workflow.steps import acquire_lock, release_lock, s3_client
from walwarden.workflow.engine import Run, Step, StepFailed, Wait
from walwarden.restore.checks import plan, preflight, validate
from walwarden.restore.common import not_in_dry_run, source
from walwarden.restore.reconfigure import reconfigure
from walwarden.restore.rollback import rollback
from walwarden.restore.staging import restore, stage
from walwarden.restore.starting import scale_up, verify
from walwarden.restore.stopping import safety_backup, scale_down
from walwarden.storage import audit


def acquire_lock_unless_dry_run(run: Run) -> str:
    not_in_dry_run(run)
    return acquire_lock(run)


RESTORE_STEPS = [
    Step("Validate", validate),
    Step("Plan", plan),
    Step("AcquireLock", acquire_lock_unless_dry_run),
    Step("Preflight", preflight),
    Step("SafetyBackup", safety_backup),
    Step("Stage", stage),
    Step("ScaleDown", scale_down),
    Step("Restore", restore),
    Step("Reconfigure", reconfigure),
    Step("ScaleUp", scale_up),
    Step("Verify", verify),
    Step("Rollback", rollback, only_on_failure=True),
    Step("ReleaseLock", release_lock, always=True),
]


def failed_phase(run: Run) -> str:
    """RolledBack when the world had been touched and was put back; Failed otherwise."""
    rollback_step = next((s for s in run.status.get("steps", []) if s["name"] == "Rollback"), {})
    return "RolledBack" if rollback_step.get("state") == "Succeeded" else "Failed"


def audit_location(run: Run):
    """Where this restore's transitions are logged: beside the artifact it restores."""
    try:
        found = source(run)
    except (StepFailed, Wait):
        return None  # no artifact to log beside (yet); the Events and status still record it
    return s3_client(run, found.storage), found.bucket, audit.audit_key(found.prefix)
