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
    Rollback      only after a failure: the undo of every step that ran, last first
    ReleaseLock   always

The columns say what runs in a dry run, what a failure (or a deletion) undoes, and which steps
touch the vault; tests/unit/restore/test_restore_table.py checks the order keeps its promises.
"""

from __future__ import annotations

from walwarden.api import RestoreStep
from walwarden.restore.run import RestoreRun
from walwarden.restore.steps.plan import plan
from walwarden.restore.steps.preflight import preflight
from walwarden.restore.steps.reconfigure import put_secrets_back, reconfigure
from walwarden.restore.steps.restore import put_database_back, restore
from walwarden.restore.steps.safety_backup import safety_backup
from walwarden.restore.steps.scale_down import scale_down, start_stopped_services
from walwarden.restore.steps.scale_up import scale_up
from walwarden.restore.steps.stage import call_off_staged_job, stage
from walwarden.restore.steps.validate import validate
from walwarden.restore.steps.verify import verify
from walwarden.workflow.engine import Step, StepTable
from walwarden.workflow.steps import acquire_lock, release_lock

RESTORE_TABLE: StepTable[RestoreRun] = StepTable(
    (
        Step(RestoreStep.VALIDATE, validate, in_dry_run=True),
        Step(RestoreStep.PLAN, plan, in_dry_run=True),
        Step(RestoreStep.ACQUIRE_LOCK, acquire_lock),
        Step(RestoreStep.PREFLIGHT, preflight),
        Step(RestoreStep.SAFETY_BACKUP, safety_backup),
        Step(RestoreStep.STAGE, stage, undo=call_off_staged_job),
        Step(RestoreStep.SCALE_DOWN, scale_down, undo=start_stopped_services, touches_vault=True),
        Step(RestoreStep.RESTORE, restore, undo=put_database_back, touches_vault=True),
        Step(RestoreStep.RECONFIGURE, reconfigure, undo=put_secrets_back, touches_vault=True),
        Step(RestoreStep.SCALE_UP, scale_up),
        Step(RestoreStep.VERIFY, verify),
        Step(RestoreStep.ROLLBACK, None, rollback=True),
        Step(RestoreStep.RELEASE_LOCK, release_lock, cleanup=True),
    )
)
