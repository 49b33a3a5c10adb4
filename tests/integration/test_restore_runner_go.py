"""`walwarden runner restore` with a go signal, as the operator's restore Job runs it: started while
the services are still stopping, it downloads and verifies the artifact, then waits for the
operator's go object before it touches the database (not even creating it). Real PostgreSQL,
real MinIO, presigned URLs only; with and without room to stage the artifact."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack import vaultdb

pytestmark = pytest.mark.integration

GO_CONTENT = "the-operators-go-content-" + uuid.uuid4().hex


@dataclass
class StagedRestore:
    process: subprocess.Popen
    output: Path
    database: str
    put_go: object

    def text(self) -> str:
        return self.output.read_text()

    def wait_until_waiting_for_go(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "waiting for the operator's go" not in self.text():
            assert self.process.poll() is None, f"the runner ended early:\n{self.text()}"
            assert time.monotonic() < deadline, f"the runner never waited for the go:\n{self.text()}"
            time.sleep(0.1)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        return code, self.text()


def database_exists(postgres_server, name: str) -> bool:
    with postgres_server.connect() as connection:
        return connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


@pytest.fixture
def staged(postgres_server, s3_server, s3_bucket, vault_db, tmp_path):
    """Start a gated restore of vault_db's dump into a database that does not exist yet."""
    dump = tmp_path / "vault.dump"
    subprocess.run(
        [str(postgres_server.bindir / "pg_dump"), "-Fc", "-f", str(dump), vault_db.name],
        env=postgres_server.client_env(vault_db.name),
        check=True,
        capture_output=True,
    )
    client = s3_server.client()
    client.upload_file(str(dump), s3_bucket, "restore/vault.dump")
    go_key = f"restore/restore-signals/{uuid.uuid4()}"

    def presign(key: str) -> str:
        return client.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": key}, ExpiresIn=600)

    target = f"restored_{uuid.uuid4().hex[:10]}"
    env = {
        **postgres_server.client_env(),
        "WALWARDEN_ARTIFACT_URL": presign("restore/vault.dump"),
        "WALWARDEN_GO_URL": presign(go_key),
        "PATH": f"{postgres_server.bindir}:{os.environ['PATH']}",
    }
    env.pop("PGDATABASE")
    output = tmp_path / "runner.log"

    def start(go_timeout: int = 120, staging_room: str | None = None) -> StagedRestore:
        """staging_room: the size of a tmpfs the runner stages into (its own mount namespace)."""
        wrapper = []
        if staging_room:
            staging = tmp_path / "staging"
            staging.mkdir()
            env["WALWARDEN_STAGING_DIR"] = str(staging)
            wrapper = [
                "unshare",
                "--mount",
                "--map-root-user",
                "sh",
                "-c",
                f'mount -t tmpfs -o size={staging_room} tmpfs "{staging}" && exec "$@"',
                "sh",
            ]
        args = [
            *wrapper,
            sys.executable,
            "-m",
            "walwarden",
            "runner",
            "restore",
            "--url-env",
            "WALWARDEN_ARTIFACT_URL",
            "--sha256",
            hashlib.sha256(dump.read_bytes()).hexdigest(),
            "--size",
            str(dump.stat().st_size),
            "--database",
            target,
            "--go-url-env",
            "WALWARDEN_GO_URL",
            "--go-sha256",
            hashlib.sha256(GO_CONTENT.encode()).hexdigest(),
            "--go-timeout",
            str(go_timeout),
        ]
        process = subprocess.Popen(args, env=env, stdout=output.open("w"), stderr=subprocess.STDOUT)
        return StagedRestore(
            process,
            output,
            target,
            lambda content: client.put_object(Bucket=s3_bucket, Key=go_key, Body=content.encode()),
        )

    yield start
    if database_exists(postgres_server, target):
        postgres_server.drop_database(target)


def last_error(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_pg_restore_waits_for_the_operators_go_then_restores_every_row(staged, postgres_server, vault_db):
    run = staged()
    run.wait_until_waiting_for_go()
    time.sleep(1.5)  # waiting, it polls the go URL: nothing may happen to the database meanwhile
    assert run.process.poll() is None
    assert not database_exists(postgres_server, run.database)
    run.put_go(GO_CONTENT)
    code, output = run.finish()
    assert code == 0, output
    assert "go: the services are stopped" in output and "pg_restore finished" in output
    assert vaultdb.row_counts(postgres_server.dsn(run.database)) == vault_db.row_counts


@pytest.mark.parametrize("content, reason", [("someone else's go", "GoSignalInvalid"), ("abort", "RestoreCalledOff")])
def test_a_go_object_the_operator_did_not_write_or_an_abort_ends_it_untouched(staged, postgres_server, content, reason):
    run = staged()
    run.wait_until_waiting_for_go()
    run.put_go(content)
    code, output = run.finish()
    assert code != 0 and last_error(output).startswith(f"walwarden-error: {reason}: "), output
    assert "the database was not touched" in last_error(output)
    assert not database_exists(postgres_server, run.database)


def test_no_go_within_the_timeout_ends_it_untouched(staged, postgres_server):
    run = staged(go_timeout=2)
    code, output = run.finish()
    assert code != 0 and last_error(output).startswith("walwarden-error: NoGoSignal: "), output
    assert not database_exists(postgres_server, run.database)


def test_without_staging_room_it_verifies_first_then_streams_into_pg_restore(staged, postgres_server, vault_db):
    run = staged(staging_room="64k")  # far smaller than the dump
    run.wait_until_waiting_for_go()
    assert "not enough staging space: verifying first" in run.text()
    assert not database_exists(postgres_server, run.database)
    run.put_go(GO_CONTENT)
    code, output = run.finish()
    assert code == 0, output
    assert "pg_restore finished" not in output  # the staged path's line: this one streamed
    assert vaultdb.row_counts(postgres_server.dsn(run.database)) == vault_db.row_counts
