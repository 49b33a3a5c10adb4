"""The restore's step table keeps its promises whatever order a change gives it."""

from __future__ import annotations

from walwarden.api import RestoreStep
from walwarden.restore.table import RESTORE_TABLE

STEPS = list(RESTORE_TABLE)
NAMES = [str(step.name) for step in STEPS]


def position(name: RestoreStep) -> int:
    return RESTORE_TABLE.index(name)


def test_every_step_of_the_enum_is_in_the_table_once():
    assert sorted(NAMES) == sorted(str(name) for name in RestoreStep)
    assert len(set(NAMES)) == len(NAMES)


def test_only_a_prefix_of_checks_runs_in_a_dry_run():
    dry = [step.in_dry_run for step in STEPS]
    assert dry[0] and dry == sorted(dry, reverse=True), "dry-run steps must come first, before anything changes"
    assert not any(step.undo or step.touches_vault for step in STEPS if step.in_dry_run)


def test_what_touches_the_vault_comes_after_the_lock_and_every_check_and_can_be_undone():
    for step in STEPS:
        if step.touches_vault:
            assert position(step.name) > position(RestoreStep.ACQUIRE_LOCK)
            assert position(step.name) > position(RestoreStep.PREFLIGHT)
            assert step.undo is not None, f"{step.name} changes the vault but declares no undo"


def test_the_rollback_comes_after_every_step_it_undoes_and_only_clean_up_follows_it():
    [rollback] = [i for i, step in enumerate(STEPS) if step.rollback]
    assert all(i < rollback for i, step in enumerate(STEPS) if step.undo)
    assert all(step.cleanup for step in STEPS[rollback + 1 :])
    assert STEPS[-1].name == RestoreStep.RELEASE_LOCK and STEPS[-1].cleanup


def test_the_stop_window_holds_the_switch_and_verify_follows_the_start():
    assert position(RestoreStep.SAFETY_BACKUP) < position(RestoreStep.SCALE_DOWN)
    assert position(RestoreStep.STAGE) < position(RestoreStep.SCALE_DOWN)  # downloads before the stop
    assert position(RestoreStep.SCALE_DOWN) < position(RestoreStep.RESTORE) < position(RestoreStep.SCALE_UP)
    assert position(RestoreStep.SCALE_DOWN) < position(RestoreStep.RECONFIGURE) < position(RestoreStep.SCALE_UP)
    assert position(RestoreStep.SCALE_UP) < position(RestoreStep.VERIFY)  # Verify's deadline starts at ScaleUp


def test_undo_runs_secrets_and_database_before_the_services_start():
    order = [str(step.name) for step in reversed(STEPS) if step.undo]
    assert order.index(RestoreStep.RECONFIGURE) < order.index(RestoreStep.SCALE_DOWN)
    assert order.index(RestoreStep.RESTORE) < order.index(RestoreStep.SCALE_DOWN)


def test_the_plan_lists_the_steps_that_run_when_nothing_fails():
    assert RESTORE_TABLE.planned() == [name for name in NAMES if name != RestoreStep.ROLLBACK]
