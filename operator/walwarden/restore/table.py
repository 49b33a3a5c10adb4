"""The RestoreRequest workflow: the vault's restore runbook as ordered tables of steps, one per
strategy; `table_for(spec)` picks the request's (its spec is immutable, so it never changes).

    Validate      the source backup, target, secrets, services and approval token are right
    Plan          what will happen: strategy, what runs before and inside the stop window, services
                  and replicas, secrets, the history lost or kept (a dry run ends here)
    AcquireLock   one backup or restore at a time per namespace
    Preflight     a Job downloads the artifact and checks its sha256; target reachable; EMP matches;
                  what the strategy needs (privileges, free names, an empty Redirected target)
                  (any failure here ends with every service untouched)
    SafetyBackup  Overwrite: a BackupRequest of the target, so a failed restore can be undone
                  (Switch keeps the database itself, Redirected never writes to it: skipped)
    Build         Switch, Redirected: pg_restore into a new database while the vault runs; row
                  counts match the manifest there
    Stage         Overwrite: the restore Job starts: it downloads and verifies the artifact while
                  the services stop, then waits for the operator's go
    ScaleDown     stop wallet → policy nodes → nats, each tier gone; no application sessions left
    Restore       Overwrite: the go: pg_restore --clean into the live database; row counts match
    Switch        Switch: rename the vault's database aside (kept), the restored one into place
    Reconfigure   Redirected: snapshot and repoint every db-info secret; restart orchestrator
    ScaleUp       start nats → policy nodes → wallet with their original replica counts
    Verify        pods Ready, wallet /health, /api/v2/accounts has data
    Rollback      only after a failure: the undo of every step that ran, last first
    DropPrevious  Switch, after success: the previous database kept or dropped (spec.previousDatabase)
    ReleaseLock   always

Drill (restore/steps/drill.py): Validate, Preflight, Build into a scratch database, Check, then
DropScratch always. No lock (it reads the backup and writes only its own scratch database) and no
step that touches the vault: tests/unit/restore/test_restore_table.py checks that too.

The stop window is ScaleDown through ScaleUp: Switch and Redirected hold only the switch there;
spec.stopServicesFirst moves ScaleDown before Build (the downtime then includes pg_restore).

The columns say what runs in a dry run, what a failure (or a deletion) undoes, and which steps
touch the vault; tests/unit/restore/test_restore_table.py checks every table keeps its promises.
"""

from __future__ import annotations

from walwarden.api import RestoreMode, RestoreRequestSpec, RestoreStep, RestoreStrategy
from walwarden.restore.run import RestoreRun
from walwarden.restore.steps.build import build, drop_restored_database
from walwarden.restore.steps.drill import (
    build_scratch,
    check_scratch,
    drop_scratch,
    drop_scratch_database,
    preflight_drill,
    validate_drill,
)
from walwarden.restore.steps.drop_previous import drop_previous
from walwarden.restore.steps.plan import plan
from walwarden.restore.steps.preflight import preflight
from walwarden.restore.steps.reconfigure import put_secrets_back, reconfigure
from walwarden.restore.steps.restore import put_database_back, restore
from walwarden.restore.steps.safety_backup import safety_backup
from walwarden.restore.steps.scale_down import scale_down, start_stopped_services
from walwarden.restore.steps.scale_up import scale_up
from walwarden.restore.steps.stage import call_off_staged_job, stage
from walwarden.restore.steps.switch import switch, switch_back
from walwarden.restore.steps.validate import validate
from walwarden.restore.steps.verify import verify
from walwarden.workflow.engine import Step, StepTable
from walwarden.workflow.steps import acquire_lock, release_lock

VALIDATE: Step[RestoreRun] = Step(RestoreStep.VALIDATE, validate, in_dry_run=True)
PLAN: Step[RestoreRun] = Step(RestoreStep.PLAN, plan, in_dry_run=True)
ACQUIRE_LOCK: Step[RestoreRun] = Step(RestoreStep.ACQUIRE_LOCK, acquire_lock)
PREFLIGHT: Step[RestoreRun] = Step(RestoreStep.PREFLIGHT, preflight)
SAFETY_BACKUP: Step[RestoreRun] = Step(RestoreStep.SAFETY_BACKUP, safety_backup)
BUILD: Step[RestoreRun] = Step(RestoreStep.BUILD, build, undo=drop_restored_database)
STAGE: Step[RestoreRun] = Step(RestoreStep.STAGE, stage, undo=call_off_staged_job)
SCALE_DOWN: Step[RestoreRun] = Step(RestoreStep.SCALE_DOWN, scale_down, undo=start_stopped_services, touches_vault=True)
RESTORE: Step[RestoreRun] = Step(RestoreStep.RESTORE, restore, undo=put_database_back, touches_vault=True)
SWITCH: Step[RestoreRun] = Step(RestoreStep.SWITCH, switch, undo=switch_back, touches_vault=True)
RECONFIGURE: Step[RestoreRun] = Step(RestoreStep.RECONFIGURE, reconfigure, undo=put_secrets_back, touches_vault=True)
SCALE_UP: Step[RestoreRun] = Step(RestoreStep.SCALE_UP, scale_up)
VERIFY: Step[RestoreRun] = Step(RestoreStep.VERIFY, verify)
ROLLBACK: Step[RestoreRun] = Step(RestoreStep.ROLLBACK, None, rollback=True)
DROP_PREVIOUS: Step[RestoreRun] = Step(RestoreStep.DROP_PREVIOUS, drop_previous)
RELEASE_LOCK: Step[RestoreRun] = Step(RestoreStep.RELEASE_LOCK, release_lock, cleanup=True)

CHECKS = (VALIDATE, PLAN, ACQUIRE_LOCK, PREFLIGHT, SAFETY_BACKUP)
AFTER = (SCALE_UP, VERIFY, ROLLBACK)

# InPlace, strategy Switch (the default): built while the vault runs, switched in the stop window.
SWITCH_TABLE: StepTable[RestoreRun] = StepTable(
    (*CHECKS, BUILD, SCALE_DOWN, SWITCH, *AFTER, DROP_PREVIOUS, RELEASE_LOCK)
)
SWITCH_STOPPING_FIRST_TABLE: StepTable[RestoreRun] = StepTable(
    (*CHECKS, SCALE_DOWN, BUILD, SWITCH, *AFTER, DROP_PREVIOUS, RELEASE_LOCK)
)
# InPlace, strategy Overwrite: pg_restore --clean into the live database, inside the stop window.
OVERWRITE_TABLE: StepTable[RestoreRun] = StepTable((*CHECKS, STAGE, SCALE_DOWN, RESTORE, *AFTER, RELEASE_LOCK))
# Redirected: built on the new server while the vault runs; the stop window repoints the secrets.
REDIRECTED_TABLE: StepTable[RestoreRun] = StepTable((*CHECKS, BUILD, SCALE_DOWN, RECONFIGURE, *AFTER, RELEASE_LOCK))
REDIRECTED_STOPPING_FIRST_TABLE: StepTable[RestoreRun] = StepTable(
    (*CHECKS, SCALE_DOWN, BUILD, RECONFIGURE, *AFTER, RELEASE_LOCK)
)
# Drill: restored into a scratch database and proven there, then dropped; the vault is not touched.
DRILL_TABLE: StepTable[RestoreRun] = StepTable(
    (
        Step(RestoreStep.VALIDATE, validate_drill, in_dry_run=True),
        Step(RestoreStep.PREFLIGHT, preflight_drill),
        Step(RestoreStep.BUILD, build_scratch, undo=drop_scratch_database),
        # A checkpoint: shown Running before the checks, which may take minutes, begin.
        Step(RestoreStep.CHECK, check_scratch, checkpoint=True),
        # A checkpoint: the checks' results are recorded before the database they were made on goes.
        Step(RestoreStep.DROP_SCRATCH, drop_scratch, cleanup=True, checkpoint=True),
    )
)
VAULT_TABLES = (  # the restores that change the vault
    SWITCH_TABLE,
    SWITCH_STOPPING_FIRST_TABLE,
    OVERWRITE_TABLE,
    REDIRECTED_TABLE,
    REDIRECTED_STOPPING_FIRST_TABLE,
)
ALL_TABLES = (*VAULT_TABLES, DRILL_TABLE)


def table_for(spec: RestoreRequestSpec) -> StepTable[RestoreRun]:
    if spec.mode == RestoreMode.DRILL:
        return DRILL_TABLE
    if spec.mode == RestoreMode.REDIRECTED:
        return REDIRECTED_STOPPING_FIRST_TABLE if spec.stop_services_first else REDIRECTED_TABLE
    if spec.effective_strategy == RestoreStrategy.OVERWRITE:
        return OVERWRITE_TABLE  # it stops the services before pg_restore anyway
    return SWITCH_STOPPING_FIRST_TABLE if spec.stop_services_first else SWITCH_TABLE
