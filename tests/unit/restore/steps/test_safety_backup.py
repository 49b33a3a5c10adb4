"""SafetyBackup (restore/steps/safety_backup.py): an InPlace restore first takes a BackupRequest of
its target, and goes on only once that succeeded."""

from __future__ import annotations

import pytest

from tests.unit.fakes import ADMIN_SECRET, BUCKET, EMP_SECRET, REDIRECTED, not_found
from walwarden.api import BackupRequest
from walwarden.restore.steps.safety_backup import safety_backup
from walwarden.workflow.engine import Skip, StepFailed, Wait

CHILD = "restore-1-safety-5e5f0e3c"


def child(vault) -> dict | None:
    return vault.kube.custom_object("backuprequests", CHILD)


def started(vault, spec=None):
    run = vault.restore_run(spec)
    with pytest.raises(Wait):
        safety_backup(run)
    return run


def test_a_redirected_restore_takes_none_its_original_database_stays_untouched(vault):
    with pytest.raises(Skip) as skipped:
        safety_backup(vault.restore_run(vault.restore_spec(**REDIRECTED)))
    assert "Redirected" in str(skipped.value)
    assert child(vault) is None


def test_an_in_place_restore_without_one_says_so(vault):
    with pytest.raises(Skip) as skipped:
        safety_backup(vault.restore_run(vault.restore_spec(safetyBackup=False)))
    assert str(skipped.value) == "spec.safetyBackup is false"
    assert child(vault) is None


def test_a_redirected_restore_may_ask_for_one(vault):
    run = started(vault, vault.restore_spec(safetyBackup=True, **REDIRECTED))
    assert run.status.safety_backup == CHILD
    assert child(vault)["spec"]["database"] == {"secretRef": {"name": "restore-admin"}, "databases": ["vault_restored"]}


def test_the_first_pass_creates_a_backup_of_the_target_owned_by_the_restore(vault):
    run = vault.restore_run()
    with pytest.raises(Wait) as waiting:
        safety_backup(run)
    assert waiting.value.message == f"safety backup {CHILD} of the target started"
    assert run.status.safety_backup == CHILD
    body = child(vault)
    BackupRequest.model_validate(body)
    assert body["metadata"]["ownerReferences"] == [run.owner]
    assert body["metadata"]["labels"] == {"walwarden.io/safety-backup-of": "restore-1"}
    spec = body["spec"]
    assert spec["database"] == {"secretRef": {"name": ADMIN_SECRET}, "databases": ["vault"]}
    assert spec["storage"]["s3"]["bucket"] == BUCKET and spec["storage"]["s3"]["prefix"] == "prod/safety"
    assert spec["encryptorSecrets"] == [{"name": EMP_SECRET, "key": "password"}]
    assert spec["topology"] == run.topology.to_dict()
    assert "quiesce" not in spec  # the services keep running: nothing is stopped yet


def test_a_source_without_a_storage_prefix_puts_it_under_safety(vault):
    vault.add_backup("flat", storage_prefix="")
    started(vault, vault.restore_spec(source={"backupRef": {"name": "flat"}}))
    assert child(vault)["spec"]["storage"]["s3"]["prefix"] == "safety"


def test_it_is_created_once_and_waited_for_while_it_runs(vault):
    run = started(vault)
    vault.set_backup_status(CHILD, {"phase": "Running"})
    with pytest.raises(Wait) as waiting:
        safety_backup(vault.next_pass(run))
    assert waiting.value.message == f"safety backup {CHILD} is Running"
    assert [w for w in vault.kube.writes if w[1] == "backuprequests"] == [("create", "backuprequests", CHILD)]


def test_one_without_a_status_yet_is_starting(vault):
    run = started(vault)
    with pytest.raises(Wait) as waiting:
        safety_backup(vault.next_pass(run))
    assert waiting.value.message.endswith("is starting")


def test_a_failed_safety_backup_stops_the_restore_before_anything_is_touched(vault):
    run = started(vault)
    vault.set_backup_status(CHILD, {"phase": "Failed", "message": "the dump failed: disk full"})
    with pytest.raises(StepFailed) as failed:
        safety_backup(vault.next_pass(run))
    assert failed.value.reason == "SafetyBackupFailed"
    assert "disk full" in failed.value.message and "nothing was touched" in failed.value.message


def test_a_succeeded_safety_backup_names_its_artifact(vault):
    run = started(vault)
    artifact = vault.kube.custom_object("backuprequests", "nightly")["status"]["artifact"]
    vault.set_backup_status(CHILD, {"phase": "Succeeded", "artifact": artifact})
    assert safety_backup(vault.next_pass(run)) == f"safety backup {CHILD}: {artifact['uri']}"


def test_succeeded_without_an_artifact_is_not_done(vault):
    run = started(vault)
    vault.set_backup_status(CHILD, {"phase": "Succeeded"})
    with pytest.raises(Wait):
        safety_backup(vault.next_pass(run))


def test_one_created_by_a_pass_whose_status_was_lost_is_not_created_twice(vault, monkeypatch):
    run = vault.restore_run()
    reads = iter([None])  # the read misses it (an old cache), the create conflicts: still one backup
    original = vault.kube.custom.get_namespaced_custom_object

    def stale_read(*args):
        if args[-1] == CHILD and next(reads, "real") is None:
            raise not_found()
        return original(*args)

    vault.kube.add_custom("backuprequests", {"metadata": {"name": CHILD, "uid": "first"}})
    monkeypatch.setattr(vault.kube.custom, "get_namespaced_custom_object", stale_read)
    with pytest.raises(Wait):
        safety_backup(run)
    assert child(vault)["metadata"]["uid"] == "first"


@pytest.mark.parametrize(
    "squatted",
    [
        {"ownerReferences": []},  # made by someone else, first, under the predictable name
        {"spec": {"database": {"secretRef": {"name": ADMIN_SECRET}, "databases": ["another_db"]}}},
        {"spec": {"storage": {"s3": {"bucket": "someone-elses-bucket"}}}},
    ],
)
def test_a_backup_request_under_its_name_that_this_restore_did_not_make_is_not_used(vault, squatted):
    """Whoever may create BackupRequests could make one under the safety backup's name first: of
    another database, or into another bucket, for a rollback to restore with --clean."""
    run = started(vault)
    body = vault.kube.custom_object("backuprequests", CHILD)
    body["metadata"].update(squatted.get("metadata", {}))
    if "ownerReferences" in squatted:
        body["metadata"]["ownerReferences"] = squatted["ownerReferences"]
    for key, value in squatted.get("spec", {}).items():
        body["spec"][key] = {**body["spec"][key], **value}
    artifact = vault.kube.custom_object("backuprequests", "nightly")["status"]["artifact"]
    vault.set_backup_status(CHILD, {"phase": "Succeeded", "artifact": artifact})
    with pytest.raises(StepFailed) as refused:
        safety_backup(vault.next_pass(run))
    assert refused.value.reason == "SafetyBackupNotOurs" and "Nothing was touched" in refused.value.message
