"""The restore's table run pass after pass over the in-memory vault: the steps hand over to each
other as the table says, and a failure after the switch puts the vault back (RolledBack)."""

from __future__ import annotations

import json

import pytest

from tests.unit.fakes import BUCKET, REDIRECTED, ago, deep_merge, session
from walwarden import failpoints
from walwarden.api import RestoreStep
from walwarden.api.roles import DatabaseRole, RoleMembership
from walwarden.restore import go_signal
from walwarden.restore.previous import drop_when_due
from walwarden.restore.steps import verify as verify_step
from walwarden.restore.table import table_for
from walwarden.runner.contract import GO_ABORT_CONTENT
from walwarden.workflow.engine import StepFailed, UndoCause, Wait, advance, finish

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
        if go_signal.GO_CONTENT_KEY not in url_secret:
            vault.kube.finish_job(name)  # not staged (Build): it restores at once
            continue
        go = next((body for (_, key), body in vault.s3.objects.items() if "/restore-signals/" in key), None)
        if go is not None and go.decode() == url_secret.get(go_signal.GO_CONTENT_KEY):
            vault.kube.finish_job(name)  # the staged Job restores once told to go
        elif go == GO_ABORT_CONTENT.encode():
            vault.kube.fail_job(name, "RestoreCalledOff", "called off before the go; the database was not touched")
    child = vault.kube.custom_object("backuprequests", CHILD)
    if child is not None and (child.get("status") or {}).get("phase") != "Succeeded":
        vault.add_backup(CHILD)  # the safety backup's own workflow succeeds: its artifact published
        published = vault.kube.custom_object("backuprequests", CHILD)
        published["spec"] = child["spec"]  # ... and it stays the request the restore made
        published["metadata"]["ownerReferences"] = child["metadata"]["ownerReferences"]


def drive(vault, run, between=None, passes=40):
    """Passes until the workflow finishes; the last pass's run."""
    for _ in range(passes):
        table = table_for(run.spec)
        outcome = advance(table, run)
        if outcome.finished:
            finish(table, run, outcome.result)
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
        **{str(s): "Succeeded" for s in table_for(run.spec).planned()},
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
    assert states(run)["SafetyBackup"] == "Skipped" and run.status.secrets_repointed is False  # put back
    assert all(vault.kube.secret(name)["DB_HOST"] == "old-db.internal" for name in names)
    assert "db-info secrets restored from the snapshot" in run.status.step(RestoreStep.ROLLBACK).message
    assert vault.kube.replicas() == ORIGINAL


# --- Switch ---------------------------------------------------------------------------------

SIBLING = "vault_walwarden_5e5f0e3c"


def switch_run(vault, **changes):
    run = vault.restore_run(vault.restore_spec(strategy=None, **changes))
    run.created_at = "2026-12-02T17:05:00Z"
    return run


PREVIOUS = "vault_pre_restore_202612021705_5e5f0e3c"


def test_a_switch_restore_builds_while_the_vault_runs_and_keeps_the_previous_database(vault):
    stopped_while_building = []

    def watch(run):
        if run.status.current_step == RestoreStep.BUILD:
            stopped_while_building.append(vault.kube.replicas()["wallet"] == 0)

    run = drive(vault, switch_run(vault), between=watch)
    assert run.status.phase == "Succeeded", run.status.message
    assert stopped_while_building and not any(stopped_while_building)  # the vault ran during pg_restore
    assert states(run)["SafetyBackup"] == "Skipped" and "no safety dump" in run.status.step("SafetyBackup").message
    assert vault.db.databases == {"vault", PREVIOUS} and vault.db.refusing == {PREVIOUS}
    assert vault.db.statements == [
        f"create {SIBLING} owned by vault",
        f"refuse {SIBLING}",
        "refuse vault",
        f"rename vault to {PREVIOUS}",
        f"rename {SIBLING} to vault",
        "allow vault",
    ]
    assert run.status.previous_database.name == PREVIOUS and run.status.switched_at
    assert "kept, refusing connections" in run.status.step(RestoreStep.DROP_PREVIOUS).message
    assert vault.kube.replicas() == ORIGINAL
    assert (
        vault.kube.job("restore-1-restore-5e5f0e3c")["spec"]["template"]["spec"]["containers"][0]["args"].count(
            "--clean"
        )
        == 0
    )


def test_a_database_made_first_under_the_previous_name_stops_the_switch_before_anything_stops(vault):
    """The previous database's name is predictable: one made by someone else first would leave the
    switch in a state it does not know with the services stopped. Build checks it last, before the
    stop; nothing of the vault is touched, and only what this restore made is dropped."""
    vault.db.databases.add(PREVIOUS)
    run = drive(vault, switch_run(vault))
    assert run.status.failure.reason == "PreviousNameTaken", run.status.message
    assert run.status.phase == "RolledBack"  # what it made is dropped
    assert states(run).get("ScaleDown") in (None, "Skipped")
    assert vault.kube.replicas() == ORIGINAL
    assert vault.db.databases == {"vault", PREVIOUS}  # the sibling dropped, the other one left as it was
    assert "vault" not in vault.db.refusing


def test_a_failed_verify_after_the_switch_renames_back_and_drops_the_restored_copy(vault, monkeypatch):
    monkeypatch.setattr(verify_step, "_get", lambda url, headers: (503, b""))

    def past_the_deadline(run):
        if run.status.services_ready_at:
            run.status.services_ready_at = ago(3600)

    run = drive(vault, switch_run(vault, verify={"healthUrl": "http://w/health"}), between=past_the_deadline)
    assert run.status.phase == "RolledBack", run.status.message
    assert vault.db.databases == {"vault"} and not vault.db.refusing
    assert vault.db.statements[-5:] == [
        "refuse vault",
        f"rename vault to {SIBLING}",
        f"rename {PREVIOUS} to vault",
        "allow vault",
        f"drop {SIBLING}",
    ]
    assert "switched back in seconds" in run.status.step(RestoreStep.ROLLBACK).message
    assert vault.kube.job("restore-1-rollback-5e5f0e3c") is None  # no pg_restore to roll back
    assert vault.kube.replicas() == ORIGINAL
    assert states(run)[RestoreStep.DROP_PREVIOUS] == "Skipped"


def test_a_user_without_the_privileges_is_refused_in_preflight_with_the_vault_untouched(vault):
    vault.db.missing_privileges = ["CREATEDB (ALTER ROLE restorer CREATEDB): to create the new database"]
    run = drive(vault, switch_run(vault))
    assert run.status.phase == "Failed" and run.status.failure.reason == "SwitchNotPermitted"
    assert "CREATEDB" in run.status.message and "spec.strategy: Overwrite" in run.status.message
    assert vault.db.statements == [] and vault.kube.replicas() == ORIGINAL


class Crash(Exception):
    """The operator dying at a failpoint (in the real operator: SIGKILL)."""


@pytest.mark.parametrize(
    "point",
    [
        "build:created",
        "build:closed",
        "switch:refuse-current",
        "switch:rename-current-aside",
        "switch:rename-restored-in",
        "switch:allow-restored",
    ],
)
def test_a_crash_at_any_point_of_the_switch_is_resumed_from_what_the_server_shows(vault, monkeypatch, point):
    crashed = []

    def reached(name):
        if name == point and not crashed:
            crashed.append(name)
            raise Crash(name)

    monkeypatch.setattr(failpoints, "reached", reached)
    run = switch_run(vault)
    for _ in range(40):
        written = vault.next_pass(run)  # the status as stored before this pass
        table = table_for(run.spec)
        try:
            outcome = advance(table, run)
        except Crash:
            run = vault.next_pass(written)  # a new operator: what this pass did to the status is lost
            continue
        if outcome.finished:
            finish(table, run, outcome.result)
            break
        catch_up(vault)
        run = vault.next_pass(run)
    assert crashed == [point]
    assert run.status.phase == "Succeeded", run.status.message
    assert vault.db.databases == {"vault", PREVIOUS} and vault.db.refusing == {PREVIOUS}
    assert vault.kube.replicas() == ORIGINAL


def test_a_session_that_reaches_the_database_before_its_rename_is_ended_again(vault):
    vault.db.in_use_once = {"vault"}
    run = drive(vault, switch_run(vault))
    assert run.status.phase == "Succeeded", run.status.message
    assert vault.db.databases == {"vault", PREVIOUS}


def test_drop_after_zero_seconds_drops_the_previous_database_once_verify_succeeded(vault):
    run = drive(vault, switch_run(vault, previousDatabase={"dropAfterSeconds": 0}))
    assert run.status.phase == "Succeeded", run.status.message
    assert vault.db.databases == {"vault"} and vault.db.statements[-1] == f"drop {PREVIOUS}"
    assert run.status.previous_database.dropped_at


def test_drop_after_some_time_is_left_to_the_timer_which_drops_it_when_due(vault):
    run = drive(vault, switch_run(vault, previousDatabase={"dropAfterSeconds": 3600}))
    assert run.status.phase == "Succeeded" and PREVIOUS in vault.db.databases
    assert run.status.previous_database.drop_at and not run.status.previous_database.dropped_at
    assert drop_when_due(run) is None  # not yet
    run.status.previous_database.drop_at = ago(1)
    assert drop_when_due(run) == f"dropped {PREVIOUS}, as spec.previousDatabase asked"
    assert PREVIOUS not in vault.db.databases


def test_a_previous_database_somebody_opened_again_is_not_dropped(vault):
    run = drive(vault, switch_run(vault, previousDatabase={"dropAfterSeconds": 3600}))
    vault.db.refusing.discard(PREVIOUS)
    run.status.previous_database.drop_at = ago(1)
    with pytest.raises(StepFailed, match="accepts connections"):
        drop_when_due(run)
    assert PREVIOUS in vault.db.databases


def test_stopping_first_stops_the_vault_before_pg_restore(vault):
    running_while_building = []

    def watch(run):
        if run.status.current_step == RestoreStep.BUILD:
            running_while_building.append(vault.kube.replicas()["wallet"])

    run = drive(vault, switch_run(vault, stopServicesFirst=True), between=watch)
    assert run.status.phase == "Succeeded", run.status.message
    assert running_while_building and set(running_while_building) == {0}


def test_a_failed_build_drops_the_sibling_and_never_stops_the_vault(vault):
    def fail_the_restore_job(run):
        job = vault.kube.job(RESTORE_JOB)
        if job is not None and not vault.kube.jobs[(vault.namespace, RESTORE_JOB)].conditions:
            vault.kube.fail_job(RESTORE_JOB, "RestoreFailed", "pg_restore exited 1: role missing")

    run = switch_run(vault)
    table = table_for(run.spec)
    for _ in range(40):
        outcome = advance(table, run)
        if outcome.finished:
            finish(table, run, outcome.result)
            break
        fail_the_restore_job(run)
        vault.kube.settle()
        for (_, name), job in list(vault.kube.jobs.items()):
            if not job.conditions:
                vault.kube.finish_job(name)
        run = vault.next_pass(run)
    assert run.status.phase == "RolledBack", run.status.message
    assert "was not touched" in run.status.message
    assert vault.db.databases == {"vault"} and vault.db.statements[-1] == f"drop {SIBLING}"
    assert vault.kube.replicas() == ORIGINAL and states(run)["ScaleDown"] == "Skipped"


def test_a_switch_does_not_wait_for_sessions_it_ends_itself_after_refusing_connections(vault):
    vault.db.sessions = [session(101, application="orchestrator")]  # kept running, reconnects on its own
    run = drive(vault, switch_run(vault))
    assert run.status.phase == "Succeeded", run.status.message
    assert "ended by the switch" in run.status.step(RestoreStep.SCALE_DOWN).message
    assert vault.db.terminated == [] and run.status.sessions_seen_at is None  # no waitSeconds spent


def test_a_refused_drop_of_the_previous_database_leaves_the_verified_restore_succeeded(vault):
    def reopened(run):
        if run.status.switched_at:
            vault.db.refusing.discard(PREVIOUS)  # someone allowed connections to it again

    run = drive(vault, switch_run(vault, previousDatabase={"dropAfterSeconds": 0}), between=reopened)
    assert run.status.phase == "Succeeded", run.status.message
    assert PREVIOUS in vault.db.databases
    assert states(run)[RestoreStep.DROP_PREVIOUS] == "Skipped"
    assert any(e.reason == "PreviousDatabaseInUse" and e.warning for e in run.events)


def test_a_switch_deleted_while_building_stops_the_restore_job_before_it_drops_the_sibling(vault):
    run = switch_run(vault)
    for _ in range(10):  # up to Build, its Job still running
        advance(table_for(run.spec), run)
        if run.status.current_step == RestoreStep.BUILD and vault.kube.job(RESTORE_JOB) is not None:
            break
        catch_up(vault)
        run = vault.next_pass(run)
    assert SIBLING in vault.db.databases
    table = table_for(run.spec)
    with pytest.raises(Wait, match="stopping the restore Job"):
        table.undo(run, UndoCause.DELETION)  # a runner still going would make the database again
    assert vault.kube.job(RESTORE_JOB) is None and SIBLING in vault.db.databases
    assert table.undo(vault.next_pass(run), UndoCause.DELETION) == [f"the restored database {SIBLING} was dropped"]
    assert vault.db.databases == {"vault"} and vault.kube.replicas() == ORIGINAL


# --- roles (spec.target.roles) -----------------------------------------------------------------

ROLES = [
    DatabaseRole(name="vault"),  # there already: never created, never dropped
    DatabaseRole(name="wallet", login=True, member_of=[RoleMembership(role="vault_owner")]),  # a service's DB_USER
    DatabaseRole(name="auditor", login=True),  # no service logs in as it
    DatabaseRole(name="vault_owner"),
]


def create_missing_run(vault, **changes):
    vault.add_db_info_secrets()
    vault.add_backup("nightly", roles=ROLES)
    spec = vault.restore_spec(**deep_merge(REDIRECTED, {"target": {"roles": "CreateMissing"}}), **changes)
    return vault.restore_run(spec)


def built(vault):
    """What the restore Job does: the Redirected database exists once it ran."""
    if vault.kube.job(RESTORE_JOB) is not None:
        vault.db.databases.add("vault_restored")


def test_create_missing_creates_the_roles_before_pg_restore_with_the_services_passwords_only(vault):
    run = drive(vault, create_missing_run(vault), between=lambda run: built(vault))
    assert run.status.phase == "Succeeded", run.status.message
    assert run.status.created_roles == ["auditor", "vault_owner", "wallet"]
    assert vault.db.role_passwords == {"wallet": "wallet-password", "auditor": None, "vault_owner": None}
    assert ("wallet", "vault_owner") in vault.db.members
    assert "created the role(s) auditor, vault_owner, wallet first" in run.status.step("Build").message
    everything = json.dumps(run.status.to_dict()) + " ".join(e.message for e in run.events)
    assert "password" not in everything.replace("got no password", "").replace("PASSWORD", "")
    assert "-password" not in everything


def test_the_no_password_login_roles_are_named_when_created(vault):
    run = create_missing_run(vault)
    for _ in range(6):
        try:
            advance(table_for(run.spec), run)
        except Wait:
            pass
        if run.status.created_roles:
            break
        catch_up(vault)
        run = vault.next_pass(run)
    said = [e.message for e in run.events if e.reason == "RolesCreated"]
    assert said and "auditor may LOGIN but got no password" in said[0], [e.message for e in run.events]


def test_a_failed_create_missing_restore_drops_the_database_then_only_the_roles_it_created(vault, monkeypatch):
    monkeypatch.setattr(verify_step, "_get", lambda url, headers: (503, b""))
    vault.db.role_dependents = {"auditor": 'role "auditor" cannot be dropped because some objects depend on it'}

    def between(run):
        built(vault)
        if run.status.services_ready_at:
            run.status.services_ready_at = ago(3600)

    run = create_missing_run(vault, verify={"healthUrl": "http://wallet.vault.svc:8080/health"})
    run = drive(vault, run, between=between)
    assert run.status.phase == "RolledBack", run.status.message
    dropped = [s for s in vault.db.statements if s.startswith("drop")]
    assert dropped == ["drop vault_restored", "drop role vault_owner", "drop role wallet"]
    assert "vault" in vault.db.roles and "auditor" in vault.db.roles  # there before; refused by the server
    rollback = run.status.step(RestoreStep.ROLLBACK).message
    assert "the role(s) vault_owner, wallet the restore created were dropped" in rollback
    assert "auditor: role" in rollback and run.status.created_roles == ["auditor"]
