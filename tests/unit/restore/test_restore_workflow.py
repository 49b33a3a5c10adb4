"""The restore's table run pass after pass over the in-memory vault: the steps hand over to each
other as the table says, and a failure after the switch puts the vault back (RolledBack)."""

from __future__ import annotations

from tests.unit.fakes import BUCKET, REDIRECTED, ago, session
from walwarden.api import RestoreStep
from walwarden.restore import go_signal
from walwarden.restore.steps import verify as verify_step
from walwarden.restore.table import RESTORE_TABLE
from walwarden.runner.contract import GO_ABORT_CONTENT
from walwarden.workflow.engine import advance, finish

CHILD = "restore-1-safety-5e5f0e3c"
RESTORE_JOB = "restore-1-restore-5e5f0e3c"
ORIGINAL = {"wallet": 2, "policy-node0": 1, "policy-node1": 1, "policy-node2": 1, "nats": 3, "orchestrator": 1}


def catch_up(vault) -> None:
    """What the cluster and the runners do between two passes."""
    vault.kube.settle()
    for (_, name), job in list(vault.kube.jobs.items()):
        if job.conditions:
            continue
        if name != RESTORE_JOB:
            vault.kube.finish_job(name)  # verify and rollback Jobs
            continue
        url_secret = vault.kube.secret("restore-1-restore-url-5e5f0e3c") or {}
        go = next((body for (_, key), body in vault.s3.objects.items() if "/restore-signals/" in key), None)
        if go is not None and go.decode() == url_secret.get(go_signal.GO_CONTENT_KEY):
            vault.kube.finish_job(name)  # the staged Job restores once told to go
        elif go == GO_ABORT_CONTENT.encode():
            vault.kube.fail_job(name, "RestoreCalledOff", "called off before the go; the database was not touched")
    child = vault.kube.custom_object("backuprequests", CHILD)
    if child is not None and (child.get("status") or {}).get("phase") != "Succeeded":
        vault.add_backup(CHILD)  # the safety backup's own workflow succeeds


def drive(vault, run, between=None, passes=40):
    """Passes until the workflow finishes; the last pass's run."""
    for _ in range(passes):
        outcome = advance(RESTORE_TABLE, run)
        if outcome.finished:
            finish(RESTORE_TABLE, run, outcome.result)
            return run
        catch_up(vault)
        if between:
            between(run)
        run = vault.next_pass(run)
    raise AssertionError(f"not finished after {passes} passes: {run.status.message}")


def states(run) -> dict[str, str]:
    return {entry.name: str(entry.state) for entry in run.status.steps}


def test_an_in_place_restore_runs_the_runbook_and_leaves_the_vault_as_it_was(vault):
    run = drive(vault, vault.restore_run())
    assert run.status.phase == "Succeeded", run.status.message
    assert states(run) == {
        **{str(s): "Succeeded" for s in RESTORE_TABLE.planned()},
        "Reconfigure": "Skipped",
        "Rollback": "Skipped",
    }
    assert vault.kube.replicas() == ORIGINAL
    assert run.status.database_modified is True and run.status.downtime_seconds is not None
    assert vault.kube.lease_holder() is None  # released
    assert (BUCKET, f"{vault.backup.prefix}/restore-signals/{run.uid}") in vault.s3.puts


def test_a_dry_run_plans_and_touches_nothing(vault):
    run = drive(vault, vault.restore_run(vault.restore_spec(dryRun=True)))
    assert run.status.phase == "Succeeded" and run.status.plan is not None
    assert {name for name, state in states(run).items() if state == "Succeeded"} == {"Validate", "Plan"}
    assert vault.kube.writes == [] and vault.s3.puts == []


def test_a_failed_verify_restores_the_safety_backup_and_starts_the_services_again(vault, monkeypatch):
    monkeypatch.setattr(verify_step, "_get", lambda url, headers: (503, b""))

    def past_the_deadline(run):
        if run.status.services_ready_at:
            run.status.services_ready_at = ago(3600)

    spec = vault.restore_spec(verify={"healthUrl": "http://wallet.vault.svc:8080/health"})
    run = drive(vault, vault.restore_run(spec), between=past_the_deadline)
    assert run.status.phase == "RolledBack", run.status.message
    assert run.status.failure.reason == "VerifyFailed"
    assert f"database restored from the safety backup {CHILD}" in run.status.step(RestoreStep.ROLLBACK).message
    assert vault.kube.job("restore-1-rollback-5e5f0e3c") is not None
    assert vault.kube.replicas() == ORIGINAL
    assert vault.kube.lease_holder() is None


def test_a_failure_before_the_go_calls_the_staged_job_off_and_starts_the_services(vault):
    vault.db.sessions = [session(101)]  # a client nobody stopped
    run = drive(vault, vault.restore_run(vault.restore_spec(sessionPolicy={"onRemaining": "Fail"})))
    assert run.status.phase == "RolledBack" and run.status.failure.reason == "SessionsRemain"
    assert run.status.database_modified is None
    rollback = run.status.step(RestoreStep.ROLLBACK).message
    assert "called off" in rollback and "started" in rollback
    assert vault.kube.replicas() == ORIGINAL


def test_a_failed_redirected_restore_points_the_services_back_at_the_original_database(vault, monkeypatch):
    names = vault.add_db_info_secrets()
    monkeypatch.setattr(verify_step, "_get", lambda url, headers: (503, b""))

    def past_the_deadline(run):
        if run.status.services_ready_at:
            run.status.services_ready_at = ago(3600)

    spec = vault.restore_spec(verify={"healthUrl": "http://wallet.vault.svc:8080/health"}, **REDIRECTED)
    run = drive(vault, vault.restore_run(spec), between=past_the_deadline)
    assert run.status.phase == "RolledBack", run.status.message
    assert states(run)["SafetyBackup"] == "Skipped" and run.status.secrets_repointed is True
    assert all(vault.kube.secret(name)["DB_HOST"] == "old-db.internal" for name in names)
    assert "db-info secrets restored from the snapshot" in run.status.step(RestoreStep.ROLLBACK).message
    assert vault.kube.replicas() == ORIGINAL
