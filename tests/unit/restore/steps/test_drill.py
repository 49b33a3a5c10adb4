"""A drill's own parts (restore/drill.py, the Validate of restore/steps/drill.py): the scratch
database is never the vault's, only the drill's own marker counts as its own, and the check Job
gets the reading login, never the admin's."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.unit.fakes import ADMIN_SECRET, BUCKET, OPERATOR_NAMESPACE
from walwarden.api import CheckResult, DrillJob, DrillSettings, RestoreRequestSpec
from walwarden.kube import leases
from walwarden.restore import drill
from walwarden.restore.steps import drill as steps_drill
from walwarden.restore.steps.drill import drop_scratch, preflight_drill, validate_drill
from walwarden.restore.table import DRILL_TABLE
from walwarden.restore.target import target_database
from walwarden.security import tokens
from walwarden.workflow.engine import StepFailed, Wait


def drill_spec(**changes):
    spec = {
        "source": {"backupRef": {"name": "nightly"}},
        "mode": "Drill",
        "target": {"secretRef": {"name": ADMIN_SECRET}},
    }
    return spec | changes


def test_the_scratch_database_defaults_to_the_drilled_database_with_a_drill_suffix(vault):
    run = vault.restore_run(drill_spec())
    assert target_database(run) == "vault_drill"
    message = validate_drill(run)
    assert "into the scratch database vault_drill: source and target checked" in message
    assert vault.kube.writes == [] and vault.s3.puts == []  # validating changes nothing


def test_the_backups_own_database_is_refused_as_a_scratch_database(vault):
    run = vault.restore_run(drill_spec(target={"secretRef": {"name": ADMIN_SECRET}, "database": "vault"}))
    with pytest.raises(StepFailed) as refused:
        validate_drill(run)
    assert refused.value.reason == "DrillTargetIsTheVault"
    assert "e.g. vault_drill" in refused.value.message and "Nothing was touched" in refused.value.message


def test_a_database_the_backup_lacks_is_refused(vault):
    run = vault.restore_run(drill_spec(drill={"database": "ledger"}))
    with pytest.raises(StepFailed) as refused:
        validate_drill(run)
    assert refused.value.reason == "DatabaseNotInBackup" and "(it has vault)" in refused.value.message


def test_only_this_drills_marker_makes_a_database_its_own(vault):
    run = vault.restore_run(drill_spec())
    other = vault.restore_run(drill_spec(), name="drill-2", uid="77777777-1111-4222-8333-444455556666")
    assert drill.scratch_owner(drill.scratch_marker(run), run) == ""
    assert drill.scratch_owner(drill.scratch_marker(other), run) == f"RestoreRequest vault/drill-2 ({other.uid})"
    assert drill.scratch_owner(None, run) is None
    assert drill.scratch_owner("the finance team's reports", run) is None


def test_the_check_job_is_built_by_walwarden_hardened_with_the_reading_login_only(vault):
    run = vault.restore_run(drill_spec())
    job_spec = DrillJob.model_validate(
        {
            "image": "postgres:17",
            "command": ["psql", "-c", "SELECT 1"],
            "env": [{"name": "EXPECTED", "value": "3"}],
            "activeDeadlineSeconds": 120,
        }
    )
    job = drill.check_job(run, job_spec)
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 120
    assert job["metadata"]["ownerReferences"] == [run.owner]  # deleted with the drill
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod and "hostNetwork" not in pod and "initContainers" not in pod
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]  # no volume of the author's choosing
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["envFrom"] == [{"secretRef": {"name": drill.reader_secret_name(run)}}]
    assert [e["name"] for e in container["env"]] == ["EXPECTED", "HOME"]  # literal values only
    assert "password" not in str(job).lower()  # the login is in the Secret, not in the Job


@pytest.mark.parametrize(
    "escape",
    [
        {"template": {"spec": {"serviceAccountName": "walwarden", "containers": []}}},  # the old free-form template
        {"serviceAccountName": "walwarden"},
        {"volumes": [{"name": "admin", "secret": {"secretName": "vault-db-admin"}}]},
        {"securityContext": {"privileged": True}},
        {"env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "vault-db-admin", "key": "password"}}}]},
        {"env": [{"name": "PGHOST", "value": "attacker.example"}]},  # the login's variables are the drill's
        {"image": "registry.example/x; rm -rf /"},
    ],
)
def test_a_check_job_spec_cannot_ask_for_more_than_a_container(escape):
    spec = {"image": "postgres:17", "command": ["true"]} | escape
    with pytest.raises(ValidationError):
        DrillJob.model_validate(spec)


def test_the_reading_login_is_made_once_and_kept_in_a_secret_of_the_request(vault):
    run = vault.restore_run(drill_spec())
    admin = {"host": "db.example", "port": "5433", "user": "admin", "password": "admin-password"}
    first = drill.reader_login(run, admin, "vault_drill")
    assert first["PGUSER"] == drill.reader_name(run) != "admin" and first["PGPASSWORD"] != "admin-password"
    assert (first["PGHOST"], first["PGPORT"], first["PGDATABASE"]) == ("db.example", "5433", "vault_drill")
    assert drill.reader_login(vault.next_pass(run), admin, "vault_drill") == first  # a later pass: the same


def artifact_drill(vault, **changes):
    source = {"artifact": vault.backup.manifest.databases[0].uri}
    return drill_spec(source=source, storage={"s3": {"bucket": BUCKET}}, **changes)


def test_a_drill_of_an_artifact_by_uri_needs_an_approval_like_a_restore(vault):
    """The artifact is another environment's, read and shown to the drill's checks by the
    operator's rights: with approvals on, only a holder of the approval key lets that happen."""
    vault.settings = vault.settings.model_copy(update={"approvals_required": True})
    with pytest.raises(StepFailed) as refused:
        validate_drill(vault.restore_run(artifact_drill(vault)))
    assert refused.value.reason == "ApprovalRequired"
    validate_drill(vault.restore_run(drill_spec()))  # a drill of the namespace's own backup needs none


def test_a_drills_approval_token_is_checked_and_spent_like_a_restores(vault):
    vault.settings = vault.settings.model_copy(update={"approvals_required": True})
    vault.kube.add_secret(
        "walwarden-approval-key", {"key": "an-approval-key-of-at-least-16-bytes"}, namespace=OPERATOR_NAMESPACE
    )
    spec = RestoreRequestSpec.model_validate(artifact_drill(vault))
    approval = tokens.Approval.of_request(vault.namespace, "restore-1", spec, vault.backup.manifest.databases[0].sha256)
    token = tokens.issue_token(b"an-approval-key-of-at-least-16-bytes", approval, ttl_seconds=600)
    run = vault.restore_run(artifact_drill(vault, approvalToken=token))
    validate_drill(run)
    assert run.status.approval_token_id == tokens.token_id(token)


def test_a_drill_of_a_backup_ref_may_not_carry_a_token():
    with pytest.raises(ValidationError, match="an approvalToken only to drill an artifact by URI"):
        RestoreRequestSpec.model_validate(drill_spec(approvalToken="wwt2.x.y"))


def drill_body(name: str, created: str, phase: str | None) -> dict:
    body = {
        "apiVersion": "walwarden.io/v1alpha1",
        "kind": "RestoreRequest",
        "metadata": {"name": name, "namespace": "vault", "creationTimestamp": created},
        "spec": drill_spec(),
    }
    if phase:
        body["status"] = {"phase": phase}
    return body


def test_a_namespace_runs_its_oldest_drills_and_the_others_wait_their_turn(vault):
    """Each drill copies a database onto a server: a few at a time, oldest first, never two
    waiting for each other."""
    vault.settings = vault.settings.model_copy(update={"max_drills_per_namespace": 2})
    vault.kube.add_custom("restorerequests", drill_body("first", "2026-12-07T10:00:00Z", "Running"))
    vault.kube.add_custom("restorerequests", drill_body("second", "2026-12-07T10:01:00Z", None))
    vault.kube.add_custom("restorerequests", drill_body("done", "2026-12-07T09:00:00Z", "Succeeded"))
    vault.kube.add_custom(
        "restorerequests",
        drill_body("restore", "2026-12-07T09:30:00Z", "Running")
        | {"spec": {"mode": "InPlace", "source": {"backupRef": {"name": "nightly"}}}},
    )
    third = vault.restore_run(drill_spec(), name="third")
    third.created_at = "2026-12-07T10:02:00Z"
    with pytest.raises(Wait) as waiting:
        preflight_drill(third)
    assert "waiting for 2 earlier drill(s) of the namespace to finish (first, second; at most 2 at once)" in str(
        waiting.value.message
    )
    second = vault.restore_run(drill_spec(), name="second")
    second.created_at = "2026-12-07T10:01:00Z"
    assert drill.drills_ahead(second) == ["first"]  # the finished one and the restore do not count


def test_the_checks_share_one_time_budget_and_those_left_when_it_is_spent_fail_unrun(vault, monkeypatch):
    settings = DrillSettings.model_validate(
        {
            "checksTimeBudgetSeconds": 100,
            "statementTimeoutSeconds": 60,
            "checks": [{"name": n, "sql": "SELECT 1", "expected": "1"} for n in ("a", "b", "c")],
        }
    )
    now = iter([0.0, 0.0, 70.0, 100.0])  # a took 70 s of the 100
    timeouts = []

    def answer(login, database, name, query, expected, timeout):
        timeouts.append(timeout)
        return CheckResult(name=name, passed=True, message="answered '1'")

    monkeypatch.setattr(steps_drill, "_answer", answer)
    results = steps_drill._run_within_budget({}, "vault_drill", settings, clock=lambda: next(now))
    assert timeouts == [60, 30]  # b gets only what is left
    assert [(r.name, r.passed) for r in results] == [("a", True), ("b", True), ("c", False)]
    assert "time budget (100 s) was spent" in results[2].message


def test_a_server_runs_a_few_drills_at_once_whatever_their_namespaces_and_a_drill_gives_its_slot_back(vault):
    """Each drill restores a whole database onto its server, often the vault's own: slots per
    server (Leases in the operator's namespace), taken in Preflight, given back by DropScratch."""
    vault.settings = vault.settings.model_copy(update={"max_drills_per_server": 1})
    other = leases.Holder("RestoreRequest", "their-drill", "u-9", namespace="team-b")
    vault.kube.add_custom(
        "restorerequests", drill_body("their-drill", "2026-12-07T09:00:00Z", "Running"), namespace="team-b"
    )
    admin = vault.kube.secret(ADMIN_SECRET)
    mine = vault.restore_run(drill_spec())
    [slot] = drill.server_slots(mine, admin)
    vault.kube.coordination.create_namespaced_lease(
        OPERATOR_NAMESPACE, {"metadata": {"name": slot}, "spec": {"holderIdentity": other.identity}}
    )
    vault.kube.custom_object("restorerequests", "their-drill", namespace="team-b")["metadata"]["uid"] = "u-9"
    with pytest.raises(Wait) as waiting:
        preflight_drill(mine)
    assert (
        "waiting for a drill slot on the target server (1 at once, held by team-b/their-drill)" in waiting.value.message
    )
    vault.kube.custom_object("restorerequests", "their-drill", namespace="team-b")["status"]["phase"] = "Succeeded"
    assert drill.take_server_slot(vault.next_pass(mine), admin) == []  # a finished holder's slot is taken over
    assert leases.holder_of(vault.kube, OPERATOR_NAMESPACE, slot) == leases.Holder(
        "RestoreRequest", mine.name, mine.uid, namespace=mine.namespace
    )
    drop_scratch(vault.next_pass(mine))
    assert leases.holder_of(vault.kube, OPERATOR_NAMESPACE, slot) is None


def test_a_drill_is_running_once_its_turn_came_and_shows_its_check_step_before_the_checks_run(vault, monkeypatch):
    """A drill has no namespace lock, the step that marked the others Running: it is Running once
    its queue and its server slot are behind it; and its Check, which may take minutes, is shown
    Running before the checks start (a checkpoint), not after."""
    monkeypatch.setattr(steps_drill.databases, "missing_drill_privileges", lambda *_: [])
    run = vault.restore_run(drill_spec())
    assert run.status.phase != "Running"
    preflight_drill(run)
    assert run.status.phase == "Running"
    assert next(step for step in DRILL_TABLE if step.name == "Check").checkpoint
