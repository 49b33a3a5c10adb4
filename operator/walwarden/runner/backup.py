"""`walwarden runner backup`: pg_dump streamed into S3, checksummed on the way, with a manifest.

    1. Check everything before writing anything: the EMP values, pg_dump's version against the
       server's, a login to every database, the bucket, and that the prefix holds no finished
       backup already.
    2. Per database: open a REPEATABLE READ READ ONLY transaction and export its snapshot; run
       `pg_dump --format=custom --snapshot=<it>` and stream its output into a multipart upload,
       hashing and counting the same bytes; count every table's rows in that same snapshot
       meanwhile. A failure anywhere aborts the upload.
    3. Write <prefix>/manifest.json last, signed when WALWARDEN_RESULT_KEY is set: until then the
       prefix holds no finished backup, and a failed run deletes the dumps it had completed.

Credentials come only from the environment (libpq's PG* variables, boto3's AWS_* or the ambient
identity), never from arguments, and no message carries them.
"""

from __future__ import annotations

import collections
import fcntl
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Self

import psycopg
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError
from psycopg import IsolationLevel, sql

from walwarden.api.common import format_timestamp, utcnow
from walwarden.api.roles import DatabaseRole
from walwarden.postgres import ConnectionFailure, classify_connection_error, major_version, scalar
from walwarden.postgres import roles as postgres_roles
from walwarden.runner.contract import RUNNER_APPLICATION_NAME, Env
from walwarden.runner.errors import (
    AuthenticationFailed,
    BucketNotFound,
    DatabaseNotFound,
    DatabaseUnreachable,
    DumpFailed,
    InvalidArguments,
    PgDumpTooOld,
    RunnerError,
    StorageAccessDenied,
    UploadFailed,
)
from walwarden.runner.streams import ChecksumReader, FullReader, MiB, Progress
from walwarden.security.fingerprints import fingerprint
from walwarden.storage import manifest as manifests
from walwarden.storage import s3 as storage

CONNECT_TIMEOUT_SECONDS = 15  # libpq waits forever by default; PGCONNECT_TIMEOUT overrides this
PIPE_SIZE = MiB  # Linux's default 64 KiB pipe makes pg_dump wait on every small hiccup of ours
STDERR_TAIL_LINES = 20

Say = Callable[[str], None]


@dataclass(frozen=True)
class BackupOptions:
    databases: list[str]
    bucket: str
    prefix: str
    region: str = "us-east-1"
    endpoint: str | None = None
    force_path_style: bool = False
    emp: list[tuple[str, str]] = field(default_factory=list)  # (secret name, environment variable)
    backup: manifests.BackupIdentity = field(default_factory=manifests.BackupIdentity)
    expected_bytes: int | None = None  # per dump; None: pg_database_size
    lock: storage.Lock | None = None  # S3 Object Lock of the dumps and the manifest

    def dump_key(self, database: str) -> str:
        return f"{self.prefix.strip('/')}/{database}.dump"

    @property
    def manifest_key(self) -> str:
        return manifests.manifest_key(self.prefix)


def _say(line: str) -> None:
    print(line, flush=True)


def run_backup(options: BackupOptions, say: Say = _say) -> manifests.Manifest:
    """Back up every database of `options` and write the manifest; returns the manifest written."""
    _check_arguments(options)
    fingerprints = [
        manifests.EncryptorEntry(secret=name, **fingerprint(_emp_value(name, variable)).model_dump())
        for name, variable in options.emp
    ]
    pg_dump = _find_pg_dump()
    dump_version = _pg_dump_version(pg_dump)
    server_version, sizes = _check_databases(options.databases)
    _check_pg_dump_version(dump_version, server_version)
    client = storage.make_client(
        region=options.region, endpoint=options.endpoint, force_path_style=options.force_path_style
    )
    _check_bucket(client, options)
    say(
        f"checked: {len(options.databases)} database(s) on PostgreSQL {server_version}, pg_dump {dump_version}, "
        f"bucket {options.bucket}"
    )

    created_at = format_timestamp(utcnow())
    dumps: list[manifests.DatabaseDump] = []
    role_names: set[str] = set()
    try:
        for database in options.databases:
            dump, needed = _dump_database(
                client, options, database, pg_dump, options.expected_bytes or sizes[database], say
            )
            dumps.append(dump)
            role_names.update(needed)
        roles = _describe_roles(options.databases[0], sorted(role_names))
        say(f"roles the databases need: {', '.join(role.name for role in roles) or 'none'}")
        manifest = manifests.Manifest(
            created_at=created_at,
            completed_at=format_timestamp(utcnow()),
            backup=options.backup,
            pg_dump_version=dump_version,
            pg_server_version=server_version,
            databases=dumps,
            encryptor_fingerprints=fingerprints,
            roles=roles,
        )
        if result_key := os.environ.get(Env.RESULT_KEY):
            manifest = manifests.sign_manifest(manifest, result_key.encode())
        with _storage_errors(f"writing {storage.s3_uri(options.bucket, options.manifest_key)}", options.bucket):
            manifests.write_manifest(client, options.bucket, options.manifest_key, manifest, options.lock)
    except BaseException:
        _delete_quietly(client, options.bucket, [dump.key for dump in dumps])
        raise
    say(
        f"manifest written: {storage.s3_uri(options.bucket, options.manifest_key)}"
        + (" (signed)" if manifest.signature else "")
    )
    return manifest


# --- checks before anything is written --------------------------------------------------------


def _check_arguments(options: BackupOptions) -> None:
    if not options.databases:
        raise InvalidArguments("give at least one --database")
    if len(set(options.databases)) != len(options.databases):
        raise InvalidArguments(f"a database is listed twice: {options.databases}")
    if not options.bucket or not options.prefix.strip("/"):
        raise InvalidArguments("--bucket and a non-empty --prefix are required")


def _emp_value(name: str, variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise InvalidArguments(
            f"the Encryptor Master Password {name} should be in the environment variable "
            f"{variable}, which is not set or empty"
        )
    return value


def _find_pg_dump() -> str:
    path = shutil.which("pg_dump")
    if path is None:
        raise DumpFailed("pg_dump is not on PATH: install PostgreSQL's client programs (the runner image has them)")
    return path


def _pg_dump_version(pg_dump: str) -> str:
    """'15.18' from 'pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)'."""
    result = subprocess.run(
        [pg_dump, "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    match = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)", result.stdout)
    if result.returncode != 0 or not match:
        raise DumpFailed(f"cannot tell pg_dump's version ({pg_dump} --version: {result.stdout or result.stderr!r})")
    return match[1]


def _check_pg_dump_version(dump_version: str, server_version: str) -> None:
    """pg_dump refuses a server of a newer major version than its own: say so before anything starts.
    An unreadable version (()) refuses nothing: pg_dump itself then has the last word."""
    dump_major, server_major = major_version(dump_version), major_version(server_version)
    if dump_major and server_major and dump_major < server_major:
        raise PgDumpTooOld(
            f"pg_dump {dump_version} cannot dump a PostgreSQL {server_version} server: use a pg_dump "
            f"(a runner image) of major version {'.'.join(map(str, server_major))} or newer"
        )


def connect(database: str, **kwargs: Any) -> psycopg.Connection:
    """A connection to `database` with the environment's PG* settings, its failure told precisely."""
    timeout = os.environ.get(Env.PG_CONNECT_TIMEOUT) or CONNECT_TIMEOUT_SECONDS
    try:
        return psycopg.connect(
            dbname=database, connect_timeout=int(timeout), application_name=RUNNER_APPLICATION_NAME, **kwargs
        )
    except psycopg.OperationalError as error:
        raise connection_error(database, error) from None


def connection_error(database: str, error: psycopg.OperationalError) -> RunnerError:
    """Our reason for a failed connection (postgres.classify_connection_error, which the operator
    uses too), with libpq's own words: they name the host and user, never the password."""
    detail = " ".join(str(error).split())
    where = f"{os.environ.get(Env.PG_HOST, 'localhost')}:{os.environ.get(Env.PG_PORT, '5432')}"
    failure = classify_connection_error(error)
    if failure is ConnectionFailure.DATABASE_NOT_FOUND:
        return DatabaseNotFound(
            f"database {database!r} does not exist on {where}: check the database names of the request ({detail})"
        )
    if failure is ConnectionFailure.AUTHENTICATION_FAILED:
        return AuthenticationFailed(
            f"cannot log in to database {database!r} on {where}: check the user and "
            f"password of the admin connection Secret ({detail})"
        )
    return DatabaseUnreachable(
        f"cannot reach PostgreSQL at {where} (database {database!r}): check the host and "
        f"port of the admin connection Secret and the network path from the Job ({detail})"
    )


def _check_databases(databases: list[str]) -> tuple[str, dict[str, int]]:
    """Log in to every database; returns the server's version and each database's size."""
    versions, sizes = set(), {}
    for database in databases:
        with connect(database, autocommit=True) as conn:
            versions.add((conn.info.parameter_status("server_version") or "").split()[0])
            sizes[database] = int(scalar(conn, "SELECT pg_database_size(current_database())"))
    if len(versions) != 1:  # one PGHOST: a change means a failover between two logins
        raise DatabaseUnreachable(f"the server's version changed between logins ({sorted(versions)}); try again")
    return versions.pop(), sizes


def storage_error(error: BaseException, what: str, bucket: str) -> RunnerError:
    """Which of our reasons a failed object-store request is."""
    if isinstance(error, NoCredentialsError):
        return StorageAccessDenied(
            f"{what}: no object-store credentials: set the request's credentials Secret or "
            "give the Job an identity (e.g. IRSA)"
        )
    if isinstance(error, EndpointConnectionError):
        return UploadFailed(f"{what}: cannot reach the object store ({error})")
    if isinstance(error, ClientError):
        code = storage.error_code(error)
        # The backup reads no key but its manifest's (_check_bucket, which tells a 404 apart
        # itself): what is not found by any other of its requests is the bucket.
        if storage.is_not_found(error):
            return BucketNotFound(f"bucket {bucket!r} does not exist: create it or fix spec.storage.s3.bucket")
        if storage.is_access_denied(error):
            return StorageAccessDenied(
                f"{what}: access denied ({code}): check the object-store credentials and "
                f"that they may read and write bucket {bucket!r}"
            )
        return UploadFailed(f"{what}: the object store answered {code}: {error}")
    return UploadFailed(f"{what}: {type(error).__name__}: {error}")


@contextmanager
def _storage_errors(what: str, bucket: str) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        failure = storage_error(error, what, bucket)
        for note in getattr(error, "__notes__", []):  # e.g. that aborting the upload failed too
            failure.add_note(note)
        raise failure from error


def _check_bucket(client: BaseClient, options: BackupOptions) -> None:
    with _storage_errors(f"checking bucket {options.bucket!r}", options.bucket):
        client.head_bucket(Bucket=options.bucket)
    uri = storage.s3_uri(options.bucket, options.manifest_key)
    try:
        exists = storage.object_size(client, options.bucket, options.manifest_key) is not None
    except ClientError as error:
        # Without s3:ListBucket, S3 answers 403 for a missing key: we cannot tell, so go on.
        if not storage.is_access_denied(error):
            raise storage_error(error, f"checking {uri}", options.bucket) from error
        exists = False
    if exists:
        raise InvalidArguments(f"{uri} exists: this prefix holds a finished backup already; choose another --prefix")


# --- one database --------------------------------------------------------------------------


def _dump_database(
    client: BaseClient, options: BackupOptions, database: str, pg_dump: str, expected_bytes: int, say: Say
) -> tuple[manifests.DatabaseDump, list[str]]:
    """The dump of `database` and the roles it names (read in the dump's snapshot)."""
    key = options.dump_key(database)
    uri = storage.s3_uri(options.bucket, key)
    base = storage.base_part_size(expected_bytes)
    with connect(database) as conn, _storage_errors(f"uploading {uri}", options.bucket), _database_errors(database):
        snapshot = _export_snapshot(conn)
        needed = postgres_roles.needed_role_names(conn)
        say(f"{database}: snapshot {snapshot}; dumping to {uri} in parts of {base // MiB} MiB")
        with (
            storage.MultipartUpload(client, options.bucket, key, lock=options.lock) as upload,
            _PgDump(pg_dump, database, snapshot) as dump,
            _in_background(row_counts, conn) as counting,
        ):
            reader = ChecksumReader(dump.stdout)  # type: ignore[arg-type]  # a pipe (stdout=PIPE)
            parts = FullReader(reader)
            progress = Progress(database, say=say)
            while (part := parts.read_part(storage.part_size(upload.part_count + 1, base))) is not None:
                upload.add_part(part)
                progress.update(reader.size)
            dump.check_exit()
            if reader.size == 0:
                raise DumpFailed(f"pg_dump of {database!r} wrote nothing")
            counts = counting.result()
            upload.complete()
        progress.done(reader.size)
    say(f"{database}: {reader.size:,} bytes, sha256 {reader.sha256}, {len(counts)} tables counted")
    result = manifests.DatabaseDump(
        name=database, key=key, uri=uri, sha256=reader.sha256, size_bytes=reader.size, row_counts=counts
    )
    return result, needed


def _describe_roles(database: str, names: list[str]) -> list[DatabaseRole]:
    """`names` and the roles they are members of, as the manifest records them (roles are the
    server's: any of the databases answers)."""
    with connect(database, autocommit=True) as conn, _database_errors(database):
        return postgres_roles.describe_roles(conn, names)


@contextmanager
def _database_errors(database: str) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as error:  # the server failed a query of ours: snapshot or row counts
        raise DumpFailed(f"backing up {database!r}: {type(error).__name__}: {error}") from None


def _export_snapshot(conn: psycopg.Connection) -> str:
    """Open the transaction whose snapshot pg_dump imports and the row counts read; it stays open
    until the dump is done, which is what keeps the snapshot importable."""
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    # Idle while pg_dump works: a server-side idle timeout must not end the transaction early.
    # row_security off, as pg_dump does: counts that a policy filtered would not match the dump.
    conn.execute("SET idle_in_transaction_session_timeout = 0; SET statement_timeout = 0; SET row_security = off")
    return str(scalar(conn, "SELECT pg_export_snapshot()"))


def row_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Exact rows of every user table ('schema.table'; partitions rather than their parents; not
    the tables extensions own, whose data pg_dump leaves to the extension)."""
    tables = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' "
        "AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid "
        "AND d.deptype = 'e') ORDER BY 1, 2"
    ).fetchall()
    return {
        f"{schema}.{name}": int(scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))))
        for schema, name in tables
    }


@contextmanager
def _in_background(function: Callable[[psycopg.Connection], dict], conn: psycopg.Connection) -> Iterator[Future]:
    """Run function(conn) in a thread while the dump streams. On the way out (success or not) its
    query is cancelled if still running and the thread joined, so the connection closes idle."""
    with ThreadPoolExecutor(1, thread_name_prefix="row-counts") as pool:
        future = pool.submit(function, conn)
        try:
            yield future
        finally:
            if not future.done():
                # cancel_safe() since psycopg 3.2; cancel() before.
                getattr(conn, "cancel_safe", conn.cancel)()


class _PgDump:
    """pg_dump as a child process: its stdout is the dump, its stderr is echoed and its tail kept
    for the error message. Leaving the block kills it if it still runs (a failed upload, SIGTERM)."""

    def __init__(self, pg_dump: str, database: str, snapshot: str):
        self.database = database
        # The database goes by PGDATABASE, not -d: a name like "a=b" would be read as a conninfo.
        env = {**os.environ, "PGDATABASE": database}
        self.process = subprocess.Popen(
            [pg_dump, "--format=custom", f"--snapshot={snapshot}", "--no-password"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            bufsize=0,
        )
        assert self.process.stdout is not None  # stdout=PIPE
        self.stdout = self.process.stdout
        _widen_pipe(self.stdout)
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._stderr_thread = threading.Thread(target=self._read_stderr, name="pg_dump-stderr", daemon=True)
        self._stderr_thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._stderr_thread.join()
        self.stdout.close()
        if self.process.stderr is not None:
            self.process.stderr.close()

    def check_exit(self) -> None:
        """After the end of its output: pg_dump's exit status, as DumpFailed when not 0."""
        code = self.process.wait()
        self._stderr_thread.join()  # its last words are in the tail before we quote them
        if code != 0:
            how = f"exited with status {code}" if code > 0 else f"was killed by signal {-code}"
            tail = [line for line in self._stderr_tail if line.strip()]
            said = "; ".join(tail[-3:]) or "no message"
            raise DumpFailed(f"pg_dump of {self.database!r} {how}: {said}")

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None  # stderr=PIPE
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self._stderr_tail.append(line)
            print(line, file=sys.stderr, flush=True)


def _widen_pipe(pipe) -> None:
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (AttributeError, OSError):  # not Linux, or above /proc/sys/fs/pipe-max-size: the default works
        pass


def _delete_quietly(client: BaseClient, bucket: str, keys: list[str]) -> None:
    """Remove dumps completed by a run that failed later: without a manifest they are no backup."""
    for key in keys:
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError):
            pass
