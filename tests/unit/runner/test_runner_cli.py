"""The `walwarden runner backup` arguments, and the error line that ends every failure."""

from __future__ import annotations

import argparse

import psycopg
import pytest

from walwarden.cli import runner as cli
from walwarden.runner import restore as runner_restore
from walwarden.runner.errors import AuthenticationFailed, DumpFailed, RunnerError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="walwarden")
    cli.add_runner_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["runner", *argv])


def test_backup_arguments():
    args = parse(
        "backup",
        "--database",
        "vault",
        "--database",
        "audit",
        "--bucket",
        "b",
        "--prefix",
        "p/q",
        "--emp",
        "emp/password=WALWARDEN_EMP_0",
        "--expected-bytes",
        "1024",
        "--force-path-style",
    )
    assert (args.runner_command, args.database, args.bucket, args.prefix) == ("backup", ["vault", "audit"], "b", "p/q")
    assert args.emp == [("emp/password", "WALWARDEN_EMP_0")]
    assert (args.region, args.endpoint, args.force_path_style, args.expected_bytes) == ("us-east-1", None, True, 1024)


@pytest.mark.parametrize(
    "argv",
    [
        ("backup", "--bucket", "b", "--prefix", "p"),  # no --database
        ("backup", "--database", "d", "--bucket", "b", "--prefix", "p", "--emp", "no-variable"),
        ("backup", "--database", "d", "--bucket", "b", "--prefix", "p", "--expected-bytes", "-1"),
        # A database name is never a connection string, whoever wrote the Job's arguments.
        ("backup", "--database", "host=127.0.0.77 dbname=x", "--bucket", "b", "--prefix", "p"),
    ],
)
def test_bad_arguments_end_with_an_invalid_arguments_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(*argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("walwarden-error: InvalidArguments: ")


def test_a_failure_is_the_last_stderr_line_on_one_line(capsys):
    def fail():
        print("progress")
        raise AuthenticationFailed('password authentication failed\nfor user "postgres"')

    assert cli._report(fail, cli.BACKUP_EXPLANATION) == 1
    out = capsys.readouterr()
    assert out.out == "progress\n"
    assert out.err.splitlines()[-1] == (
        'walwarden-error: AuthenticationFailed: password authentication failed for user "postgres"'
    )


def test_a_note_added_on_the_way_out_is_kept():
    error = DumpFailed("pg_dump exited with status 1")
    error.add_note("aborting the multipart upload failed too: timeout")
    assert error.error_line() == (
        "walwarden-error: DumpFailed: pg_dump exited with status 1 aborting the multipart upload failed too: timeout"
    )


def test_an_unexpected_exception_still_ends_with_a_reason(capsys):
    def bug():
        raise KeyError("x")

    assert cli._report(bug, cli.BACKUP_EXPLANATION) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith("walwarden-error: DumpFailed: unexpected KeyError")
    assert err.splitlines()[-1].endswith("nothing was finished")


def test_every_reason_is_a_runner_error():
    from walwarden.runner import errors

    reasons = {
        cls.reason
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, RunnerError) and "reason" in vars(cls)
    }
    assert reasons == {
        "RunnerError",
        "InvalidArguments",
        "AuthenticationFailed",
        "DatabaseUnreachable",
        "DatabaseNotFound",
        "PgDumpTooOld",
        "DumpFailed",
        "BucketNotFound",
        "StorageAccessDenied",
        "UploadFailed",
        "UnexpectedError",
    }


def test_a_long_message_is_cut_to_fit_the_termination_message():
    line = DumpFailed("x" * 5000).error_line()
    assert line.startswith("walwarden-error: DumpFailed: xxx") and len(line.encode()) < 2048


def test_a_consequence_is_added_to_the_message_and_its_line():
    error = DumpFailed("pg_restore exited 1")
    error.add_consequence("the database may be partly restored")
    assert str(error) == error.message == "pg_restore exited 1; the database may be partly restored"
    assert error.error_line() == "walwarden-error: DumpFailed: pg_restore exited 1; the database may be partly restored"


def test_restore_takes_an_optional_go_signal(monkeypatch):
    base = ("restore", "--url-env", "URL", "--sha256", "AB" * 32, "--size", "10", "--database", "vault")
    assert cli._go_signal(parse(*base)) is None  # the local CLI and rollback Jobs restore at once
    monkeypatch.setenv("GO", "https://s3.example/go?X-Amz-Signature=x")
    go = cli._go_signal(parse(*base, "--go-url-env", "GO", "--go-sha256", "CD" * 32, "--go-timeout", "30"))
    assert (go.url, go.sha256, go.timeout_seconds) == ("https://s3.example/go?X-Amz-Signature=x", "cd" * 32, 30)


@pytest.mark.parametrize("extra", [("--go-url-env", "UNSET_GO_URL", "--go-sha256", "cd"), ("--go-url-env", "GO")])
def test_a_go_signal_needs_its_url_and_sha256(monkeypatch, extra):
    monkeypatch.setenv("GO", "https://s3.example/go")
    args = parse("restore", "--url-env", "URL", "--sha256", "ab", "--size", "10", "--database", "vault", *extra)
    with pytest.raises(cli.InvalidArguments):
        cli._go_signal(args)


@pytest.mark.parametrize("name", ["vault", "vault_drill", "my-db$1"])
def test_pg_restore_gets_its_database_as_a_quoted_dbname_only(name):
    command = runner_restore.pg_restore_command(name, clean=False, jobs=None, path=None)
    assert command[command.index("-d") + 1] == f"dbname='{name}'"


def test_a_quote_in_a_database_name_cannot_end_the_dbname_value():
    """The runner's arguments are validated names; the quoting holds even for one that was not."""
    conninfo = runner_restore.dbname_conninfo("x' host='attacker.example")
    assert conninfo == "dbname='x\\' host=\\'attacker.example'"
    assert psycopg.conninfo.conninfo_to_dict(conninfo) == {"dbname": "x' host='attacker.example"}
