"""Plan (restore/steps/plan.py): the steps, the services and their replicas, the secrets and the
history the restore loses, in status.plan."""

from __future__ import annotations

import pytest

from tests.unit.fakes import REDIRECTED, ago
from walwarden.api import DataLossWindow, PlannedService, parse_timestamp
from walwarden.restore.steps.plan import plan

TAKEN = "2026-01-10T08:00:00Z"


@pytest.fixture
def vault_with_dated_backup(vault):
    vault.add_backup("dated", created_at=TAKEN)
    return vault


def dated(vault, **changes):
    return vault.restore_run(vault.restore_spec(source={"backupRef": {"name": "dated"}}, **changes))


def test_the_plan_lists_the_tables_steps_and_the_services_by_stop_tier(vault):
    run = vault.restore_run()
    run.step_names = ("Validate", "Plan", "ScaleDown", "ReleaseLock")
    plan(run)
    assert run.status.plan.steps == ["Validate", "Plan", "ScaleDown", "ReleaseLock"]
    assert run.status.plan.services == [
        PlannedService(name="wallet", tier=1, replicas=2),
        PlannedService(name="policy-node0", tier=2, replicas=1),
        PlannedService(name="policy-node1", tier=2, replicas=1),
        PlannedService(name="policy-node2", tier=2, replicas=1),
        PlannedService(name="nats", tier=3, replicas=3),
    ]


def test_a_service_already_stopped_by_walwarden_is_planned_with_its_original_count(vault):
    vault.kube.add_workload("wallet", replicas=0, original=4)
    plan(run := vault.restore_run())
    assert run.status.plan.services[0] == PlannedService(name="wallet", tier=1, replicas=4)


def test_a_missing_service_is_planned_with_no_replicas(vault):
    del vault.kube.workloads[(vault.namespace, "nats")]
    plan(run := vault.restore_run())
    assert run.status.plan.services[-1] == PlannedService(name="nats", tier=3, replicas=0)


def test_the_data_loss_window_runs_from_the_backups_start_to_now(vault_with_dated_backup):
    run = dated(vault_with_dated_backup)
    message = plan(run)
    window = run.status.plan.data_loss_window
    assert window.backup_time == TAKEN
    expected = (parse_timestamp(window.restore_time) - parse_timestamp(TAKEN)).total_seconds()
    assert (
        abs(window.seconds - expected) <= 1
        and abs(parse_timestamp(window.restore_time) - parse_timestamp(ago(0))).total_seconds() <= 2
    )
    assert run.status.data_loss_window == window
    assert f"history after {TAKEN}" in message and "stops wallet×2, policy-node0×1" in message


def test_the_recorded_data_loss_window_is_the_first_plans(vault_with_dated_backup):
    run = dated(vault_with_dated_backup)
    first = DataLossWindow(backup_time=TAKEN, restore_time="2026-01-10T09:00:00Z", seconds=3600)
    run.status.data_loss_window = first
    plan(run)
    assert run.status.data_loss_window == first  # kept: a resumed restore does not move it
    assert run.status.plan.data_loss_window != first  # the plan itself is today's


def test_in_place_repoints_no_secrets(vault):
    plan(run := vault.restore_run())
    assert run.status.plan.secrets == []


def test_redirected_lists_the_db_info_secrets_it_repoints(vault):
    plan(run := vault.restore_run(vault.restore_spec(**REDIRECTED)))
    assert run.status.plan.secrets == [
        f"prod.vault.{s}.db-info" for s in ("orchestrator", "policy-node0", "policy-node1", "policy-node2", "wallet")
    ]


def test_a_dry_run_says_so_and_changes_nothing(vault):
    run = vault.restore_run(vault.restore_spec(dryRun=True))
    assert plan(run).startswith("dry run: Overwrite: Preflight, SafetyBackup, Stage before the stop")
    assert not plan(vault.restore_run()).startswith("dry run")
    assert vault.kube.writes == [] and vault.s3.puts == []


def test_a_switch_plan_shows_what_runs_before_and_inside_the_stop_and_where_the_history_is_kept(vault):
    run = vault.restore_run(vault.restore_spec(strategy=None, dryRun=True))
    message = plan(run)
    planned = run.status.plan
    assert planned.strategy == "Switch" and run.status.strategy == "Switch"
    assert planned.before_stop[-2:] == ["SafetyBackup", "Build"]
    assert planned.stop_window == ["ScaleDown", "Switch", "ScaleUp"]
    assert [line.partition(":")[0] for line in planned.downtime] == planned.stop_window
    assert "seconds, whatever the size" in planned.downtime[1]
    assert planned.restored_database == "vault_walwarden_5e5f0e3c"
    assert planned.previous_database and planned.previous_database.startswith("vault_pre_restore_")
    assert planned.space_bytes == 12_345_678  # the vault's database now
    assert planned.data_loss_window.kept_in == f"the previous database {planned.previous_database}"
    assert f"is kept in the previous database {planned.previous_database}" in message


def test_an_overwrite_plan_says_pg_restore_is_inside_the_stop_and_the_history_lost(vault):
    plan(run := vault.restore_run())
    assert run.status.plan.stop_window == ["ScaleDown", "Restore", "ScaleUp"]
    assert "grows with the database" in run.status.plan.downtime[1]
    assert run.status.plan.data_loss_window.kept_in is None and run.status.plan.space_bytes is None


def test_a_redirected_plan_builds_before_the_stop_and_keeps_the_original(vault):
    plan(run := vault.restore_run(vault.restore_spec(**REDIRECTED)))
    assert run.status.plan.strategy == "Redirected" and run.status.plan.before_stop[-1] == "Build"
    assert run.status.plan.stop_window == ["ScaleDown", "Reconfigure", "ScaleUp"]
    assert run.status.plan.data_loss_window.kept_in == "the original database (untouched)"


def test_stopping_first_puts_pg_restore_inside_the_stop_window(vault):
    plan(run := vault.restore_run(vault.restore_spec(strategy=None, stopServicesFirst=True)))
    assert run.status.plan.stop_window == ["ScaleDown", "Build", "Switch", "ScaleUp"]
    assert "spec.stopServicesFirst" in run.status.plan.downtime[1]
