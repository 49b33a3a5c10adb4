"""Restore (restore/steps/restore.py): the go for the staged Job once the services are gone, its
outcome, the row counts; its undo puts the database back by cause and rollbackPolicy."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.unit.fakes import BUCKET, REDIRECTED
from walwarden import postgres
from walwarden.restore import go_signal
from walwarden.restore.steps.restore import put_database_back, restore
from walwarden.restore.steps.stage import stage
from walwarden.runner.contract import GO_ABORT_CONTENT
from walwarden.workflow.engine import StepFailed, UndoCause, Wait

JOB = "restore-1-restore-5e5f0e3c"
URL_SECRET = "restore-1-restore-url-5e5f0e3c"
CHILD = "restore-1-safety-5e5f0e3c"
ROLLBACK_JOB = "restore-1-rollback-5e5f0e3c"


@pytest.fixture(autouse=True)
def services_stopped(vault):
    """These steps run in the stop window: ScaleDown has stopped every service."""
    return vault.kube.stop_all()


def go_key(vault) -> str:
    return f"{vault.backup.prefix}/restore-signals/5e5f0e3c-1111-4222-8333-444455556666"


def go_content(vault) -> bytes:
    return vault.kube.secret(URL_SECRET)[go_signal.GO_CONTENT_KEY].encode()


def staged(vault, spec=None, **manifest):
    """A restore whose Job was staged (its services stopped: Restore comes after ScaleDown)."""
    if manifest:
        vault.add_backup("counted", **manifest)
        spec = vault.restore_spec(source={"backupRef": {"name": "counted"}})
    run = vault.restore_run(spec)
    stage(run)
    return vault.next_pass(run)


def gone(vault, run) -> None:
    """The first pass gave the go; the Job has finished since."""
    with pytest.raises(Wait):
        restore(run)


def refused(run) -> StepFailed:
    with pytest.raises(StepFailed) as failed:
        restore(run)
    return failed.value


# --- the go -------------------------------------------------------------------------------------


def test_a_restore_that_was_never_staged_fails(vault):
    failure = refused(vault.restore_run())
    assert failure.reason == "RestoreJobMissing" and "(never staged)" in failure.message


def test_a_staged_job_deleted_by_hand_fails(vault):
    run = staged(vault)
    del vault.kube.jobs[(vault.namespace, JOB)]
    failure = refused(run)
    assert (
        failure.reason == "RestoreJobMissing" and JOB in failure.message and "nothing was restored" in failure.message
    )


def test_the_running_job_gets_its_go_and_the_database_counts_as_modified(vault):
    run = staged(vault)
    with pytest.raises(Wait) as waiting:
        restore(run)
    assert waiting.value.message == f"Job {JOB}: pg_restore of vault into vault"
    assert vault.s3.get(BUCKET, go_key(vault)) == go_content(vault)
    assert run.status.database_modified is True and run.status.restore_go_at is not None
    [event] = [e for e in run.events if e.reason == "RestoreGo"]
    assert JOB in event.message


def test_the_go_is_given_only_once(vault):
    run = staged(vault)
    with pytest.raises(Wait):
        restore(run)
    given_at = run.status.restore_go_at
    again = vault.next_pass(run)
    with pytest.raises(Wait):
        restore(again)
    assert vault.s3.puts.count((BUCKET, go_key(vault))) == 1
    assert again.status.restore_go_at == given_at and not any(e.reason == "RestoreGo" for e in again.events)


def test_the_database_counts_as_modified_before_the_go_is_written(vault, monkeypatch):
    run = staged(vault)
    seen = []
    put = vault.s3.put_object

    def watching_put(**arguments):
        if arguments["Key"] == go_key(vault):
            seen.append(run.status.database_modified)
        return put(**arguments)

    monkeypatch.setattr(vault.s3, "put_object", watching_put)
    with pytest.raises(Wait):
        restore(run)
    assert seen == [True]


def test_a_go_written_by_a_pass_that_died_before_recording_it_is_recognised(vault):
    run = staged(vault)
    vault.s3.put(BUCKET, go_key(vault), go_content(vault))  # written, then the operator died
    vault.kube.finish_job(JOB)
    restore(run)
    assert run.status.database_modified is True and run.status.restore_go_at is not None
    assert vault.s3.puts == []  # not written again


def test_a_lost_go_signal_secret_fails_and_still_counts_as_modified(vault):
    run = staged(vault)
    del vault.kube.secrets[(vault.namespace, URL_SECRET)]
    failure = refused(run)
    assert failure.reason == "GoSignalLost"
    assert run.status.database_modified is True  # rollback errs on the safe side
    assert vault.s3.get(BUCKET, go_key(vault)) is None


def test_an_abort_is_no_go(vault):
    run = staged(vault)
    vault.s3.put(BUCKET, go_key(vault), GO_ABORT_CONTENT.encode())
    vault.kube.fail_job(JOB, "RestoreCalledOff", "told to stop before restoring; the database was not touched")
    failure = refused(run)
    assert failure.reason == "RestoreCalledOff" and run.status.database_modified is None


def test_a_go_that_cannot_be_read_is_looked_at_again(vault, monkeypatch):
    run = staged(vault)
    vault.kube.finish_job(JOB)

    get = vault.s3.get_object

    def denied(**arguments):
        if arguments["Key"] == go_key(vault):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "GetObject")
        return get(**arguments)

    monkeypatch.setattr(vault.s3, "get_object", denied)
    with pytest.raises(Wait) as waiting:
        restore(run)
    assert "cannot tell whether the restore Job was told to go" in waiting.value.message


# --- the Job's outcome --------------------------------------------------------------------------


def test_a_job_that_failed_before_its_go_left_the_database_alone(vault):
    run = staged(vault)
    vault.kube.fail_job(JOB, "ChecksumMismatch", "the staged artifact's sha256 differs; nothing was restored")
    failure = refused(run)
    assert (failure.reason, failure.message) == (
        "ChecksumMismatch",
        "the restore Job failed: the staged artifact's sha256 differs; nothing was restored",
    )
    assert run.status.database_modified is None and vault.s3.puts == []


def test_a_job_that_failed_after_its_go_says_why(vault):
    run = staged(vault)
    gone(vault, run)
    vault.kube.fail_job(JOB, "RestoreFailed", "pg_restore exited 1: the database was changed")
    failure = refused(vault.next_pass(run))
    assert failure.reason == "RestoreFailed" and "the database was changed" in failure.message


def test_a_job_that_failed_without_a_word_from_its_runner_has_the_jobs_reason(vault):
    run = staged(vault)
    gone(vault, run)
    vault.kube.fail_job(JOB)
    failure = refused(vault.next_pass(run))
    assert failure.reason == "BackoffLimitExceeded" and "backoff limit" in failure.message


def test_a_succeeded_job_with_matching_row_counts_is_done(vault):
    run = staged(vault, row_counts={"public.accounts": 10, "public.wallets": 3})
    gone(vault, run)
    vault.kube.finish_job(JOB)
    vault.db.rows = {"public.accounts": 10, "public.wallets": 3}
    message = restore(vault.next_pass(run))
    assert message.startswith(f"Job {JOB} restored ") and message.endswith("row counts of 2 tables match the manifest")


def test_row_counts_that_differ_from_the_manifest_fail(vault):
    run = staged(vault, row_counts={"public.accounts": 10, "public.wallets": 3})
    gone(vault, run)
    vault.kube.finish_job(JOB)
    vault.db.rows = {"public.accounts": 9}
    failure = refused(vault.next_pass(run))
    assert failure.reason == "RowCountMismatch"
    assert "public.accounts: 9 rows, manifest 10" in failure.message
    assert "public.wallets: None rows, manifest 3" in failure.message


def test_row_counts_are_not_compared_when_switched_off_or_not_recorded(vault):
    vault.add_backup("counted", row_counts={"public.accounts": 10})
    spec = vault.restore_spec(source={"backupRef": {"name": "counted"}}, verify={"compareRowCounts": False})
    run = staged(vault, spec)
    gone(vault, run)
    vault.kube.finish_job(JOB)
    assert "row counts" not in restore(vault.next_pass(run))  # db.rows is empty: a comparison would fail

    vault.kube.jobs.clear()
    run = staged(vault)  # the nightly backup recorded no row counts
    gone(vault, run)
    vault.kube.finish_job(JOB)
    assert "row counts" not in restore(vault.next_pass(run))


def test_row_counts_that_cannot_be_read_fail_with_the_databases_reason(vault):
    run = staged(vault, row_counts={"public.accounts": 10})
    gone(vault, run)
    vault.kube.finish_job(JOB)
    vault.db.error = postgres.DatabaseError("DatabaseUnreachable", "cannot connect to db.internal:5432")
    failure = refused(vault.next_pass(run))
    assert failure.reason == "DatabaseUnreachable" and failure.message.startswith("cannot count rows in vault")


# --- the undo: putting the database back --------------------------------------------------------


def modified(vault, spec=None, safety_backup: str | None = CHILD):
    run = vault.restore_run(spec)
    run.status.database_modified = True
    run.status.safety_backup = safety_backup
    return run


@pytest.mark.parametrize("cause", list(UndoCause))
def test_an_unmodified_database_needs_nothing(vault, cause):
    run = vault.restore_run()
    run.status.safety_backup = CHILD
    assert put_database_back(run, cause) is None


@pytest.mark.parametrize("cause", list(UndoCause))
def test_a_redirected_restore_never_touched_the_original_database(vault, cause):
    assert put_database_back(modified(vault, vault.restore_spec(**REDIRECTED)), cause) is None


def test_a_deletion_tells_the_user_instead_of_restoring(vault):
    vault.add_backup(CHILD)
    message = put_database_back(modified(vault), UndoCause.DELETION)
    assert message == (
        f"the database may be half-restored: restore the safety backup {CHILD} with a new RestoreRequest"
    )
    assert vault.kube.jobs == {}
    message = put_database_back(modified(vault, safety_backup=None), UndoCause.DELETION)
    assert "(none was taken)" in message


def test_without_a_safety_backup_the_user_is_told_to_restore_by_hand(vault):
    message = put_database_back(modified(vault, vault.restore_spec(safetyBackup=False), None), UndoCause.FAILURE)
    assert message == "the database was modified and there is no safety backup: restore it from a backup by hand"


def test_rollback_policy_manual_leaves_the_database_and_says_how(vault, services_stopped):
    vault.kube.start_all(services_stopped)  # ScaleUp had started them again
    vault.add_backup(CHILD)
    run = modified(vault, vault.restore_spec(rollbackPolicy="Manual"))
    message = put_database_back(run, UndoCause.FAILURE)
    assert "rollbackPolicy is Manual" in message and CHILD in message
    assert vault.kube.jobs == {} and vault.kube.replicas()["wallet"] == 2


def test_a_safety_backup_without_an_artifact_cannot_be_restored(vault):
    vault.add_backup(CHILD, phase="Running")
    message = put_database_back(modified(vault), UndoCause.FAILURE)
    assert message == f"the safety backup {CHILD} has no artifact: restore the database by hand"
    assert vault.kube.jobs == {}


def rollback_job_started(vault, run) -> None:
    """Put the database back until its rollback Job runs (the services stopping first)."""
    for _ in range(5):
        with pytest.raises(Wait):
            put_database_back(run, UndoCause.FAILURE)
        if vault.kube.job(ROLLBACK_JOB) is not None:
            return
        vault.kube.settle()
    raise AssertionError("the rollback Job never started")


def rolled_back(vault, run) -> str:
    rollback_job_started(vault, run)
    vault.kube.finish_job(ROLLBACK_JOB)
    return put_database_back(run, UndoCause.FAILURE)


def test_automatic_rollback_stops_the_services_then_restores_the_safety_backup(vault, services_stopped):
    vault.kube.start_all(services_stopped)
    child = vault.add_backup(CHILD)
    run = modified(vault)  # a Verify failure: ScaleUp had started the services again
    with pytest.raises(Wait):
        put_database_back(run, UndoCause.FAILURE)
    assert vault.kube.replicas()["wallet"] == 0 and vault.kube.job(ROLLBACK_JOB) is None  # services first
    assert rolled_back(vault, run) == f"database restored from the safety backup {CHILD}"
    args = vault.kube.job(ROLLBACK_JOB)["spec"]["template"]["spec"]["containers"][0]["args"]
    dump = child.manifest.databases[0]
    assert "--clean" in args and args[args.index("--sha256") + 1] == dump.sha256
    assert args[args.index("--size") + 1] == str(dump.size_bytes)
    assert args[args.index("--database") + 1] == "vault"
    url = vault.kube.secret("restore-1-rollback-url-5e5f0e3c")["url"]
    assert url.startswith(f"https://s3.test/{BUCKET}/{dump.key}?")
    assert "--go-sha256" not in args  # it runs at once: the services are already stopped


def test_a_failed_rollback_job_is_loud(vault):
    vault.add_backup(CHILD)
    run = modified(vault)
    rollback_job_started(vault, run)
    vault.kube.fail_job(ROLLBACK_JOB, "RestoreFailed", "pg_restore exited 1")
    with pytest.raises(StepFailed) as failed:
        put_database_back(run, UndoCause.FAILURE)
    assert failed.value.reason == "RollbackFailed"
    assert "pg_restore exited 1" in failed.value.message and "restore it by hand" in failed.value.message


def test_a_rollback_job_that_finished_is_not_run_again(vault):
    vault.add_backup(CHILD)
    run = modified(vault)
    rolled_back(vault, run)
    writes = list(vault.kube.writes)
    assert put_database_back(vault.next_pass(run), UndoCause.FAILURE).startswith("database restored")
    assert vault.kube.writes == writes
