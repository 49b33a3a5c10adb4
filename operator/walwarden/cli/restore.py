"""`walwarden restore`: restore a backup into a database from the user's own machine.

    walwarden restore --artifact s3://bucket/backups/vault/nightly/vault.dump \\
        --target-dsn 'postgresql://admin@db.internal:5432/vault' --mode InPlace

The same pipeline as the operator's restore Job (walwarden.runner.restore), run locally:

1. read <folder>/manifest.json beside the artifact with the user's own AWS credentials (boto3's
   default chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, SSO, an instance role);
2. InPlace: ask for confirmation (or --yes), since pg_restore --clean replaces the target's data;
3. download through a short-lived presigned GET URL with a progress bar on stderr (a line every
   few seconds when stderr is not a terminal), checking the size and sha256 against the manifest
   before the database is touched;
4. pg_restore --exit-on-error (InPlace: --clean --if-exists; Redirected: the database is created
   when missing), in parallel from the staged file.

The DSN never leaves the machine and is never printed nor put in a command line: it is split into
libpq's PG* variables, which the database connections and pg_restore read from the environment.
Exit status 0 on success; otherwise the last line on stderr is `walwarden-error: <Reason>: <message>`
with the runner's reasons (ChecksumMismatch, SizeMismatch, AuthenticationFailed, ...).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import boto3
import psycopg
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from psycopg.conninfo import conninfo_to_dict
from pydantic import ValidationError

from walwarden.cli.arguments import positive_int
from walwarden.runner import errors
from walwarden.runner.restore import Artifact, DownloadFailed, run_restore
from walwarden.runner.streams import MiB, Progress, ProgressReporter
from walwarden.storage import manifest as manifests
from walwarden.storage import s3 as storage

EXIT_FAILED = 1
EXIT_INVALID_ARGUMENTS = 2  # argparse's own convention
# Only needs to outlive the start of each GET: a fresh URL is signed for every download.
PRESIGNED_URL_SECONDS = 5 * 60
DEFAULT_REGION = "us-east-1"

# libpq connection parameters and the environment variables libpq reads them from
# (https://www.postgresql.org/docs/current/libpq-envars.html).
LIBPQ_ENVIRONMENT = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "sslcompression": "PGSSLCOMPRESSION",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "channel_binding": "PGCHANNELBINDING",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "requirepeer": "PGREQUIREPEER",
    "require_auth": "PGREQUIREAUTH",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}


class ManifestMissing(errors.StorageError):
    reason = "ManifestMissing"


class ManifestInvalid(errors.RunnerError):
    reason = "ManifestInvalid"


class ArtifactNotInManifest(errors.RunnerError):
    reason = "ArtifactNotInManifest"


class ConfirmationRequired(errors.InvalidArguments):
    reason = "ConfirmationRequired"


class Cancelled(errors.RunnerError):
    reason = "Cancelled"


class Interrupted(errors.RunnerError):
    reason = "Interrupted"


class UnexpectedError(errors.RunnerError):
    reason = "UnexpectedError"


# --- the command line ------------------------------------------------------------------------


def register(subparsers) -> None:
    """Add `restore` to the `walwarden` command's subparsers."""
    parser = subparsers.add_parser(
        "restore",
        help="restore a backup from S3 into a database, from this machine",
        description="Download a backup artifact through a short-lived presigned URL (signed with your own AWS "
        "credentials), check its size and sha256 against the manifest beside it, then pg_restore it "
        "into the target database. The DSN stays on this machine: it is handed to pg_restore through "
        "libpq's PG* environment variables, never printed nor put on a command line. Tip: leave the "
        "password out of --target-dsn and set PGPASSWORD or use ~/.pgpass, since other users of "
        "this machine can read a process's command line.",
    )
    parser.add_argument(
        "--artifact",
        required=True,
        metavar="s3://BUCKET/KEY",
        help="the dump to restore; its manifest.json sits in the same folder",
    )
    parser.add_argument(
        "--target-dsn",
        required=True,
        metavar="DSN",
        help="libpq connection string or postgresql:// URI of the database to restore into (it must name the database)",
    )
    parser.add_argument(
        "--mode",
        choices=("InPlace", "Redirected"),
        default="InPlace",
        help="InPlace: replace the existing objects (pg_restore --clean --if-exists); Redirected: "
        "restore into another database, created when missing (default: InPlace)",
    )
    parser.add_argument("--jobs", type=positive_int, default=2, help="parallel pg_restore jobs (default: 2)")
    parser.add_argument("--endpoint", help="URL of an S3-compatible server")
    parser.add_argument(
        "--region",
        help="the bucket's region, which presigned URLs are signed for (default: the bucket's own, as S3 reports it)",
    )
    parser.add_argument("--force-path-style", action="store_true", help="path-style bucket addressing")
    parser.add_argument("--yes", action="store_true", help="do not ask before an InPlace restore")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `walwarden restore`; returns the process's exit status."""
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        restore(args)
        return 0
    except errors.RunnerError as error:
        failure = error
    except KeyboardInterrupt:
        failure = Interrupted(
            "interrupted before the restore finished; if pg_restore had started, the target "
            "database is partly restored: run the restore again"
        )
    except Exception as error:  # a bug, or a failure nobody named yet: the traceback, then the line
        traceback.print_exc()
        failure = UnexpectedError(f"{type(error).__name__}: {error} (see the traceback above)")
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.stdout.flush()  # what was printed before it, so the error stays the last line
    print(failure.error_line(), file=sys.stderr, flush=True)
    return EXIT_INVALID_ARGUMENTS if isinstance(failure, errors.InvalidArguments) else EXIT_FAILED


def _terminated(signum, frame):
    raise KeyboardInterrupt  # unwinds like Ctrl-C: pg_restore is killed, the staged file removed


# --- the restore ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the restore goes: the database name, and the libpq environment that reaches it."""

    database: str
    environment: dict[str, str]

    def describe(self) -> str:
        """For the confirmation prompt: where, never the password."""

        def setting(variable: str, default: str = "") -> str:  # as libpq sees it: the DSN, else the environment
            return self.environment.get(variable) or os.environ.get(variable) or default

        user = setting("PGUSER")
        return f"database {self.database!r} on {setting('PGHOST', 'localhost')}:{setting('PGPORT', '5432')}" + (
            f" as {user}" if user else ""
        )


def restore(args: argparse.Namespace) -> None:
    target = parse_target(args.target_dsn)
    in_place = args.mode == "InPlace"
    if in_place and not args.yes and not sys.stdin.isatty():
        raise ConfirmationRequired(
            "an InPlace restore replaces the target's data and stdin is not a terminal to ask on: pass --yes to confirm"
        )
    bucket, key = _parse_artifact(args.artifact)
    client = _s3_client(args, bucket)
    manifest, dump = read_dump_entry(client, bucket, key)
    print(
        f"artifact {args.artifact}: {dump.size_bytes / MiB:,.1f} MiB, database {dump.name!r}, backup taken "
        f"{manifest.created_at} with pg_dump {manifest.pg_dump_version}",
        flush=True,
    )
    if in_place and not args.yes:
        confirm(target)

    # The DSN's parts reach psycopg and pg_restore only through this process's environment.
    os.environ.update(target.environment)
    artifact = Artifact(
        url=lambda: client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGNED_URL_SECONDS
        ),
        sha256=dump.sha256,
        size=dump.size_bytes,
    )
    started = time.monotonic()
    progress = RestoreProgress(dump.size_bytes)
    try:
        run_restore(artifact, target.database, clean=in_place, jobs=args.jobs, progress=progress)
    finally:
        progress.close()
    print(
        f"restored {args.artifact} into {target.database!r} ({args.mode}) in "
        f"{format_duration(time.monotonic() - started)}",
        flush=True,
    )


def parse_target(dsn: str) -> Target:
    """The DSN as libpq environment variables, and the database it names."""
    try:
        parameters = conninfo_to_dict(dsn)
    except psycopg.Error:
        # libpq's message quotes the text it choked on, which may be the password.
        raise errors.InvalidArguments(
            "--target-dsn is not a valid libpq connection string or postgresql:// URI"
        ) from None
    unsupported = sorted(name for name in parameters if name not in LIBPQ_ENVIRONMENT)
    if unsupported:
        raise errors.InvalidArguments(
            f"--target-dsn: the parameter(s) {', '.join(unsupported)} cannot be passed "
            "to pg_restore through the environment; leave them out"
        )
    environment = {LIBPQ_ENVIRONMENT[name]: str(value) for name, value in parameters.items()}
    database = environment.get("PGDATABASE")
    if not database:
        raise errors.InvalidArguments(
            "--target-dsn must name the database to restore into (postgresql://host/DBNAME or dbname=DBNAME)"
        )
    return Target(database, environment)


def _parse_artifact(uri: str) -> tuple[str, str]:
    try:
        return storage.parse_s3_uri(uri)
    except ValueError as error:
        raise errors.InvalidArguments(f"--artifact: {error}") from None


def _s3_client(args: argparse.Namespace, bucket: str):
    """A client of the user's own identity, in the bucket's region: a presigned URL signed for
    another region is refused by S3."""

    def client(region: str):
        return storage.make_client(region=region, endpoint=args.endpoint, force_path_style=args.force_path_style)

    if args.region:
        return client(args.region)
    configured = client(boto3.session.Session().region_name or DEFAULT_REGION)
    actual = _bucket_region(configured, bucket)
    return client(actual) if actual and actual != configured.meta.region_name else configured


def _bucket_region(client, bucket: str) -> str | None:
    try:
        metadata = client.head_bucket(Bucket=bucket)["ResponseMetadata"]
    except ClientError as error:  # a 403 still tells the region
        metadata = error.response.get("ResponseMetadata", {})
    except BotoCoreError:
        return None  # reading the manifest reports what is wrong
    return metadata.get("HTTPHeaders", {}).get("x-amz-bucket-region")


def read_dump_entry(client: BaseClient, bucket: str, key: str) -> tuple[manifests.Manifest, manifests.DatabaseDump]:
    """The manifest beside the artifact, and its entry for the artifact."""
    folder = key.rpartition("/")[0]
    manifest_key = manifests.manifest_key(folder) if folder else manifests.MANIFEST_NAME
    where = storage.s3_uri(bucket, manifest_key)
    try:
        manifest = manifests.read_manifest(client, bucket, manifest_key)
    except NoCredentialsError:
        raise errors.StorageAccessDenied(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or log in (aws sso login)"
        ) from None
    except ClientError as error:
        code = storage.error_code(error)
        if storage.is_bucket_not_found(error):  # before is_not_found, which counts a missing bucket too
            raise errors.BucketNotFound(f"bucket {bucket!r} does not exist") from None
        if storage.is_not_found(error):
            raise ManifestMissing(
                f"{where} does not exist: without the manifest the artifact cannot be verified, so it is not restored"
            ) from None
        if storage.is_access_denied(error):
            raise errors.StorageAccessDenied(
                f"reading {where}: access denied ({code}): your AWS identity needs "
                f"s3:GetObject on bucket {bucket!r} (or the manifest does not exist)"
            ) from None
        raise DownloadFailed(f"reading {where}: the object store answered {code}") from None
    except BotoCoreError as error:
        raise DownloadFailed(f"reading {where}: {type(error).__name__}: {error}") from None
    except manifests.ManifestTooLarge as error:
        raise ManifestInvalid(f"{error}: not a Walwarden manifest (it was not read further)") from None
    except ValidationError as error:
        raise ManifestInvalid(
            f"{where} is not a Walwarden manifest ({error.error_count()} problem(s), first: {error.errors()[0]['msg']})"
        ) from None
    dump = next((entry for entry in manifest.databases if entry.key == key), None)
    if dump is None:
        listed = ", ".join(storage.s3_uri(bucket, entry.key) for entry in manifest.databases)
        raise ArtifactNotInManifest(f"{storage.s3_uri(bucket, key)} is not listed in {where} (it lists {listed})")
    return manifest, dump


def confirm(target: Target) -> None:
    """An InPlace restore destroys the target's current data: the user types its name to go on."""
    print(
        f"InPlace restore into {target.describe()}: pg_restore --clean drops and re-creates every object of the "
        "backup there; the data written since the backup is lost.",
        file=sys.stderr,
    )
    print(f"Type the database name ({target.database}) to go on: ", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline().strip()
    except KeyboardInterrupt:
        answer = None
    if answer != target.database:
        raise Cancelled("not confirmed: nothing was changed")


# --- progress ----------------------------------------------------------------------------------

# How often a pass over the artifact says how far it is when stderr is not a terminal (CI, a log).
PLAIN_LINE_SECONDS = 5.0


class RestoreProgress:
    """The runner's ProgressFactory for `walwarden restore`: makes the reporter of each pass over the
    artifact ("download", "verify", "restore") against the manifest's size. On a terminal that is a
    tqdm bar; otherwise a plain line every few seconds. close() ends a bar that a failure cut
    short, so that the error line starts a line of its own."""

    def __init__(self, total: int, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self._total = total
        self._stream = stream or sys.stderr
        self._clock = clock
        self._bars: list[ProgressBar] = []

    def __call__(self, label: str) -> ProgressReporter:
        if not self._stream.isatty():
            return ProgressLines(label, self._total, self._stream, clock=self._clock)
        bar = ProgressBar(label, self._total, self._stream)
        self._bars.append(bar)
        return bar

    def close(self) -> None:
        for bar in self._bars:
            bar.close()


class ProgressBar:
    """A tqdm bar redrawn in place; update/done take the bytes done so far, like runner.streams.Progress."""

    def __init__(self, label: str, total: int, stream: TextIO, mininterval: float = 0.2):
        from tqdm import tqdm  # only on a terminal

        # Decimal units (MB = 10^6 bytes): tqdm scales its rate by 1000 whatever unit_divisor says,
        # so binary sizes beside it would be mislabelled.
        self._bar = tqdm(
            desc=label, total=total, file=stream, unit="B", unit_scale=True, dynamic_ncols=True, mininterval=mininterval
        )

    def update(self, size: int) -> None:
        self._bar.update(size - self._bar.n)

    def done(self, size: int) -> None:
        self.update(size)
        self.close()

    def close(self) -> None:
        self._bar.close()  # a second close does nothing


class ProgressLines(Progress):
    """Without a terminal: a plain line every PLAIN_LINE_SECONDS, and one at the end."""

    def __init__(self, label: str, total: int, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        self._stream = stream
        self._total = total
        super().__init__(label, interval=PLAIN_LINE_SECONDS, say=self._write, clock=clock)

    def _line(self, size: int, now: float) -> str:
        return format_progress(self.label, size, self._total, now - self._started)

    def done(self, size: int) -> None:
        self._say(format_progress(self.label, size, self._total, self._clock() - self._started, finished=True))

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()


def format_progress(label: str, size: int, total: int, elapsed: float, finished: bool = False) -> str:
    """'download: 50.0% of 1,024.0 MiB (512.0 MiB), 85.3 MiB/s, ETA 0:06' ('in 0:12' once finished)."""
    fraction = size / total if total > 0 else 1.0
    rate = size / elapsed if elapsed > 0 else 0.0
    if finished:
        timing = f"in {format_duration(elapsed)}"
    else:
        timing = f"ETA {format_duration(max(0, total - size) / rate)}" if rate > 0 else "ETA --:--"
    return (
        f"{label}: {fraction:.1%} of {total / MiB:,.1f} MiB ({size / MiB:,.1f} MiB), {rate / MiB:,.1f} MiB/s, {timing}"
    )


def format_duration(seconds: float) -> str:
    """'0:07', '12:34', '1:02:03'."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"
