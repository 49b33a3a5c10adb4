"""The backup's step table keeps its promises."""

from __future__ import annotations

from walwarden.api import BackupStep
from walwarden.backup.table import BACKUP_TABLE

STEPS = list(BACKUP_TABLE)


def test_every_step_of_the_enum_is_in_the_table_once():
    names = [str(step.name) for step in STEPS]
    assert sorted(names) == sorted(str(name) for name in BackupStep) and len(set(names)) == len(names)


def test_stopped_services_are_started_on_every_path():
    quiesce, resume = BACKUP_TABLE.index(BackupStep.QUIESCE), BACKUP_TABLE.index(BackupStep.RESUME)
    assert STEPS[quiesce].touches_vault and STEPS[quiesce].undo is not None  # a deletion starts them
    assert quiesce > BACKUP_TABLE.index(BackupStep.ACQUIRE_LOCK)
    assert resume > BACKUP_TABLE.index(BackupStep.VERIFY_ARTIFACT) and STEPS[resume].cleanup  # failures too


def test_clean_up_steps_come_last_and_the_lock_is_released_last():
    cleanup = [step.cleanup for step in STEPS]
    assert cleanup == sorted(cleanup) and STEPS[-1].name == BackupStep.RELEASE_LOCK
