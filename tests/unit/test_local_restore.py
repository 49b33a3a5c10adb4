"""The pure parts of `walwarden restore`: the DSN turned into libpq's environment, the progress
lines and bar, the confirmation; and the arguments refused before anything is contacted."""

from __future__ import annotations

import argparse
import io
from urllib.parse import quote

import pytest

from walwarden.cli import restore as local_restore
from walwarden.cli.restore import (
    Cancelled,
    ProgressBar,
    RestoreProgress,
    Target,
    confirm,
    format_duration,
    format_progress,
    parse_target,
)
from walwarden.runner.errors import InvalidArguments

MiB = 2**20
PASSWORD = "s3cr3t p@ss'word"
QUOTED = quote(PASSWORD, safe="")


# --- the DSN -----------------------------------------------------------------------------------


def test_a_uri_becomes_libpq_environment_variables():
    target = parse_target(f"postgresql://admin:{QUOTED}@db.internal:6432/vault?sslmode=verify-full")
    assert target == Target(
        "vault",
        {
            "PGUSER": "admin",
            "PGPASSWORD": PASSWORD,
            "PGHOST": "db.internal",
            "PGPORT": "6432",
            "PGDATABASE": "vault",
            "PGSSLMODE": "verify-full",
        },
    )


def test_a_keyword_string_becomes_libpq_environment_variables():
    target = parse_target(
        "host=10.0.0.5 port=5432 user=admin password='s3cr3t p@ss\\'word' dbname=vault "
        "sslmode=require sslrootcert=/etc/ca.pem connect_timeout=5"
    )
    assert target.database == "vault"
    assert target.environment == {
        "PGHOST": "10.0.0.5",
        "PGPORT": "5432",
        "PGUSER": "admin",
        "PGPASSWORD": PASSWORD,
        "PGDATABASE": "vault",
        "PGSSLMODE": "require",
        "PGSSLROOTCERT": "/etc/ca.pem",
        "PGCONNECT_TIMEOUT": "5",
    }


def test_several_hosts_stay_one_variable_as_libpq_reads_it():
    target = parse_target("postgresql://admin@db1:5432,db2:5433/vault")
    assert (target.environment["PGHOST"], target.environment["PGPORT"]) == ("db1,db2", "5432,5433")


def test_the_dsn_must_name_the_database():
    with pytest.raises(InvalidArguments, match="must name the database"):
        parse_target("postgresql://admin:pw@db.internal:5432")


def test_an_invalid_dsn_is_refused_without_quoting_it():
    # libpq's own message would quote the text after the password.
    with pytest.raises(InvalidArguments) as raised:
        parse_target(f"host=db password={PASSWORD.split()[0]}junk dangling")
    assert "s3cr3t" not in raised.value.message and "junk" not in raised.value.message


def test_a_parameter_libpq_reads_from_no_variable_is_refused_by_name():
    with pytest.raises(InvalidArguments, match="keepalives"):
        parse_target("host=db dbname=vault keepalives=1")


def test_the_target_is_described_without_its_password():
    target = parse_target(f"postgresql://admin:{QUOTED}@db.internal:6432/vault")
    assert target.describe() == "database 'vault' on db.internal:6432 as admin"
    assert PASSWORD not in repr(target.describe())


# --- progress ----------------------------------------------------------------------------------


def test_the_plain_line_says_percentage_size_rate_and_eta():
    line = format_progress("download", 256 * MiB, 1024 * MiB, elapsed=4.0)
    assert line == "download: 25.0% of 1,024.0 MiB (256.0 MiB), 64.0 MiB/s, ETA 0:12"


def test_a_finished_pass_shows_its_duration_instead_of_an_eta():
    line = format_progress("download", 1024 * MiB, 1024 * MiB, elapsed=75.0, finished=True)
    assert line == "download: 100.0% of 1,024.0 MiB (1,024.0 MiB), 13.7 MiB/s, in 1:15"


def test_no_eta_before_any_byte_and_none_past_the_end():
    assert format_progress("download", 0, 100 * MiB, elapsed=0.0).endswith("0.0 MiB/s, ETA --:--")
    # An artifact bigger than its manifest says (it fails the size check right after).
    assert format_progress("download", 150 * MiB, 100 * MiB, elapsed=1.0).endswith("150.0 MiB/s, ETA 0:00")


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (7.4, "0:07"), (754, "12:34"), (3723, "1:02:03")])
def test_durations(seconds, text):
    assert format_duration(seconds) == text


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_a_terminal_a_plain_line_every_five_seconds():
    stream, clock = io.StringIO(), Clock()
    progress = RestoreProgress(100 * MiB, stream=stream, clock=clock)("download")
    for second in range(1, 12):
        clock.now = float(second)
        progress.update(second * 5 * MiB)
    progress.done(100 * MiB)
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[1].split(" of")[0].strip() for line in lines] == ["25.0%", "50.0%", "100.0%"]
    assert lines[-1].endswith("in 0:11") and "\r" not in stream.getvalue()


def test_on_a_terminal_a_bar_is_redrawn_in_place_and_ends_with_a_newline():
    stream = Terminal()
    progress = ProgressBar("download", 10 * MiB, stream, mininterval=0)
    progress.update(5 * MiB)
    progress.done(10 * MiB)
    output = stream.getvalue()
    redraws = output.split("\r")
    assert any(" 50%|" in line for line in redraws) and "download: 100%|" in redraws[-1]
    assert "10.5M/10.5M" in redraws[-1]  # bytes, SI-scaled as tqdm shows them
    assert output.endswith("\n") and output.count("\n") == 1


def test_each_pass_gets_its_own_bar_and_close_ends_one_a_failure_cut_short():
    stream = Terminal()
    progress = RestoreProgress(10 * MiB, stream=stream)
    progress("download").done(10 * MiB)
    progress("restore").update(3 * MiB)  # pg_restore failed here
    progress.close()
    print("walwarden-error: RestoreFailed: ...", file=stream)
    lines = [line.split("\r")[-1] for line in stream.getvalue().split("\n")[:-1]]
    assert [line.split(":")[0] for line in lines] == ["download", "restore", "walwarden-error"]
    assert "100%" in lines[0] and " 30%" in lines[1]


# --- confirmation and arguments ------------------------------------------------------------------


def test_typing_the_database_name_confirms(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("vault\n"))
    confirm(Target("vault", {"PGHOST": "db", "PGPASSWORD": PASSWORD}))
    prompt = capsys.readouterr().err
    assert "database 'vault' on db:" in prompt and PASSWORD not in prompt


@pytest.mark.parametrize("answer", ["yes\n", "\n", ""])
def test_anything_else_cancels(monkeypatch, answer):
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    with pytest.raises(Cancelled, match="nothing was changed"):
        confirm(Target("vault", {}))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="walwarden")
    local_restore.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["restore", *argv])


def test_in_place_without_yes_and_without_a_terminal_is_refused_before_anything_is_contacted(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    args = parse(
        "--artifact", "s3://bucket/backups/vault.dump", "--target-dsn", f"postgresql://admin:{QUOTED}@192.0.2.1/vault"
    )
    assert args.handler(args) == 2
    output = capsys.readouterr()
    assert output.err.strip().splitlines()[-1].startswith("walwarden-error: ConfirmationRequired: ")
    assert "s3cr3t" not in output.out + output.err


def test_the_defaults():
    args = parse("--artifact", "s3://b/k", "--target-dsn", "dbname=vault")
    assert (args.mode, args.jobs, args.yes, args.region, args.endpoint) == ("InPlace", 2, False, None, None)
