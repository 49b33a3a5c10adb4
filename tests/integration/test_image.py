"""The container image, built from the Dockerfile and run on this machine: nothing is mocked.

A session fixture starts Debian's Docker engine (docker/start-engine.sh: `dockerd --bridge=none
--iptables=false`), makes the base image from Debian's packages (docker/make-base-image.sh: no
container registry is reachable here, so the official python base cannot be pulled) and builds the
Dockerfile on it (docker/build-image.sh), as walwarden:<package version>, the name the chart and
the demo use. The containers run with `--network host`, so the runner inside reaches the session's
PostgreSQL and MinIO on loopback.

If the engine cannot start, or the base image or the build fails, the fixture fails with the step
that failed and the end of its output: it never skips. The first run takes a few minutes (the
base image, apt and pip in the build); later runs reuse the base image and docker's build cache,
kept in the engine's data root under $WALWARDEN_CACHE (default ~/.cache/walwarden/docker).
An engine the fixture started is stopped at the end of the session (WALWARDEN_KEEP_ENGINE=1
leaves it running); an engine that was already running is left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from devstack import vaultdb
from walwarden import __version__
from walwarden.storage.manifest import manifest_key, read_manifest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "docker"
IMAGE = f"walwarden:{__version__}"
PG_MAJOR = os.environ.get("PG_MAJOR", "15")  # what docker/build-image.sh builds with
UID = "10001"
URL_ENV = "WALWARDEN_ARTIFACT_URL"

# Each step's limit; a cold first run needs about 1 min for the base image and 4 for the build.
STEP_TIMEOUTS = {"engine": 180, "base": 420, "build": 600}


def docker_client() -> str:
    # Debian's client, installed with the engine, has BuildKit built in; see docker/common.sh.
    return os.environ.get("DOCKER") or ("/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else "docker")


def _step(what: str, argv: list[str], log: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run one preparation step; on failure, fail the test naming the step, with its output's end."""
    started = time.monotonic()
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)
    except subprocess.TimeoutExpired as error:
        output = _text(error.stdout) + _text(error.stderr)
        log.write_text(output)
        pytest.fail(
            f"{what}: no result after {timeout:.0f}s; the end of its output ({log}):\n{_tail(output)}", pytrace=False
        )
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {result.returncode}); the end of its output ({log}):\n"
            f"{_tail(result.stderr or result.stdout)}",
            pytrace=False,
        )
    print(f"{what}: {time.monotonic() - started:.1f}s")
    return result


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class Image:
    ref: str
    docker: str

    def run(
        self, *args: str, env: dict[str, str] | None = None, entrypoint: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        """`docker run --rm --network host` of the image. The variables in env reach the container
        by name only (`-e NAME`): their values, passwords and presigned URLs, stay off command lines."""
        env = env or {}
        argv = [self.docker, "run", "--rm", "--network", "host"]
        for name in env:
            argv += ["-e", name]
        if entrypoint:
            argv += ["--entrypoint", entrypoint]
        return subprocess.run(
            [*argv, self.ref, *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def inspect(self) -> dict:
        result = subprocess.run([self.docker, "image", "inspect", self.ref], capture_output=True, text=True, check=True)
        return json.loads(result.stdout)[0]


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    logs = tmp_path_factory.mktemp("image")
    engine = _step(
        "starting the Docker engine (docker/start-engine.sh)",
        ["bash", str(SCRIPTS / "start-engine.sh")],
        logs / "engine.log",
        STEP_TIMEOUTS["engine"],
    )
    started_here = engine.stdout.strip().startswith("started")
    try:
        _step(
            "making the Debian base image (docker/make-base-image.sh)",
            ["bash", str(SCRIPTS / "make-base-image.sh")],
            logs / "base.log",
            STEP_TIMEOUTS["base"],
        )
        build = _step(
            f"building {IMAGE} (docker/build-image.sh)",
            ["bash", str(SCRIPTS / "build-image.sh")],
            logs / "build.log",
            STEP_TIMEOUTS["build"],
        )
        assert build.stdout.strip() == IMAGE, build.stdout
        yield Image(IMAGE, docker_client())
    finally:
        if started_here and not os.environ.get("WALWARDEN_KEEP_ENGINE"):
            subprocess.run(
                ["bash", str(SCRIPTS / "start-engine.sh"), "--stop"], capture_output=True, timeout=60, check=False
            )


def runner_env(postgres_server, **extra: str) -> dict[str, str]:
    """The admin connection as the runner Jobs get it: libpq's PG* variables."""
    return {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres_server.port),
        "PGUSER": postgres_server.superuser,
        "PGPASSWORD": postgres_server.password,
        **extra,
    }


def error_reason(result: subprocess.CompletedProcess) -> str:
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("walwarden-error: "), f"last stderr line: {last!r}\n{result.stderr}"
    return last.removeprefix("walwarden-error: ").partition(": ")[0]


def table_count(dsn: str) -> int:
    with psycopg.connect(dsn) as connection:
        return connection.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()[0]


def test_walwarden_version_is_the_package_version(image):
    result = image.run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"walwarden {__version__}"


def test_the_image_runs_as_uid_10001_by_default(image):
    result = image.run("-u", entrypoint="id")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == UID
    config = image.inspect()["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["walwarden"] and config["Cmd"] == ["run"]


def test_the_postgresql_client_tools_are_of_pg_major(image):
    assert image.inspect()["Config"]["Labels"]["io.walwarden.pg-major"] == PG_MAJOR
    for tool in ("pg_restore", "pg_dump"):
        result = image.run("--version", entrypoint=tool)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{tool} (PostgreSQL) {PG_MAJOR}."), result.stdout


def test_the_restore_runner_in_the_image_restores_a_dump_into_postgres(
    image, postgres_server, vault_db, empty_db, s3_server, s3_bucket, tmp_path
):
    dump = tmp_path / "vault.dump"
    subprocess.run(
        [str(postgres_server.bindir / "pg_dump"), "-Fc", "-f", str(dump), "-d", vault_db.name],
        env=postgres_server.client_env(vault_db.name),
        check=True,
        capture_output=True,
    )
    s3 = s3_server.client()
    s3.upload_file(str(dump), s3_bucket, "backups/vault.dump")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": "backups/vault.dump"}, ExpiresIn=900
    )
    sha256 = hashlib.sha256(dump.read_bytes()).hexdigest()
    size = str(dump.stat().st_size)
    env = runner_env(postgres_server, **{URL_ENV: url})

    # A checksum that is not the artifact's: refused before the database is touched.
    refused = image.run(
        "runner", "restore", "--url-env", URL_ENV, "--sha256", "0" * 64, "--size", size, "--database", empty_db, env=env
    )
    assert refused.returncode == 1, refused.stderr
    assert error_reason(refused) == "ChecksumMismatch"
    assert table_count(postgres_server.dsn(empty_db)) == 0

    result = image.run(
        "runner", "restore", "--url-env", URL_ENV, "--sha256", sha256, "--size", size, "--database", empty_db, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pg_restore finished" in result.stdout
    assert vaultdb.row_counts(postgres_server.dsn(empty_db)) == vault_db.row_counts
    for secret in (postgres_server.password, url):
        assert secret not in result.stdout + result.stderr


def test_a_backup_by_the_image_restores_with_the_image(
    image, postgres_server, vault_db, empty_db, s3_server, s3_bucket
):
    """The image's pg_dump against the test server, then its pg_restore: both ends of the runner."""
    env = runner_env(
        postgres_server, AWS_ACCESS_KEY_ID=s3_server.access_key, AWS_SECRET_ACCESS_KEY=s3_server.secret_key
    )
    backup = image.run(
        "runner",
        "backup",
        "--database",
        vault_db.name,
        "--bucket",
        s3_bucket,
        "--prefix",
        "backups/image",
        "--endpoint",
        s3_server.endpoint,
        "--force-path-style",
        env=env,
    )
    assert backup.returncode == 0, backup.stdout + backup.stderr

    s3 = s3_server.client()
    manifest = read_manifest(s3, s3_bucket, manifest_key("backups/image"))
    assert manifest.pg_dump_version.startswith(f"{PG_MAJOR}."), manifest.pg_dump_version
    [dump] = manifest.databases
    url = s3.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": dump.key}, ExpiresIn=900)
    restore = image.run(
        "runner",
        "restore",
        "--url-env",
        URL_ENV,
        "--sha256",
        dump.sha256,
        "--size",
        str(dump.size_bytes),
        "--database",
        empty_db,
        env=runner_env(postgres_server, **{URL_ENV: url}),
    )
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert vaultdb.row_counts(postgres_server.dsn(empty_db)) == vault_db.row_counts
