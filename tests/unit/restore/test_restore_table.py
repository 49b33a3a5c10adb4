"""Every restore table (one per strategy) keeps its promises whatever order a change gives it."""

from __future__ import annotations

import pytest

from walwarden.api import RestoreMode, RestoreRequestSpec, RestoreStep
from walwarden.restore.table import (
    ALL_TABLES,
    DRILL_TABLE,
    OVERWRITE_TABLE,
    REDIRECTED_STOPPING_FIRST_TABLE,
    REDIRECTED_TABLE,
    SWITCH_STOPPING_FIRST_TABLE,
    SWITCH_TABLE,
    VAULT_TABLES,
    table_for,
)
from walwarden.workflow.engine import StepTable

TABLES = pytest.mark.parametrize(
    "table",
    VAULT_TABLES,
    ids=["switch", "switch-stopping-first", "overwrite", "redirected", "redirected-stopping-first"],
)
EVERY_TABLE = pytest.mark.parametrize(
    "table",
    ALL_TABLES,
    ids=["switch", "switch-stopping-first", "overwrite", "redirected", "redirected-stopping-first", "drill"],
)


def names(table: StepTable) -> list[str]:
    return [str(step.name) for step in table]


def test_every_step_of_the_enum_is_in_some_table_and_each_table_has_it_once():
    assert set().union(*(names(table) for table in ALL_TABLES)) == {str(name) for name in RestoreStep}
    for table in ALL_TABLES:
        assert len(set(names(table))) == len(names(table))


@EVERY_TABLE
def test_only_a_prefix_of_checks_runs_in_a_dry_run(table):
    dry = [step.in_dry_run for step in table]
    assert dry[0] and dry == sorted(dry, reverse=True), "dry-run steps must come first, before anything changes"
    assert not any(step.undo or step.touches_vault for step in table if step.in_dry_run)


@TABLES
def test_what_touches_the_vault_comes_after_the_lock_and_every_check_and_can_be_undone(table):
    for step in table:
        if step.touches_vault:
            assert table.index(step.name) > table.index(RestoreStep.ACQUIRE_LOCK)
            assert table.index(step.name) > table.index(RestoreStep.PREFLIGHT)
            assert step.undo is not None, f"{step.name} changes the vault but declares no undo"


@TABLES
def test_the_rollback_comes_after_every_step_it_undoes_and_only_success_or_clean_up_follows_it(table):
    steps = list(table)
    [rollback] = [i for i, step in enumerate(steps) if step.rollback]
    assert all(i < rollback for i, step in enumerate(steps) if step.undo)
    # After the rollback: clean-up, or what acts only once everything succeeded (and is never undone).
    assert all(step.cleanup or not (step.undo or step.touches_vault) for step in steps[rollback + 1 :])
    assert steps[-1].name == RestoreStep.RELEASE_LOCK and steps[-1].cleanup


@TABLES
def test_the_stop_window_holds_only_the_change_and_verify_follows_the_start(table):
    down, up = table.index(RestoreStep.SCALE_DOWN), table.index(RestoreStep.SCALE_UP)
    assert table.index(RestoreStep.SAFETY_BACKUP) < down
    assert up < table.index(RestoreStep.VERIFY)  # Verify's deadline starts at ScaleUp
    change = {RestoreStep.RESTORE, RestoreStep.SWITCH, RestoreStep.RECONFIGURE}
    inside = [str(step.name) for step in list(table)[down + 1 : up]]
    assert len(change & set(inside)) == 1, inside  # exactly one way of changing the database
    allowed_inside = change | ({RestoreStep.BUILD} if table in STOPPING_FIRST else set())
    assert set(inside) <= allowed_inside, inside


STOPPING_FIRST = (SWITCH_STOPPING_FIRST_TABLE, REDIRECTED_STOPPING_FIRST_TABLE)


@pytest.mark.parametrize("table", [SWITCH_TABLE, REDIRECTED_TABLE])
def test_switch_and_redirected_build_the_database_while_the_vault_runs(table):
    assert table.index(RestoreStep.PREFLIGHT) < table.index(RestoreStep.BUILD) < table.index(RestoreStep.SCALE_DOWN)


def test_overwrite_downloads_before_the_stop():
    assert OVERWRITE_TABLE.index(RestoreStep.STAGE) < OVERWRITE_TABLE.index(RestoreStep.SCALE_DOWN)


def test_the_previous_database_is_dropped_only_after_verify_and_never_on_the_failure_path():
    for table in (SWITCH_TABLE, SWITCH_STOPPING_FIRST_TABLE):
        drop = next(step for step in table if step.name == RestoreStep.DROP_PREVIOUS)
        assert table.index(RestoreStep.VERIFY) < table.index(RestoreStep.DROP_PREVIOUS)
        assert not drop.cleanup and not drop.rollback and not drop.in_dry_run


@TABLES
def test_undo_puts_the_database_and_secrets_back_before_the_services_start(table):
    order = [str(step.name) for step in reversed(list(table)) if step.undo]
    for change in (RestoreStep.RESTORE, RestoreStep.SWITCH, RestoreStep.RECONFIGURE):
        if change in order:
            assert order.index(change) < order.index(RestoreStep.SCALE_DOWN)
    if RestoreStep.SWITCH in order:  # the restored copy is dropped only once it was switched back out
        assert order.index(RestoreStep.SWITCH) < order.index(RestoreStep.BUILD)


@EVERY_TABLE
def test_the_plan_lists_the_steps_that_run_when_nothing_fails(table):
    assert table.planned() == [name for name in names(table) if name != RestoreStep.ROLLBACK]


def spec(**fields) -> RestoreRequestSpec:
    base = {"source": {"backupRef": {"name": "nightly"}}, "mode": "InPlace"}
    if fields.get("mode") == RestoreMode.REDIRECTED:
        base |= {"target": {"secretRef": {"name": "db"}}, "redirect": {"dbHost": "db2", "environment": "prod"}}
    return RestoreRequestSpec.model_validate(base | fields)


def test_each_spec_gets_its_strategys_table():
    assert table_for(spec()) is SWITCH_TABLE  # the default
    assert table_for(spec(strategy="Switch", stopServicesFirst=True)) is SWITCH_STOPPING_FIRST_TABLE
    assert table_for(spec(strategy="Overwrite")) is OVERWRITE_TABLE
    assert table_for(spec(strategy="Overwrite", stopServicesFirst=True)) is OVERWRITE_TABLE  # it stops first anyway
    assert table_for(spec(mode="Redirected")) is REDIRECTED_TABLE
    assert table_for(spec(mode="Redirected", stopServicesFirst=True)) is REDIRECTED_STOPPING_FIRST_TABLE
    assert table_for(spec(mode="Drill", target={"secretRef": {"name": "db"}})) is DRILL_TABLE


# What stops, changes or restarts the vault, or writes into its database; none of it is in a drill.
VAULT_STEPS = {
    RestoreStep.SAFETY_BACKUP,
    RestoreStep.STAGE,
    RestoreStep.SCALE_DOWN,
    RestoreStep.RESTORE,
    RestoreStep.SWITCH,
    RestoreStep.RECONFIGURE,
    RestoreStep.SCALE_UP,
    RestoreStep.VERIFY,
    RestoreStep.ROLLBACK,
    RestoreStep.DROP_PREVIOUS,
    RestoreStep.ACQUIRE_LOCK,
}


def test_a_drill_has_no_step_that_touches_the_vault_and_always_drops_its_scratch_database():
    assert not VAULT_STEPS & set(names(DRILL_TABLE))
    assert not any(step.touches_vault for step in DRILL_TABLE)
    last = list(DRILL_TABLE)[-1]
    assert last.name == RestoreStep.DROP_SCRATCH and last.cleanup  # on the failure path too
    build = next(step for step in DRILL_TABLE if step.name == RestoreStep.BUILD)
    assert build.undo is not None  # a drill deleted mid-flight drops what it made
    assert DRILL_TABLE.index(RestoreStep.BUILD) < DRILL_TABLE.index(RestoreStep.CHECK)
