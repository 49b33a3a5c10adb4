"""`walwarden runner backup` as a process, against a real PostgreSQL and a real MinIO: nothing is mocked.

The one stand-in is a pg_dump that fails on purpose (a script first on PATH), to prove that a
dump failing mid-way leaves neither a dangling multipart upload nor a manifest; it runs against
the same real server and object store.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack import vaultdb
from devstack.postgres import PostgresServer
from devstack.processes import free_port
from devstack.s3 import S3Server
from walwarden.security.fingerprints import matches
from walwarden.storage.manifest import manifest_key, read_manifest, signature_valid

pytestmark = pytest.mark.integration

RESULT_KEY = "the-result-key-of-this-request"
EMP_VALUE = "correct horse battery staple"
PREFIX = "backups/vault/nightly-1a2b3c4d"


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error(self) -> tuple[str, str]:
        """(reason, message) from the last stderr line, which must be the walwarden-error line."""
        last = self.stderr.strip().splitlines()[-1]
        assert last.startswith("walwarden-error: "), f"last stderr line: {last!r}\n{self.stderr}"
        reason, _, message = last.removeprefix("walwarden-error: ").partition(": ")
        return reason, message


@dataclass
class Runner:
    postgres: PostgresServer
    s3: S3Server
    bucket: str

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            **self.postgres.client_env(),
            "AWS_ACCESS_KEY_ID": self.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3.secret_key,
            "WALWARDEN_RESULT_KEY": RESULT_KEY,
            "WALWARDEN_EMP_0": EMP_VALUE,
        }
        env.pop("PGDATABASE")  # the runner names its databases itself
        return {**env, **overrides}

    def backup(
        self, *databases: str, bucket: str | None = None, prefix: str = PREFIX, extra: tuple[str, ...] = (), **env: str
    ) -> Outcome:
        args = [
            "--bucket",
            bucket or self.bucket,
            "--prefix",
            prefix,
            "--endpoint",
            self.s3.endpoint,
            "--force-path-style",
            "--emp",
            "emp/password=WALWARDEN_EMP_0",
            "--backup-namespace",
            "vault",
            "--backup-name",
            "nightly",
            "--backup-uid",
            "1a2b3c4d-0000",
            *extra,
        ]
        for database in databases:
            args += ["--database", database]
        result = subprocess.run(
            [sys.executable, "-m", "walwarden", "runner", "backup", *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        outcome = Outcome(result.returncode, result.stdout, result.stderr)
        for secret in (self.postgres.password, self.s3.secret_key, EMP_VALUE, RESULT_KEY):
            assert secret not in outcome.stdout + outcome.stderr, "a secret was printed"
        return outcome

    def keys(self) -> list[str]:
        listing = self.s3.client().list_objects_v2(Bucket=self.bucket)
        return [entry["Key"] for entry in listing.get("Contents", [])]

    def dangling_uploads(self) -> list[str]:
        # The whole bucket: MinIO matches a Prefix here only when it is a whole object key.
        uploads = self.s3.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return [upload["Key"] for upload in uploads]


@pytest.fixture
def runner(postgres_server, s3_server, s3_bucket) -> Runner:
    return Runner(postgres_server, s3_server, s3_bucket)


def qualified(counts: dict[str, int]) -> dict[str, int]:
    """vaultdb names public tables without their schema; the manifest always names it."""
    return {(name if "." in name else f"public.{name}"): rows for name, rows in counts.items()}


def fake_pg_dump(tmp_path: Path, script: str) -> dict[str, str]:
    """A PATH whose first pg_dump runs `script` (sh), with $REAL the real pg_dump."""
    bindir = tmp_path / "fake-bin"
    bindir.mkdir()
    path = bindir / "pg_dump"
    path.write_text(f"#!/bin/sh\nREAL={shutil.which('pg_dump')}\n{script}\n")
    path.chmod(0o755)
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}


def test_the_dump_lands_in_s3_with_a_signed_manifest_that_matches_its_bytes_and_restores(
    runner, vault_db, empty_db, postgres_server, tmp_path
):
    outcome = runner.backup(vault_db.name)
    assert outcome.returncode == 0, outcome.stderr
    assert "MiB/s" in outcome.stdout  # the progress lines

    client = runner.s3.client()
    manifest = read_manifest(client, runner.bucket, manifest_key(PREFIX))
    assert runner.keys() == sorted([f"{PREFIX}/{vault_db.name}.dump", f"{PREFIX}/manifest.json"])
    [dump] = manifest.databases
    assert (dump.name, dump.key, dump.uri) == (
        vault_db.name,
        f"{PREFIX}/{vault_db.name}.dump",
        f"s3://{runner.bucket}/{PREFIX}/{vault_db.name}.dump",
    )
    body = client.get_object(Bucket=runner.bucket, Key=dump.key)["Body"].read()
    assert len(body) == dump.size_bytes
    assert hashlib.sha256(body).hexdigest() == dump.sha256
    assert body.startswith(b"PGDMP")  # pg_dump's custom format
    assert dump.row_counts == qualified(vault_db.row_counts)
    assert manifest.pg_dump_version and manifest.pg_server_version == postgres_server.version.split()[0]
    assert (manifest.backup.namespace, manifest.backup.name, manifest.backup.uid) == (
        "vault",
        "nightly",
        "1a2b3c4d-0000",
    )
    assert signature_valid(manifest, RESULT_KEY.encode())
    assert not signature_valid(manifest, b"another key")
    [emp] = manifest.encryptor_fingerprints
    assert emp.secret == "emp/password"
    assert matches(EMP_VALUE, emp) and not matches("another password", emp)
    assert runner.dangling_uploads() == []

    # Plain pg_restore of the downloaded bytes gives back the rows the manifest promises.
    path = tmp_path / "vault.dump"
    path.write_bytes(body)
    restored = subprocess.run(
        [str(postgres_server.bindir / "pg_restore"), "--exit-on-error", "--no-owner", "--dbname", empty_db, str(path)],
        env=postgres_server.client_env(empty_db),
        capture_output=True,
        text=True,
        check=False,
    )
    assert restored.returncode == 0, restored.stderr
    assert qualified(vaultdb.row_counts(postgres_server.dsn(empty_db))) == dump.row_counts


def test_several_databases_are_dumped_in_one_run(runner, vault_db, empty_db):
    outcome = runner.backup(vault_db.name, empty_db)
    assert outcome.returncode == 0, outcome.stderr
    manifest = read_manifest(runner.s3.client(), runner.bucket, manifest_key(PREFIX))
    assert [dump.name for dump in manifest.databases] == [vault_db.name, empty_db]
    assert manifest.databases[1].row_counts == {}


def test_a_prefix_that_holds_a_finished_backup_is_not_overwritten(runner, empty_db):
    assert runner.backup(empty_db).returncode == 0
    outcome = runner.backup(empty_db)
    assert outcome.returncode != 0
    assert outcome.error[0] == "InvalidArguments"


def test_a_wrong_password_fails_before_anything_is_written(runner, vault_db):
    outcome = runner.backup(vault_db.name, PGPASSWORD="not-the-password")
    assert outcome.returncode != 0
    reason, message = outcome.error
    assert reason == "AuthenticationFailed"
    assert "password authentication failed" in message
    assert runner.keys() == []
    assert runner.dangling_uploads() == []


def test_a_missing_database(runner):
    reason, message = runner.backup("no_such_database").error
    assert reason == "DatabaseNotFound" and "no_such_database" in message
    assert runner.keys() == []


def test_an_unreachable_server(runner, vault_db):
    reason, message = runner.backup(vault_db.name, PGPORT=str(free_port()), PGCONNECT_TIMEOUT="5").error
    assert reason == "DatabaseUnreachable" and "Connection refused" in message


def test_a_missing_bucket(runner, vault_db):
    reason, message = runner.backup(vault_db.name, bucket="no-such-bucket").error
    assert reason == "BucketNotFound" and "no-such-bucket" in message


def test_a_wrong_object_store_secret(runner, vault_db):
    reason, _ = runner.backup(vault_db.name, AWS_SECRET_ACCESS_KEY="not-the-secret").error
    assert reason == "StorageAccessDenied"
    assert runner.keys() == []


def test_an_emp_variable_that_is_not_set(runner, vault_db):
    reason, message = runner.backup(vault_db.name, WALWARDEN_EMP_0="").error
    assert reason == "InvalidArguments" and "WALWARDEN_EMP_0" in message


def test_bad_arguments_end_with_the_error_line(runner):
    outcome = runner.backup()  # no --database
    assert outcome.returncode == 2
    assert outcome.error[0] == "InvalidArguments"


def test_a_pg_dump_older_than_the_server(runner, vault_db, tmp_path):
    old = fake_pg_dump(tmp_path, 'echo "pg_dump (PostgreSQL) 9.6.24"')
    reason, message = runner.backup(vault_db.name, **old).error
    assert reason == "PgDumpTooOld"
    assert "9.6.24" in message and runner.postgres.version.split()[0] in message


def test_a_dump_failing_midway_leaves_no_upload_no_manifest_and_no_earlier_dump(runner, vault_db, empty_db, tmp_path):
    # The second database's pg_dump writes 20 MB (two parts uploaded) and then fails; the first
    # is dumped for real and completes, and must be deleted since no manifest will describe it.
    failing = fake_pg_dump(
        tmp_path,
        f"""
        [ "$1" = --version ] && exec "$REAL" --version
        [ "$PGDATABASE" = "{empty_db}" ] || exec "$REAL" "$@"
        head -c 20000000 /dev/urandom
        echo "pg_dump: error: simulated failure after 20 MB" >&2
        exit 1""",
    )
    outcome = runner.backup(vault_db.name, empty_db, **failing)
    reason, message = outcome.error
    assert reason == "DumpFailed"
    assert "simulated failure after 20 MB" in message and "status 1" in message
    assert runner.keys() == []
    assert runner.dangling_uploads() == []
