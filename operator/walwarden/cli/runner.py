"""`walwarden runner ...`: what the operator's Jobs run (and what a shell can run too).

Arguments carry no secrets: the database login comes from libpq's PG* variables, the object-store
keys from AWS_* (or the ambient identity), each EMP value from a variable named by --emp.
Every name the operator's Jobs spell (subcommands, flags, variables) comes from runner/contract.py.
On failure the last line on stderr is `walwarden-error: <Reason>: <message>`, and the message says
what the failure left behind: an interruption or a bug is explained per command and per moment
(`Explanation`), since only this module sees them.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from walwarden.cli.arguments import database_name, positive_int, timestamp
from walwarden.runner.contract import (
    DEFAULT_GO_TIMEOUT_SECONDS,
    DEFAULT_PARALLEL_JOBS,
    DEFAULT_REGION,
    EMP_SEPARATOR,
    EXIT_FAILED,
    EXIT_INVALID_ARGUMENTS,
    EXIT_SUCCEEDED,
    RUNNER_SUBCOMMAND,
    Command,
    Env,
    Flag,
    emp_argument,
    emp_env,
    login_argument,
    login_user_env,
    parse_login_argument,
)
from walwarden.runner.errors import DumpFailed, InvalidArguments, RunnerError, UnexpectedError

if TYPE_CHECKING:  # imported where used: `walwarden token` and the rest need no psycopg
    from walwarden.runner.restore import Artifact, GoSignal, TargetState


class _RunnerArgumentParser(argparse.ArgumentParser):
    """Bad arguments end, like every other failure, with the walwarden-error line."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(InvalidArguments(f"{self.prog}: {message}").error_line(), file=sys.stderr, flush=True)
        sys.exit(EXIT_INVALID_ARGUMENTS)

    def parse_known_args(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        namespace: argparse.Namespace | None = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        # A subcommand's unknown arguments would otherwise go back up to the `walwarden` parser,
        # whose error is no walwarden-error line: a flag the operator has and the runner lacks
        # would fail the Job without a reason.
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def _emp(text: str) -> tuple[str, str]:
    """NAME=ENVVAR (contract.emp_argument), split at the last '='."""
    name, separator, variable = text.rpartition(EMP_SEPARATOR)
    if not separator or not name or not variable:
        raise argparse.ArgumentTypeError(
            f"expected NAME=ENVVAR (e.g. {emp_argument('emp/password', emp_env(0))}), got {text!r}"
        )
    return name, variable


def add_runner_parser(subparsers: Any) -> argparse.ArgumentParser:  # argparse's _SubParsersAction is private
    """Add `runner` and its subcommands to the `walwarden` command's subparsers. Every flag names
    its `dest`, so the attributes read below stay put whatever the contract calls the flag."""
    runner = subparsers.add_parser(RUNNER_SUBCOMMAND, help="run a backup or restore step (inside the operator's Jobs)")
    commands = runner.add_subparsers(dest="runner_command", required=True, parser_class=_RunnerArgumentParser)

    backup = commands.add_parser(
        Command.BACKUP,
        help="pg_dump databases into S3 with a manifest beside them",
        description="Stream pg_dump --format=custom of each database into an S3 multipart upload, then write "
        "<prefix>/manifest.json. The admin connection comes from PGHOST, PGPORT, PGUSER, PGPASSWORD "
        "(and PGSSLMODE); object-store keys from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the ambient "
        f"identity; {Env.RESULT_KEY}, when set, signs the manifest.",
    )
    backup.add_argument(
        Flag.DATABASE,
        dest="database",
        action="append",
        required=True,
        type=database_name,
        metavar="NAME",
        help="a database to dump (repeatable)",
    )
    backup.add_argument(Flag.BUCKET, dest="bucket", required=True)
    backup.add_argument(
        Flag.PREFIX,
        dest="prefix",
        required=True,
        help="object-key folder of this backup: <prefix>/<database>.dump and <prefix>/manifest.json",
    )
    backup.add_argument(Flag.REGION, dest="region", default=DEFAULT_REGION)
    backup.add_argument(Flag.ENDPOINT, dest="endpoint", help="URL of an S3-compatible server")
    backup.add_argument(
        Flag.FORCE_PATH_STYLE, dest="force_path_style", action="store_true", help="path-style bucket addressing"
    )
    backup.add_argument(
        Flag.OBJECT_LOCK_MODE,
        dest="object_lock_mode",
        choices=["GOVERNANCE", "COMPLIANCE"],
        help="write the dump and manifest under S3 Object Lock in this mode (with --object-lock-until)",
    )
    backup.add_argument(
        Flag.OBJECT_LOCK_UNTIL, dest="object_lock_until", type=timestamp, help="the lock's retain-until date (RFC 3339)"
    )
    backup.add_argument(
        Flag.EMP,
        dest="emp",
        action="append",
        type=_emp,
        default=[],
        metavar="NAME=ENVVAR",
        help="an Encryptor Master Password secret (e.g. emp/password) whose value is in the "
        "environment variable ENVVAR; its fingerprint goes into the manifest (repeatable)",
    )
    backup.add_argument(
        Flag.BACKUP_NAMESPACE,
        dest="backup_namespace",
        default="",
        help="namespace of the BackupRequest (manifest only)",
    )
    backup.add_argument(
        Flag.BACKUP_NAME, dest="backup_name", default="", help="name of the BackupRequest (manifest only)"
    )
    backup.add_argument(Flag.BACKUP_UID, dest="backup_uid", default="", help="uid of the BackupRequest (manifest only)")
    backup.add_argument(
        Flag.EXPECTED_BYTES,
        dest="expected_bytes",
        type=positive_int,
        metavar="N",
        help="expected dump size in bytes, to choose the part size (default: pg_database_size)",
    )

    summaries = {
        Command.VERIFY: "download an artifact, check its size and sha256, and that pg_restore can read it (no "
        "database is touched)",
        Command.RESTORE: "download and verify an artifact, then pg_restore it into a database",
    }
    for name, summary in summaries.items():
        command = commands.add_parser(
            name,
            help=summary,
            description=summary + ". The presigned URL comes from "
            f"the environment variable named by {Flag.URL_ENV}; the admin connection from "
            "PGHOST, PGPORT, PGUSER, PGPASSWORD (and PGSSLMODE).",
        )
        command.add_argument(
            Flag.URL_ENV,
            dest="url_env",
            required=True,
            metavar="VAR",
            help="environment variable holding the presigned GET URL of the artifact",
        )
        command.add_argument(Flag.SHA256, dest="sha256", required=True, help="the artifact's sha256 from its manifest")
        command.add_argument(Flag.SIZE, dest="size", required=True, type=positive_int, help="its size in bytes")
        if name == Command.RESTORE:
            command.add_argument(
                Flag.DATABASE, dest="database", required=True, type=database_name, help="the database to restore into"
            )
            command.add_argument(
                Flag.CLEAN,
                dest="clean",
                action="store_true",
                help="InPlace: drop the existing objects first (--clean --if-exists)",
            )
            command.add_argument(
                Flag.JOBS,
                dest="jobs",
                type=positive_int,
                default=DEFAULT_PARALLEL_JOBS,
                help=f"parallel pg_restore jobs (default {DEFAULT_PARALLEL_JOBS})",
            )
            command.add_argument(
                Flag.GO_URL_ENV,
                dest="go_url_env",
                metavar="VAR",
                help="environment variable holding a presigned GET URL of the go object: when "
                "given, pg_restore waits, after the artifact was verified, until that "
                f"object exists and its sha256 is {Flag.GO_SHA256}",
            )
            command.add_argument(Flag.GO_SHA256, dest="go_sha256", help="sha256 of the go object's content")
            command.add_argument(
                Flag.GO_TIMEOUT,
                dest="go_timeout",
                type=positive_int,
                default=DEFAULT_GO_TIMEOUT_SECONDS,
                metavar="SECONDS",
                help=f"how long to wait for the go object (default {DEFAULT_GO_TIMEOUT_SECONDS})",
            )
    logins = commands.add_parser(
        Command.LOGINS,
        help="try each service's database login (touches no data)",
        description="Connect as each service would: to HOST:PORT/DATABASE, with the user and password in "
        f"{login_user_env(0)} and WALWARDEN_LOGIN_0_PASSWORD for the first --login, ..._1_... for the second. "
        "A missing database after a successful authentication counts as proven.",
    )
    logins.add_argument(
        Flag.LOGIN,
        dest="login",
        action="append",
        required=True,
        type=_login,
        metavar="SERVICE=HOST:PORT/DATABASE",
        help=f"where one service's login is tried (repeatable), e.g. {login_argument('wallet', 'db', 5432, 'vault')}",
    )
    return runner


def _login(text: str) -> tuple[str, str, int, str]:
    try:
        return parse_login_argument(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


@dataclass(frozen=True)
class Explanation:
    """What an interruption (SIGTERM: the Job's deadline or deletion; Ctrl-C) or a bug means for
    one command, given what happened ("interrupted by SIGTERM ..."). The restore's depends on the
    moment, so it reads the TargetState the restore updates."""

    interrupted: Callable[[str], RunnerError]
    unexpected: Callable[[str], RunnerError]


# The backup writes its manifest last and deletes the dumps of a failed run: nothing is finished.
BACKUP_EXPLANATION = Explanation(
    interrupted=lambda what: DumpFailed(f"{what}; nothing was finished"),
    unexpected=lambda what: DumpFailed(f"{what}; nothing was finished"),
)


def _verify_explanation() -> Explanation:
    from walwarden.runner.restore import NOT_TOUCHED, VerifyInterrupted

    return Explanation(
        interrupted=lambda what: VerifyInterrupted(f"{what}; {NOT_TOUCHED}"),
        unexpected=lambda what: UnexpectedError(f"{what}; {NOT_TOUCHED}"),
    )


def _restore_explanation(target: TargetState) -> Explanation:
    from walwarden.runner.restore import RestoreInterrupted

    return Explanation(
        interrupted=lambda what: RestoreInterrupted(f"{what}; {target.describe()}"),
        unexpected=lambda what: UnexpectedError(f"{what}; {target.describe()}"),
    )


def run(args: argparse.Namespace) -> int:
    """Run the `walwarden runner` subcommand that `args` names; returns the process's exit status."""
    if args.runner_command == Command.BACKUP:
        return _report(lambda: _backup(args), BACKUP_EXPLANATION)
    if args.runner_command == Command.VERIFY:
        return _report(lambda: _verify(args), _verify_explanation())
    if args.runner_command == Command.RESTORE:
        from walwarden.runner.restore import TargetState

        target = TargetState(args.database, clean=args.clean)
        return _report(lambda: _restore(args, target), _restore_explanation(target))
    if args.runner_command == Command.LOGINS:
        return _report(lambda: _logins(args), LOGINS_EXPLANATION)
    raise ValueError(f"unknown runner command {args.runner_command!r}")


# Trying logins changes nothing anywhere.
LOGINS_EXPLANATION = Explanation(
    interrupted=lambda what: UnexpectedError(f"{what}; nothing was touched"),
    unexpected=lambda what: UnexpectedError(f"{what}; nothing was touched"),
)


def _logins(args: argparse.Namespace) -> None:
    from walwarden.runner.logins import check_logins, logins_from_environment

    for line in check_logins(logins_from_environment(args.login)):
        print(line, flush=True)


def _backup(args: argparse.Namespace) -> None:
    from walwarden.runner.backup import BackupOptions, run_backup
    from walwarden.storage.manifest import BackupIdentity
    from walwarden.storage.s3 import Lock

    run_backup(
        BackupOptions(
            databases=args.database,
            bucket=args.bucket,
            prefix=args.prefix,
            region=args.region,
            endpoint=args.endpoint,
            force_path_style=args.force_path_style,
            emp=args.emp,
            backup=BackupIdentity(namespace=args.backup_namespace, name=args.backup_name, uid=args.backup_uid),
            expected_bytes=args.expected_bytes,
            lock=Lock(args.object_lock_mode, args.object_lock_until) if args.object_lock_mode else None,
        )
    )


def _verify(args: argparse.Namespace) -> None:
    from walwarden.runner.restore import run_verify

    run_verify(_artifact(args))


def _restore(args: argparse.Namespace, target: TargetState) -> None:
    from walwarden.runner.restore import run_restore

    run_restore(_artifact(args), args.database, clean=args.clean, jobs=args.jobs, go=_go_signal(args), state=target)


def _artifact(args: argparse.Namespace) -> Artifact:
    from walwarden.runner.restore import Artifact

    url = os.environ.get(args.url_env)
    if not url:
        raise InvalidArguments(f"the environment variable {args.url_env} with the artifact's URL is not set")
    return Artifact(url=url, sha256=args.sha256.lower(), size=args.size)


def _go_signal(args: argparse.Namespace) -> GoSignal | None:
    from walwarden.runner.restore import GoSignal

    if not args.go_url_env:
        return None
    url = os.environ.get(args.go_url_env)
    if not url or not args.go_sha256:
        raise InvalidArguments(
            f"{Flag.GO_URL_ENV} needs the environment variable {args.go_url_env} set and {Flag.GO_SHA256}"
        )
    return GoSignal(url=url, sha256=args.go_sha256.lower(), timeout_seconds=args.go_timeout)


def _with_notes(failure: RunnerError, cause: BaseException) -> RunnerError:
    """Keep what the clean-up on the way out added (e.g. that aborting the upload failed too)."""
    for note in getattr(cause, "__notes__", []):
        failure.add_note(note)
    return failure


class Interrupted(BaseException):
    """SIGTERM, raised where the main thread is. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way swallows it, while every `with` block and `finally` cleans up."""


def _interrupted(signum: int, frame: FrameType | None) -> NoReturn:
    # As PID 1 in a container, SIGTERM would otherwise be ignored and the Job killed at the grace
    # period's end without any clean-up: pg_dump or pg_restore killed, the multipart upload aborted.
    raise Interrupted(f"interrupted by {signal.Signals(signum).name} (the Job's deadline, or its deletion)")


def _report(action: Callable[[], None], explanation: Explanation) -> int:
    """Run action; on failure make `walwarden-error: <Reason>: <message>` the last line on stderr."""
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        action()
        return EXIT_SUCCEEDED
    except RunnerError as error:
        failure = error
    except Interrupted as interruption:
        failure = _with_notes(explanation.interrupted(str(interruption)), interruption)
    except KeyboardInterrupt as interruption:
        failure = _with_notes(explanation.interrupted("interrupted (SIGINT)"), interruption)
    except Exception as error:  # noqa: BLE001 -- a bug: the traceback for us, the line for the operator
        traceback.print_exc()
        failure = _with_notes(
            explanation.unexpected(f"unexpected {type(error).__name__}: {error} (see the log above)"), error
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.stdout.flush()  # the progress lines before it, so the error stays the last line of the log
    print(failure.error_line(), file=sys.stderr, flush=True)
    return EXIT_INVALID_ARGUMENTS if isinstance(failure, InvalidArguments) else EXIT_FAILED
