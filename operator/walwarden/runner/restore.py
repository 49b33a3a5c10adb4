"""The restore side of the runner: `walwarden runner verify` and `walwarden runner restore`.

Both read the artifact through a presigned GET URL (from an environment variable: the Job holds no
object-store credentials) and check its size and sha256 against the manifest's before anything
else. `restore` touches the database only after that check passed:

- with room on the staging disk, the artifact is downloaded once into a file (hashed on the way)
  and pg_restore runs in parallel (-j) from it;
- without room, a first pass only hashes, and a second pass streams into a single pg_restore
  (hashed again: a changed object fails the restore, never succeeds it).

pg_restore runs with --exit-on-error: any non-zero exit is a failure, never a partial success.
Every failure of `restore` says what it left behind (`TargetState`): until the go was given and
the first write started, the database was not touched; from then on it may be partly restored.

A restore Job of the operator is started while the vault's services are still being stopped, so
that downloading and checking the artifact costs no downtime: it is given a go signal to wait for
(`GoSignal`) between the check and pg_restore.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import psycopg
from psycopg import sql

from walwarden.runner import contract, errors
from walwarden.runner.backup import connect
from walwarden.runner.streams import Progress, ProgressReporter

CHUNK = 1024 * 1024
STAGING_HEADROOM = 1.05  # keep a little room beyond the artifact's size


class DownloadFailed(errors.StorageError):
    reason = "DownloadFailed"


class UrlExpired(errors.StorageError):
    reason = "UrlExpired"


class ChecksumMismatch(errors.RunnerError):
    reason = "ChecksumMismatch"


class SizeMismatch(errors.RunnerError):
    reason = "SizeMismatch"


class ArchiveUnreadable(errors.RunnerError):
    reason = "ArchiveUnreadable"


class RestoreFailed(errors.RunnerError):
    reason = "RestoreFailed"


class NoGoSignal(errors.RunnerError):
    reason = "NoGoSignal"


class GoSignalInvalid(errors.RunnerError):
    reason = "GoSignalInvalid"


class RestoreCalledOff(errors.RunnerError):
    reason = "RestoreCalledOff"


class VerifyInterrupted(errors.RunnerError):
    """The verify Job was stopped (its deadline, its deletion) before it finished."""

    reason = "VerifyInterrupted"


class RestoreInterrupted(errors.RunnerError):
    """The restore was stopped (the Job's deadline, its deletion, Ctrl-C) before it finished;
    its message says whether pg_restore had started (TargetState)."""

    reason = "RestoreInterrupted"


NOT_TOUCHED = "the database was not touched"


@dataclass
class TargetState:
    """How far a restore got, which is what any failure means for the target database.

    Downloading, verifying and waiting for the go touch nothing; Redirected may then create the
    (empty) database; from just before pg_restore starts, the database may be partly restored,
    whatever ends the restore: pg_restore's error, a broken second download, a SIGTERM.
    """

    database: str
    clean: bool  # InPlace: pg_restore --clean over the existing database
    created: bool = False  # CREATE DATABASE ran (Redirected into a missing database)
    restoring: bool = False  # pg_restore was started

    def describe(self) -> str:
        """What the database is left as, and what to do about it."""
        if self.restoring and self.clean:
            return (
                f"the target database {self.database!r} may be partly restored: restore again (InPlace "
                "replaces what is there) or roll back to the safety backup"
            )
        if self.restoring:
            return (
                f"the target database {self.database!r} may be partly restored: drop it and restore again, or "
                "roll back (leave the services on the original database)"
            )
        if self.created:
            return f"the database {self.database!r} was created, empty, and nothing was restored into it"
        return NOT_TOUCHED


@dataclass(frozen=True)
class Artifact:
    # The presigned GET URL; or, where the caller holds the object-store credentials (the local
    # `walwarden restore`), a function signing a fresh one for each download: without staging
    # room the artifact is downloaded twice, and the second may start after a first URL expired.
    url: str | Callable[[], str]
    sha256: str
    size: int

    def download_url(self) -> str:
        return self.url() if callable(self.url) else self.url


@dataclass(frozen=True)
class GoSignal:
    """The operator's permission to touch the database, given once the services are stopped.

    The operator writes a small object, whose content only it knows, after ScaleDown; the Job
    reads it through a presigned GET URL (still no object-store credentials) and compares its
    sha256 with the one it was given. Someone who can write to the bucket but cannot read the
    operator's Secrets cannot start a restore under running services. The content ABORT_CONTENT
    calls the restore off (the request failed before its go): the Job ends at once.
    """

    url: str
    sha256: str
    timeout_seconds: float


# The go comes once the services are gone, usually within seconds, and every fraction of a second
# until it is seen is downtime: look often at first, then rarely (a long ScaleDown costs few GETs).
GO_POLL_SECONDS, GO_POLL_SLOW_SECONDS, GO_POLL_FAST_FOR = 0.1, 1.0, 120
ABORT_CONTENT = contract.GO_ABORT_CONTENT  # kept for restore/staging.py; read contract.GO_ABORT_CONTENT


# Makes the progress reporter of one pass over the artifact, given its label ("download",
# "verify", "restore"): the Jobs print lines to their log; the local CLI draws a bar.
ProgressFactory = Callable[[str], ProgressReporter]


def open_url(url: str) -> BinaryIO:
    """The response to a GET of a presigned URL; its refusal as our reasons (never quoting the
    URL, a bearer credential while it lives)."""
    try:
        return urllib.request.urlopen(url, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 403:
            raise UrlExpired(
                "the object store refused the presigned URL (HTTP 403): it expired or its signature "
                "is wrong; run the request again to get a fresh one"
            ) from None
        if error.code == 404:
            raise DownloadFailed("the artifact does not exist in the object store (HTTP 404)") from None
        raise DownloadFailed(f"downloading the artifact failed: HTTP {error.code}") from None
    except OSError as error:
        raise DownloadFailed(f"cannot reach the object store: {type(error).__name__}") from None


def copy_verified(
    artifact: Artifact, sink: Callable[[bytes], None], label: str, progress: ProgressFactory = Progress
) -> None:
    """Stream the artifact into `sink`, then fail unless its size and sha256 are the manifest's.
    The messages do not say whether anything was restored: when `sink` is pg_restore, it was."""
    digest, size = hashlib.sha256(), 0
    reporter = progress(label)
    with open_url(artifact.download_url()) as response:
        while True:
            try:
                chunk = response.read(CHUNK)
            except OSError as error:
                raise DownloadFailed(f"the download broke off after {size} bytes: {type(error).__name__}") from None
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            sink(chunk)
            reporter.update(size)
    reporter.done(size)
    if size != artifact.size:
        raise SizeMismatch(
            f"the artifact is {size} bytes, the manifest says {artifact.size}: it is truncated or was replaced"
        )
    if digest.hexdigest() != artifact.sha256:
        raise ChecksumMismatch(
            f"the artifact's sha256 is {digest.hexdigest()}, the manifest says {artifact.sha256}: "
            "it is corrupt or was replaced"
        )


def staging_dir() -> Path:
    return Path(os.environ.get(contract.Env.STAGING_DIR) or tempfile.gettempdir())


def has_room(artifact: Artifact, directory: Path) -> bool:
    return shutil.disk_usage(directory).free > artifact.size * STAGING_HEADROOM


def stage(artifact: Artifact, directory: Path, progress: ProgressFactory = Progress) -> Path:
    """Download into a file in `directory`, verified; the caller removes it."""
    handle, name = tempfile.mkstemp(prefix="artifact-", suffix=".dump", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            copy_verified(artifact, file.write, "download", progress)  # type: ignore[arg-type]
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def list_archive(path: Path) -> str:
    """pg_restore --list: proves our pg_restore can read the archive's version and table of contents."""
    result = subprocess.run(["pg_restore", "--list", str(path)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ArchiveUnreadable(
            f"pg_restore --list cannot read the archive: {_last_lines(result.stderr)}; if it "
            "names an unsupported version, use a runner image with newer PostgreSQL tools"
        )
    header = [line[2:] for line in result.stdout.splitlines() if line.startswith(("; Dump", "; Format"))]
    return "; ".join(header)


def _last_lines(text: str, count: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-count:])


# pg_restore's own account of a failure ("pg_restore: error: could not execute query: ERROR: ...",
# then DETAIL/HINT lines), before it prints the failing statement ("Command was: CREATE TABLE ...").
_ERROR_LINE = re.compile(r"^(pg_restore: (error|warning|detail|hint): |(ERROR|FATAL|DETAIL|HINT):)", re.IGNORECASE)


def _pg_error(text: str, count: int = 3) -> str:
    """What pg_restore said went wrong (its error lines, the last `count`), not the tail of the
    statement it printed after them; the last lines when it said nothing of the kind."""
    said = [line.strip() for line in text.splitlines() if _ERROR_LINE.match(line.strip())]
    return " | ".join(said[-count:]) if said else _last_lines(text, count)


def run_verify(artifact: Artifact) -> None:
    """Download, check size and sha256, and check pg_restore can read it; no database is touched."""
    directory = staging_dir()
    if not has_room(artifact, directory):
        copy_verified(artifact, lambda chunk: None, "verify")
        print("not enough staging space for pg_restore --list; the checksum was verified", flush=True)
        return
    path = stage(artifact, directory)
    try:
        print(f"archive readable: {list_archive(path)}", flush=True)
    finally:
        path.unlink(missing_ok=True)


def _admin_connection(dbname: str) -> psycopg.Connection:
    return connect(dbname, autocommit=True)


def ensure_database(database: str) -> bool:
    """Redirected restores may target a fresh instance: create the database when missing.
    Returns whether it was created."""
    with _admin_connection("postgres") as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is not None:
            return False
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    print(f"created database {database}", flush=True)
    return True


def dbname_conninfo(database: str) -> str:
    """`dbname='<database>'`, quoted as libpq's conninfo syntax wants (backslash and quote escaped)."""
    return "dbname='" + database.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pg_restore_command(database: str, clean: bool, jobs: int | None, path: Path | None) -> list[str]:
    """pg_restore into `database`, from `path` (else its stdin)."""
    # -d as a quoted conninfo: libpq reads a -d holding `=` as a whole connection string, so a
    # bare name could carry a host of its own; quoted, it can only ever be a database name.
    command = ["pg_restore", "--exit-on-error", "--no-password", "-d", dbname_conninfo(database)]
    if clean:
        command += ["--clean", "--if-exists"]
    if jobs and jobs > 1 and path is not None:
        command += ["--jobs", str(jobs)]  # parallel restore needs a seekable file
    if path is not None:
        command.append(str(path))
    return command


def _read_go(url: str) -> bytes | None:
    """The go object's content, or None while it does not exist (or the store is briefly away).
    An expired URL (UrlExpired) ends the wait."""
    try:
        with open_url(url) as response:
            return response.read(4096)
    except DownloadFailed:
        return None


def wait_for_go(
    go: GoSignal, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Return once the go object holds what the operator wrote; raise when it calls the restore
    off, holds anything else, or never comes. (run_restore adds that the database was not touched.)"""
    print("artifact staged and verified; waiting for the operator's go (the services are being stopped)", flush=True)
    started = clock()
    while (content := _read_go(go.url)) is None:
        waited = clock() - started
        if waited >= go.timeout_seconds:
            raise NoGoSignal(f"no go signal from the operator within {go.timeout_seconds:g}s")
        sleep(GO_POLL_SECONDS if waited < GO_POLL_FAST_FOR else GO_POLL_SLOW_SECONDS)
    if content.strip() == contract.GO_ABORT_CONTENT.encode():
        raise RestoreCalledOff(
            "the operator called the restore off before its go (the request failed while the services were stopping)"
        )
    if hashlib.sha256(content).hexdigest() != go.sha256:
        raise GoSignalInvalid("the go object does not hold what the operator wrote: someone else wrote it")
    print("go: the services are stopped", flush=True)


def check_reachable(database: str, clean: bool) -> None:
    """Reachability and credentials, first: a wrong password must not cost a download."""
    _admin_connection(database if clean else "postgres").close()


def run_restore(
    artifact: Artifact,
    database: str,
    clean: bool,
    jobs: int,
    progress: ProgressFactory = Progress,
    go: GoSignal | None = None,
    state: TargetState | None = None,
) -> None:
    """Verify the artifact, wait for `go` when given, then restore. Nothing touches the database
    (not even creating it) before both. `state` (of the same database and clean) follows how far
    it got, for a caller that explains interruptions; every RunnerError raised says what it left."""
    state = state or TargetState(database, clean)
    with _saying_what_is_left(state):
        _restore(artifact, state, jobs, progress, go)


@contextmanager
def _saying_what_is_left(state: TargetState) -> Iterator[None]:
    """Add to a failure what it left of the target, as of the moment it came (the failures
    themselves, a download or pg_restore's exit, do not know whether the database was touched)."""
    try:
        yield
    except errors.RunnerError as error:
        error.add_consequence(state.describe())
        raise


def _restore(artifact: Artifact, state: TargetState, jobs: int, progress: ProgressFactory, go: GoSignal | None) -> None:
    def verified_and_allowed() -> None:
        if go:
            wait_for_go(go)
        if not state.clean:
            state.created = ensure_database(state.database)

    check_reachable(state.database, state.clean)
    directory = staging_dir()
    if has_room(artifact, directory):
        path = stage(artifact, directory, progress)  # verified before the database is touched
        try:
            verified_and_allowed()
            _pg_restore(pg_restore_command(state.database, state.clean, jobs, path), state)
        finally:
            path.unlink(missing_ok=True)
        return
    print("not enough staging space: verifying first, then streaming into pg_restore", flush=True)
    copy_verified(artifact, lambda chunk: None, "verify", progress)
    verified_and_allowed()
    state.restoring = True  # from here a failure, even of the download, leaves a partly restored database
    process = subprocess.Popen(
        pg_restore_command(state.database, state.clean, None, None), stdin=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdin is not None and process.stderr is not None  # both PIPE
    try:
        copy_verified(artifact, process.stdin.write, "restore", progress)  # type: ignore[arg-type]
        process.stdin.close()
    except BrokenPipeError:
        pass  # pg_restore stopped early: its exit status says why
    except BaseException:
        process.kill()
        process.stdin.close()  # nothing may keep pg_restore's end of the pipe waiting for more
        raise
    finally:
        stderr = process.stderr.read().decode(errors="replace")
        code = process.wait()
    if code != 0:
        raise RestoreFailed(f"pg_restore exited {code}: {_pg_error(stderr)}")


def _pg_restore(command: list[str], state: TargetState) -> None:
    print("running " + " ".join(command[:-1] + ["<staged artifact>"]), flush=True)
    state.restoring = True
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RestoreFailed(f"pg_restore exited {result.returncode}: {_pg_error(result.stderr)}")
    print("pg_restore finished", flush=True)
