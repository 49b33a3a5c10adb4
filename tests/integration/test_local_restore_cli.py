"""`walwarden restore` (the local restore) as a process, against a real PostgreSQL and a real MinIO:
nothing is mocked. The artifact and its manifest are written by the backup runner, as a
BackupRequest's Job writes them.

The one wrapper is a pg_restore first on PATH that records its arguments (and whether it got a
password through the environment) before running the real one: that is how the tests see that
the DSN never reaches a command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from devstack import vaultdb
from walwarden.storage.manifest import DatabaseDump, manifest_key, read_manifest

pytestmark = pytest.mark.integration

PREFIX = "backups/vault/nightly"


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def reason(self) -> str:
        """The reason of the `walwarden-error: <Reason>: <message>` line, which must be the last."""
        last = self.stderr.strip().splitlines()[-1]
        assert last.startswith("walwarden-error: "), f"last stderr line: {last!r}\n{self.stderr}"
        return last.removeprefix("walwarden-error: ").partition(": ")[0]


@dataclass
class LocalRestore:
    postgres: object
    s3: object
    bucket: str
    dump: DatabaseDump
    pg_restore_log: Path

    @property
    def artifact(self) -> str:
        return self.dump.uri

    def dsn(self, database: str, password: str | None = None) -> str:
        return self.postgres.dsn(database, password=password)

    def run(
        self,
        *args: str,
        target_dsn: str,
        mode: str = "Redirected",
        artifact: str | None = None,
        secrets: tuple[str, ...] = (),
    ) -> Outcome:
        """`python -m walwarden restore` with the user's AWS keys in the environment and no PG* variable:
        the DSN is the only way to the database. stdin is not a terminal."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        env.update(
            AWS_ACCESS_KEY_ID=self.s3.access_key,
            AWS_SECRET_ACCESS_KEY=self.s3.secret_key,
            PATH=f"{self.pg_restore_log.parent}{os.pathsep}{os.environ['PATH']}",
            PG_RESTORE_LOG=str(self.pg_restore_log),
        )
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "walwarden",
                "restore",
                "--artifact",
                artifact or self.artifact,
                "--target-dsn",
                target_dsn,
                "--mode",
                mode,
                "--endpoint",
                self.s3.endpoint,
                "--force-path-style",
                *args,
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        outcome = Outcome(result.returncode, result.stdout, result.stderr)
        for secret in (self.postgres.password, target_dsn, self.s3.secret_key, *secrets):
            assert secret not in outcome.stdout + outcome.stderr, "a secret was printed"
        return outcome

    def pg_restore_calls(self) -> list[str]:
        """What the pg_restore wrapper recorded: its arguments, one per line, then 'PGPASSWORD set'.
        Neither the password nor a DSN is ever among the arguments."""
        calls = self.pg_restore_log.read_text().splitlines() if self.pg_restore_log.exists() else []
        assert not any(self.postgres.password in arg or "postgresql://" in arg for arg in calls), calls
        return calls


@pytest.fixture
def local(postgres_server, s3_server, s3_bucket, vault_db, tmp_path) -> LocalRestore:
    env = {
        **postgres_server.client_env(),
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "walwarden",
            "runner",
            "backup",
            "--database",
            vault_db.name,
            "--bucket",
            s3_bucket,
            "--prefix",
            PREFIX,
            "--endpoint",
            s3_server.endpoint,
            "--force-path-style",
        ],
        env=env,
        capture_output=True,
        check=True,
        timeout=300,
    )
    [dump] = read_manifest(s3_server.client(), s3_bucket, manifest_key(PREFIX)).databases
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "pg_restore"
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" >> "$PG_RESTORE_LOG"\n'
        f'[ -n "$PGPASSWORD" ] && echo "PGPASSWORD set" >> "$PG_RESTORE_LOG"\n'
        f'exec {shutil.which("pg_restore")} "$@"\n'
    )
    wrapper.chmod(0o755)
    return LocalRestore(postgres_server, s3_server, s3_bucket, dump, bindir / "calls.log")


def account_names(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as connection:
        return [row[0] for row in connection.execute("SELECT name FROM accounts ORDER BY id")]


def qualified(counts: dict[str, int]) -> dict[str, int]:
    """vaultdb names public tables without their schema; the manifest always names it."""
    return {(name if "." in name else f"public.{name}"): rows for name, rows in counts.items()}


def test_redirected_restore_creates_the_database_and_restores_every_row(local, vault_db, postgres_server):
    target = f"{vault_db.name}_copy"
    try:
        outcome = local.run(target_dsn=local.dsn(target), mode="Redirected")
        assert outcome.returncode == 0, outcome.stderr
        restored = vaultdb.row_counts(local.dsn(target))
        assert restored == vault_db.row_counts
        assert qualified(restored) == local.dump.row_counts
        assert "100.0% of" in outcome.stderr and "MiB/s" in outcome.stderr  # the progress line (not a terminal)
        assert f"restored {local.artifact} into '{target}' (Redirected)" in outcome.stdout
        calls = local.pg_restore_calls()
        assert "--clean" not in calls and "--exit-on-error" in calls and calls[-1] == "PGPASSWORD set"
    finally:
        postgres_server.drop_database(target)


def test_in_place_restore_brings_the_backed_up_rows_back(local, vault_db):
    original = account_names(vault_db.dsn)
    vaultdb.mutate_accounts(vault_db.dsn)
    outcome = local.run("--yes", target_dsn=vault_db.dsn, mode="InPlace")
    assert outcome.returncode == 0, outcome.stderr
    assert account_names(vault_db.dsn) == original
    assert vaultdb.row_counts(vault_db.dsn) == vault_db.row_counts
    calls = local.pg_restore_calls()
    assert {"--clean", "--if-exists", "--jobs"} <= set(calls) and "PGPASSWORD set" in calls


@pytest.mark.parametrize("damage, reason", [("flip a byte", "ChecksumMismatch"), ("truncate", "SizeMismatch")])
def test_a_damaged_artifact_is_refused_before_the_database_is_touched(local, vault_db, damage, reason):
    client = local.s3.client()
    body = bytearray(client.get_object(Bucket=local.bucket, Key=local.dump.key)["Body"].read())
    if damage == "truncate":
        del body[len(body) // 2 :]
    else:
        body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=local.bucket, Key=local.dump.key, Body=bytes(body))
    vaultdb.mutate_accounts(vault_db.dsn)
    before = account_names(vault_db.dsn)

    outcome = local.run("--yes", target_dsn=vault_db.dsn, mode="InPlace")
    assert outcome.returncode == 1 and outcome.reason == reason, outcome.stderr
    assert account_names(vault_db.dsn) == before  # untouched: still the mutated accounts
    assert local.pg_restore_calls() == []  # pg_restore never ran


def test_in_place_without_yes_is_refused_when_there_is_no_terminal_to_ask_on(local, vault_db):
    vaultdb.mutate_accounts(vault_db.dsn)
    before = account_names(vault_db.dsn)
    outcome = local.run(target_dsn=vault_db.dsn, mode="InPlace")
    assert outcome.returncode == 2 and outcome.reason == "ConfirmationRequired", outcome.stderr
    assert "--yes" in outcome.stderr
    assert account_names(vault_db.dsn) == before


def test_a_wrong_password_fails_before_the_download_and_is_never_printed(local, vault_db):
    wrong = "not-the-password-4f1c"
    outcome = local.run("--yes", target_dsn=local.dsn(vault_db.name, password=wrong), mode="InPlace", secrets=(wrong,))
    assert outcome.returncode == 1 and outcome.reason == "AuthenticationFailed", outcome.stderr
    assert "download" not in outcome.stderr  # no progress line: nothing was downloaded
    assert local.pg_restore_calls() == []


def test_an_artifact_without_a_manifest_beside_it_is_refused(local, vault_db):
    client = local.s3.client()
    client.copy_object(
        Bucket=local.bucket, Key="elsewhere/vault.dump", CopySource={"Bucket": local.bucket, "Key": local.dump.key}
    )
    outcome = local.run(
        "--yes", target_dsn=vault_db.dsn, mode="InPlace", artifact=f"s3://{local.bucket}/elsewhere/vault.dump"
    )
    assert outcome.returncode == 1 and outcome.reason == "ManifestMissing", outcome.stderr
    assert local.pg_restore_calls() == []
