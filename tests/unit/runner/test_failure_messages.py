"""What each runner command says when it fails, interrupted or not: the state it leaves behind.

Backup writes its manifest last, so "nothing was finished" whenever it fails. Verify never touches
a database. Restore touches nothing until its go, then may leave the target partly restored: its
messages tell which, from the moment the failure came. SIGTERM is sent for real (by the test, or
by the stand-in pg_restore to its parent, as the kubelet would); pg_restore is a shell script.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import signal
import time
from pathlib import Path

import pytest

from walwarden.cli import runner as cli
from walwarden.runner import restore as runner_restore
from walwarden.runner.contract import Env, parse_error_line

CONTENT = b"PGDMP a custom-format dump, as far as these tests care"
SHA256 = hashlib.sha256(CONTENT).hexdigest()
URL_ENV, GO_ENV = "TEST_ARTIFACT_URL", "TEST_GO_URL"
NOT_TOUCHED = "the database was not touched"
PARTLY = "may be partly restored"

pytestmark = pytest.mark.timeout(30)


def terminate_me() -> None:
    """What the kubelet does at the Job's deadline or deletion; the handler raises right here."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)  # never reached: the handler raises first


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="walwarden")
    cli.add_runner_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["runner", *argv])


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    """Run `walwarden runner <argv>`: the (reason, message) of its error line, the last line on stderr."""
    assert cli.run(parse(*argv)) == 1
    parsed = parse_error_line(capsys.readouterr().err.splitlines()[-1])
    assert parsed is not None
    return parsed


@pytest.fixture
def artifact(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[bytes]:
    """The artifact behind the presigned URL: each download serves the next of the returned list
    (the last one again when it runs out), or terminates the runner where an item is None."""
    downloads = [CONTENT]

    def open_url(url: str) -> io.BytesIO:
        body = downloads.pop(0) if len(downloads) > 1 else downloads[0]
        if body is None:
            terminate_me()
        return io.BytesIO(body)

    monkeypatch.setenv(URL_ENV, "https://s3.example/artifact?X-Amz-Signature=x")
    monkeypatch.setenv(Env.STAGING_DIR, str(tmp_path))
    monkeypatch.setattr(runner_restore, "open_url", open_url)
    monkeypatch.setattr(runner_restore, "check_reachable", lambda database, clean: None)
    monkeypatch.setattr(runner_restore, "ensure_database", lambda database: False)
    monkeypatch.setattr(runner_restore, "list_archive", lambda path: "; Format: CUSTOM")
    return downloads


def pg_restore(monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """pg_restore stands in as `sh -c script`, reading the artifact from its stdin or its file."""
    monkeypatch.setattr(
        runner_restore,
        "pg_restore_command",
        lambda database, clean, jobs, path: ["sh", "-c", script, "pg_restore", *([str(path)] if path else [])],
    )


def restore_args(*extra: str, clean: bool = True) -> tuple[str, ...]:
    return (
        "restore",
        "--url-env",
        URL_ENV,
        "--sha256",
        SHA256,
        "--size",
        str(len(CONTENT)),
        "--database",
        "vault",
        *(["--clean"] if clean else []),
        *extra,
    )


def verify_args() -> tuple[str, ...]:
    return ("verify", "--url-env", URL_ENV, "--sha256", SHA256, "--size", str(len(CONTENT)))


# --- backup ----------------------------------------------------------------------------------------


def test_an_interrupted_backup_finished_nothing(monkeypatch, capsys):
    monkeypatch.setattr("walwarden.runner.backup.run_backup", lambda options: terminate_me())
    reason, message = run(capsys, "backup", "--database", "vault", "--bucket", "b", "--prefix", "p")
    assert reason == "DumpFailed"
    assert message == "interrupted by SIGTERM (the Job's deadline, or its deletion); nothing was finished"


# --- verify ----------------------------------------------------------------------------------------


def test_an_interrupted_verify_touched_no_database(artifact, capsys):
    artifact[:] = [None]
    reason, message = run(capsys, *verify_args())
    assert reason == "VerifyInterrupted"
    assert message == f"interrupted by SIGTERM (the Job's deadline, or its deletion); {NOT_TOUCHED}"


def test_a_bug_in_verify_says_so_and_that_no_database_was_touched(artifact, monkeypatch, capsys):
    monkeypatch.setattr(runner_restore, "list_archive", lambda path: {}["missing"])
    reason, message = run(capsys, *verify_args())
    assert reason == "UnexpectedError" and message.startswith("unexpected KeyError")
    assert message.endswith(NOT_TOUCHED)


# --- restore: before the database is touched ------------------------------------------------------


def test_a_restore_interrupted_while_downloading_touched_nothing(artifact, capsys):
    artifact[:] = [None]
    reason, message = run(capsys, *restore_args())
    assert reason == "RestoreInterrupted"
    assert message == f"interrupted by SIGTERM (the Job's deadline, or its deletion); {NOT_TOUCHED}"


def test_a_restore_interrupted_while_waiting_for_its_go_touched_nothing(artifact, monkeypatch, capsys):
    monkeypatch.setenv(GO_ENV, "https://s3.example/go")
    monkeypatch.setattr(runner_restore, "wait_for_go", lambda go: terminate_me())
    reason, message = run(capsys, *restore_args("--go-url-env", GO_ENV, "--go-sha256", "cd" * 32))
    assert reason == "RestoreInterrupted" and message.endswith(NOT_TOUCHED)


def test_a_restore_called_off_before_its_go_touched_nothing(artifact, monkeypatch, capsys):
    monkeypatch.setenv(GO_ENV, "https://s3.example/go")
    artifact[:] = [CONTENT, b"abort"]  # the artifact, then the go object
    reason, message = run(capsys, *restore_args("--go-url-env", GO_ENV, "--go-sha256", "cd" * 32))
    assert reason == "RestoreCalledOff" and message.endswith(f"services were stopping); {NOT_TOUCHED}")


def test_a_corrupt_artifact_is_refused_before_the_database_is_touched(artifact, capsys):
    artifact[:] = [CONTENT.upper()]
    reason, message = run(capsys, *restore_args())
    assert reason == "ChecksumMismatch" and message.endswith(f"it is corrupt or was replaced; {NOT_TOUCHED}")


def test_a_created_database_is_said_to_be_empty(artifact, monkeypatch, capsys):
    monkeypatch.setattr(runner_restore, "ensure_database", lambda database: True)
    monkeypatch.setattr(runner_restore, "pg_restore_command", lambda *args: terminate_me())
    reason, message = run(capsys, *restore_args(clean=False))
    assert reason == "RestoreInterrupted"
    assert message.endswith("the database 'vault' was created, empty, and nothing was restored into it")


# --- restore: once pg_restore has started --------------------------------------------------------


def test_a_restore_interrupted_during_pg_restore_may_be_partly_restored(artifact, monkeypatch, capsys):
    pg_restore(monkeypatch, "kill -TERM $PPID; sleep 10")  # the Job deleted while pg_restore runs
    reason, message = run(capsys, *restore_args())
    assert reason == "RestoreInterrupted"
    assert message == (
        "interrupted by SIGTERM (the Job's deadline, or its deletion); the target database 'vault' "
        f"{PARTLY}: restore again (InPlace replaces what is there) or roll back to the safety backup"
    )


def test_a_redirected_restore_interrupted_during_pg_restore_says_to_drop_the_target(artifact, monkeypatch, capsys):
    pg_restore(monkeypatch, "kill -TERM $PPID; sleep 10")
    reason, message = run(capsys, *restore_args(clean=False))
    assert reason == "RestoreInterrupted"
    assert message.endswith(
        f"the target database 'vault' {PARTLY}: drop it and restore again, or roll back (leave "
        "the services on the original database)"
    )


def test_a_failed_pg_restore_may_have_restored_part(artifact, monkeypatch, capsys):
    pg_restore(monkeypatch, 'echo "pg_restore: error: could not execute query: ERROR: out of disk" >&2; exit 1')
    reason, message = run(capsys, *restore_args())
    assert reason == "RestoreFailed"
    assert message.startswith(
        "pg_restore exited 1: pg_restore: error: could not execute query: ERROR: out of disk; "
        f"the target database 'vault' {PARTLY}: restore again"
    )


def test_a_bug_after_pg_restore_started_says_the_target_may_be_partly_restored(artifact, monkeypatch, capsys):
    pg_restore(monkeypatch, "exit 1")
    monkeypatch.setattr(runner_restore, "_pg_error", lambda text: {}["missing"])
    reason, message = run(capsys, *restore_args())
    assert reason == "UnexpectedError" and message.startswith("unexpected KeyError") and PARTLY in message


def test_an_artifact_changed_while_streaming_into_pg_restore_may_have_restored_part(artifact, monkeypatch, capsys):
    """Without staging room the artifact is read twice: a change seen on the second pass, which
    pg_restore was fed, comes after the database was touched."""
    monkeypatch.setattr(runner_restore, "has_room", lambda artifact, directory: False)
    pg_restore(monkeypatch, "exec cat > /dev/null")
    artifact[:] = [CONTENT, CONTENT.upper()]
    reason, message = run(capsys, *restore_args())
    assert reason == "ChecksumMismatch"
    assert message.endswith(
        f"it is corrupt or was replaced; the target database 'vault' {PARTLY}: restore again "
        "(InPlace replaces what is there) or roll back to the safety backup"
    )


def test_the_local_restore_gets_the_same_account_of_a_failure(artifact, monkeypatch):
    """`walwarden restore` calls run_restore without a state of its own."""
    pg_restore(monkeypatch, "exit 1")
    artifact_ = runner_restore.Artifact(url="https://s3.example/a", sha256=SHA256, size=len(CONTENT))
    with pytest.raises(runner_restore.RestoreFailed) as failed:
        runner_restore.run_restore(artifact_, "vault", clean=False, jobs=2)
    assert f"the target database 'vault' {PARTLY}: drop it and restore again" in failed.value.message


def test_a_successful_restore_says_nothing_of_the_sort(artifact, monkeypatch, capsys):
    pg_restore(monkeypatch, 'cat "$1" > /dev/null')
    assert cli.run(parse(*restore_args())) == 0
    assert "walwarden-error" not in capsys.readouterr().err


def test_what_the_clean_up_adds_on_the_way_out_is_kept(monkeypatch, capsys):
    def backup(options: object) -> None:
        try:
            terminate_me()
        except BaseException as interruption:  # as MultipartUpload.__exit__ does when its abort fails
            interruption.add_note("(aborting the multipart upload of p/vault.dump failed too)")
            raise

    monkeypatch.setattr("walwarden.runner.backup.run_backup", backup)
    reason, message = run(capsys, "backup", "--database", "vault", "--bucket", "b", "--prefix", "p")
    assert reason == "DumpFailed"
    assert message.endswith("nothing was finished (aborting the multipart upload of p/vault.dump failed too)")


def test_a_failed_pg_restore_says_postgresqls_error_not_the_tail_of_the_statement():
    stderr = (
        'pg_restore: error: could not execute query: ERROR:  relation "accounts" already exists\n'
        "Command was: CREATE TABLE public.accounts (\n"
        "    id integer NOT NULL,\n"
        "    created_at timestamp with time zone NOT NULL,\n"
        ");\n"
    )
    said = runner_restore._pg_error(stderr)
    assert said == 'pg_restore: error: could not execute query: ERROR:  relation "accounts" already exists'
    assert runner_restore._pg_error("killed\n") == "killed"  # nothing of the kind: the last lines
