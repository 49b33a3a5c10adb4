"""A drill's own parts (restore/drill.py, the Validate of restore/steps/drill.py): the scratch
database is never the vault's, only the drill's own marker counts as its own, and the check Job
gets the reading login, never the admin's."""

from __future__ import annotations

import pytest

from tests.unit.fakes import ADMIN_SECRET
from walwarden.restore import drill
from walwarden.restore.steps.drill import validate_drill
from walwarden.restore.target import target_database
from walwarden.workflow.engine import StepFailed


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


def test_the_check_job_gets_the_reading_login_in_every_container_and_runs_once(vault):
    run = vault.restore_run(drill_spec())
    template = {
        "metadata": {"labels": {"team": "dba"}},
        "spec": {
            "restartPolicy": "OnFailure",
            "initContainers": [{"name": "wait", "image": "busybox"}],
            "containers": [{"name": "check", "image": "postgres:17", "envFrom": [{"configMapRef": {"name": "x"}}]}],
        },
    }
    job = drill.check_job(run, template, 120)
    pod = job["spec"]["template"]
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 120
    assert job["metadata"]["ownerReferences"] == [run.owner]  # deleted with the drill
    assert pod["spec"]["restartPolicy"] == "Never" and pod["spec"]["automountServiceAccountToken"] is False
    login = {"secretRef": {"name": drill.reader_secret_name(run)}}
    assert pod["spec"]["initContainers"][0]["envFrom"] == [login]
    assert pod["spec"]["containers"][0]["envFrom"] == [{"configMapRef": {"name": "x"}}, login]
    assert template["spec"]["restartPolicy"] == "OnFailure"  # the spec's own copy is left as written
    assert "password" not in str(job).lower()  # the login is in the Secret, not in the Job


def test_the_reading_login_is_made_once_and_kept_in_a_secret_of_the_request(vault):
    run = vault.restore_run(drill_spec())
    admin = {"host": "db.example", "port": "5433", "user": "admin", "password": "admin-password"}
    first = drill.reader_login(run, admin, "vault_drill")
    assert first["PGUSER"] == drill.reader_name(run) != "admin" and first["PGPASSWORD"] != "admin-password"
    assert (first["PGHOST"], first["PGPORT"], first["PGDATABASE"]) == ("db.example", "5433", "vault_drill")
    assert drill.reader_login(vault.next_pass(run), admin, "vault_drill") == first  # a later pass: the same
