"""The BackupRequest workflow: one ordered table of steps, read top to bottom.

Validate        the spec's Secrets (and services, for quiesce) exist
AcquireLock     one backup or restore at a time per namespace (others wait, visibly)
Quiesce         optional: stop the services in stop order, recording their replica counts
Dump            the runner Job streams pg_dump into S3 and writes the manifest beside it
VerifyArtifact  the manifest is the one our Job signed, and every dump's size in S3 matches
Resume          always: start stopped services in start order with their original counts
ReleaseLock     always: let the next request in the namespace run
"""

from __future__ import annotations

from walwarden.api import BackupStep
from walwarden.backup.run import BackupRun
from walwarden.backup.steps import dump, quiesce, resume, start_quiesced_services, validate, verify_artifact
from walwarden.workflow.engine import Step, StepTable
from walwarden.workflow.steps import acquire_lock, release_lock

BACKUP_TABLE: StepTable[BackupRun] = StepTable(
    (
        Step(BackupStep.VALIDATE, validate),
        Step(BackupStep.ACQUIRE_LOCK, acquire_lock),
        Step(BackupStep.QUIESCE, quiesce, undo=start_quiesced_services, touches_vault=True),
        Step(BackupStep.DUMP, dump),
        Step(BackupStep.VERIFY_ARTIFACT, verify_artifact),
        Step(BackupStep.RESUME, resume, cleanup=True),
        Step(BackupStep.RELEASE_LOCK, release_lock, cleanup=True),
    )
)
