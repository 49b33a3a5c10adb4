"""The runner's failures, each with the reason the operator reads from the Job's last log line.

On failure the runner prints, as the last line on stderr, `walwarden-error: <Reason>: <message>`
(runner/contract.py formats it); the pod's termination message (terminationMessagePolicy
FallbackToLogsOnError) carries it to the operator, which puts the reason in the request's
conditions. Messages say what happened, what state it left behind and what to do; they never carry
a password, a DSN with a password or a secret value.
"""

from __future__ import annotations

from walwarden.runner.contract import format_error_line


class RunnerError(Exception):
    """A failure the runner explains to the user; `reason` is a CamelCase word for conditions."""

    reason = "RunnerError"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def error_line(self) -> str:
        """The one line the operator parses: no newline inside, whatever the message (and any note
        added on the way out, e.g. a failed clean-up) holds."""
        return format_error_line(self.reason, " ".join([self.message, *getattr(self, "__notes__", [])]))

    def add_consequence(self, consequence: str) -> None:
        """Say what the failure left behind, which only a caller it passes through may know (the
        restore knows whether the database was touched yet; the download that failed does not)."""
        self.message = f"{self.message}; {consequence}"
        self.args = (self.message,)


class UnexpectedError(RunnerError):
    """A failure nobody named (a bug): its traceback is in the log, above the error line."""

    reason = "UnexpectedError"


class InvalidArguments(RunnerError):
    reason = "InvalidArguments"


# --- the database ----------------------------------------------------------------------------


class DatabaseError(RunnerError):
    """The admin connection could not be opened."""


class AuthenticationFailed(DatabaseError):
    reason = "AuthenticationFailed"


class DatabaseUnreachable(DatabaseError):
    reason = "DatabaseUnreachable"


class DatabaseNotFound(DatabaseError):
    reason = "DatabaseNotFound"


class PgDumpTooOld(RunnerError):
    reason = "PgDumpTooOld"


class DumpFailed(RunnerError):
    """pg_dump (or reading its output) failed; nothing was finished in the object store."""

    reason = "DumpFailed"


# --- the object store ------------------------------------------------------------------------


class StorageError(RunnerError):
    """The object store refused or failed a request."""


class BucketNotFound(StorageError):
    reason = "BucketNotFound"


class StorageAccessDenied(StorageError):
    reason = "StorageAccessDenied"


class UploadFailed(StorageError):
    reason = "UploadFailed"
