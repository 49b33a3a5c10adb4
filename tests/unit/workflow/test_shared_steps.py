"""What both workflows share (workflow/steps.py): the namespace lock, the Secrets a request names,
the request's topology, the operator's S3 client and running a runner Job to its outcome."""

from __future__ import annotations

import pytest

from walwarden.api import ConditionType, Topology
from walwarden.kube.leases import LOCK_NAME
from walwarden.storage import s3 as storage
from walwarden.workflow import steps
from walwarden.workflow.engine import StepFailed, Wait

RESTORE_IDENTITY = "RestoreRequest/restore-1/5e5f0e3c-1111-4222-8333-444455556666"


def hold_lock(vault, kind="RestoreRequest", name="other", uid="uid-other", phase="Running"):
    """Another request holds the namespace lock (and exists, in `phase`)."""
    vault.kube.leases[(vault.namespace, LOCK_NAME)] = {"holder": f"{kind}/{name}/{uid}", "rv": "7", "labels": {}}
    if phase is not None:
        plural = {"RestoreRequest": "restorerequests", "BackupRequest": "backuprequests"}[kind]
        vault.kube.add_custom(plural, {"metadata": {"name": name, "uid": uid}, "status": {"phase": phase}})


# --- the namespace lock -------------------------------------------------------------------------


def test_a_free_lock_is_taken_and_the_run_is_marked_running(vault):
    run = vault.restore_run()
    assert steps.acquire_lock(run) == "holding the lock of namespace vault"
    assert vault.kube.lease_holder() == RESTORE_IDENTITY
    assert run.status.phase == "Running"
    assert run.status.condition(ConditionType.PROGRESSING).reason == "Running"
    waiting = run.status.condition(ConditionType.WAITING)
    assert (waiting.status, waiting.reason) == ("False", "LockAcquired")


def test_a_lock_held_by_a_running_request_waits_visibly_and_is_left_alone(vault):
    hold_lock(vault, kind="BackupRequest", name="nightly-2")
    run = vault.restore_run()
    with pytest.raises(Wait) as waiting:
        steps.acquire_lock(run)
    assert waiting.value.delay == vault.settings.poll_seconds
    assert "BackupRequest nightly-2" in waiting.value.message
    condition = run.status.condition(ConditionType.WAITING)
    assert (condition.status, condition.reason) == ("True", "LockHeld")
    assert "nightly-2" in condition.message
    assert run.status.phase is None  # not running yet
    assert vault.kube.lease_holder() == "BackupRequest/nightly-2/uid-other"


def test_once_the_holder_is_gone_the_waiting_condition_is_cleared(vault):
    hold_lock(vault)
    run = vault.restore_run()
    with pytest.raises(Wait):
        steps.acquire_lock(run)
    vault.kube.custom_object("restorerequests", "other")["status"]["phase"] = "Succeeded"
    steps.acquire_lock(run)
    assert vault.kube.lease_holder() == RESTORE_IDENTITY
    assert run.status.condition(ConditionType.WAITING).status == "False"


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "RolledBack", None])
def test_a_finished_or_deleted_holder_is_taken_over(vault, phase):
    hold_lock(vault, phase=phase)
    steps.acquire_lock(vault.restore_run())
    assert vault.kube.lease_holder() == RESTORE_IDENTITY


def test_a_holder_of_the_same_name_but_another_uid_is_an_old_request_and_is_taken_over(vault):
    hold_lock(vault, name="restore-1", uid="an-older-uid", phase=None)
    vault.kube.add_custom(
        "restorerequests",
        {
            "metadata": {"name": "restore-1", "uid": "5e5f0e3c-1111-4222-8333-444455556666"},
            "status": {"phase": "Running"},
        },
    )  # this request, recreated
    steps.acquire_lock(vault.restore_run())
    assert vault.kube.lease_holder() == RESTORE_IDENTITY


def test_a_safety_backup_runs_under_the_lock_of_the_restore_that_created_it(vault):
    hold_lock(vault, name="restore-1", uid="uid-r")
    child = vault.backup_run(
        name="restore-1-safety", controller={"kind": "RestoreRequest", "name": "restore-1", "uid": "uid-r"}
    )
    assert steps.acquire_lock(child).startswith("holding")
    assert vault.kube.lease_holder() == "RestoreRequest/restore-1/uid-r"  # still the parent's


def test_a_controller_that_is_no_request_does_not_hold_the_lock(vault):
    hold_lock(vault, name="restore-1", uid="uid-r")
    run = vault.backup_run(controller={"kind": "CronJob", "name": "restore-1", "uid": "uid-r"})
    assert steps.controller_holder(run) is None
    with pytest.raises(Wait):
        steps.acquire_lock(run)


def test_taking_the_lock_again_on_a_later_pass_changes_nothing(vault):
    run = vault.restore_run()
    steps.acquire_lock(run)
    writes = list(vault.kube.writes)
    steps.acquire_lock(vault.next_pass(run))
    assert vault.kube.writes == writes and vault.kube.lease_holder() == RESTORE_IDENTITY


def test_release_frees_only_our_own_lock(vault):
    run = vault.restore_run()
    steps.acquire_lock(run)
    assert steps.release_lock(run) == "namespace lock released"
    assert vault.kube.lease_holder() is None
    steps.release_lock(run)  # nothing to release: no error

    hold_lock(vault)
    steps.release_lock(run)
    assert vault.kube.lease_holder() == "RestoreRequest/other/uid-other"


# --- Secrets, topology, S3 ----------------------------------------------------------------------


def test_a_missing_secret_fails_naming_the_keys_it_needs(vault):
    with pytest.raises(StepFailed) as failed:
        steps.require_secret_keys(vault.restore_run(), "nope", ("host", "password"), "the target database")
    assert failed.value.reason == "SecretNotFound"
    assert "vault/nope (the target database)" in failed.value.message and "host, password" in failed.value.message


def test_an_incomplete_secret_names_the_missing_keys_never_a_value(vault):
    vault.kube.add_secret("partial", {"host": "db.internal", "user": "u", "password": ""})
    with pytest.raises(StepFailed) as failed:
        steps.require_secret_keys(vault.restore_run(), "partial", ("host", "port", "password"), "x")
    assert failed.value.reason == "SecretIncomplete"
    assert failed.value.message.endswith("lacks the keys port, password")  # empty counts as missing
    assert "db.internal" not in failed.value.message


def test_a_complete_secret_gives_its_values(vault):
    data = steps.require_secret_keys(vault.restore_run(), "vault-admin", ("host", "password"), "x")
    assert data["host"] == "db.internal" and data["password"] == "admin-password"


def test_the_topology_is_the_requests_or_else_the_operators_default(vault):
    assert steps.topology_of(vault.restore_run()) == vault.settings.default_topology
    own = {"stopTiers": [["wallet"]], "databaseServices": ["wallet"]}
    run = vault.restore_run(vault.restore_spec(topology=own))
    assert steps.topology_of(run) == Topology.model_validate(own)
    assert run.topology.stop_tiers == [["wallet"]]


def test_the_operators_s3_client_uses_the_requests_credentials_secret(vault, monkeypatch):
    made = []
    monkeypatch.setattr(storage, "make_client", lambda **options: made.append(options) or vault.s3)
    vault.kube.add_secret("s3-creds", {"accessKeyId": "AKIA-TEST", "secretAccessKey": "s3-secret"})
    backup = vault.backup_run(
        vault.backup_spec(
            storage={
                "s3": {
                    "credentialsSecretRef": {"name": "s3-creds"},
                    "endpoint": "http://127.0.0.1:9000",
                    "forcePathStyle": True,
                }
            }
        )
    )
    assert steps.s3_client(backup, backup.spec.storage.s3) is vault.s3
    assert made[-1] == {
        "region": "us-east-1",
        "endpoint": "http://127.0.0.1:9000",
        "force_path_style": True,
        "access_key": "AKIA-TEST",
        "secret_key": "s3-secret",
    }
    steps.s3_client(backup, vault.backup_run().spec.storage.s3)
    assert made[-1]["access_key"] is None and made[-1]["secret_key"] is None  # the ambient identity


# --- runner Jobs --------------------------------------------------------------------------------


def job_manifest(name="restore-1-verify-5e5f0e3c", owner=None):
    metadata = {"name": name, "ownerReferences": [owner or RUN_OWNER]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": {}}


RUN_OWNER = {"kind": "RestoreRequest", "name": "restore-1", "uid": "5e5f0e3c-1111-4222-8333-444455556666"}


def test_a_job_is_created_once_after_its_inputs_and_waited_for(vault):
    run = vault.restore_run()
    prepared = []

    def prepare():
        assert vault.kube.job("restore-1-verify-5e5f0e3c") is None  # inputs first, then the Job
        prepared.append(True)

    with pytest.raises(Wait) as waiting:
        steps.run_job(run, job_manifest(), prepare, "checking the artifact")
    assert waiting.value.message == "Job restore-1-verify-5e5f0e3c started: checking the artifact"
    assert vault.kube.job("restore-1-verify-5e5f0e3c") is not None and len(prepared) == 1
    with pytest.raises(Wait) as waiting:
        steps.run_job(run, job_manifest(), prepare, "checking the artifact")
    assert waiting.value.message == "Job restore-1-verify-5e5f0e3c: checking the artifact"
    assert len(prepared) == 1  # its inputs are not made again while it runs
    assert [w for w in vault.kube.writes if w[1] == "Job"] == [("create", "Job", "restore-1-verify-5e5f0e3c")]


def test_a_finished_job_gives_its_outcome_with_the_runners_reason(vault):
    run = vault.restore_run()
    with pytest.raises(Wait):
        steps.run_job(run, job_manifest(), lambda: None, "x")
    vault.kube.fail_job("restore-1-verify-5e5f0e3c", "ChecksumMismatch", "sha256 differs")
    outcome = steps.run_job(run, job_manifest(), lambda: None, "x")
    assert (outcome.state, outcome.reason, outcome.message) == ("Failed", "ChecksumMismatch", "sha256 differs")

    with pytest.raises(Wait):
        steps.run_job(run, job_manifest("other-job"), lambda: None, "x")
    vault.kube.finish_job("other-job")
    assert steps.run_job(run, job_manifest("other-job"), lambda: None, "x").state == "Succeeded"
