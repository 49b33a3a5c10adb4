"""The runner Job contract: every name the operator and `walwarden runner` must spell alike.

The operator builds Jobs (kube/runner_job.py, backup/job.py, restore/job.py) whose arguments and
environment the runner parses (cli/runner.py, runner/), and reads back the runner's last log line
(kube/jobs.py). Both sides read this module, so a name changed here changes on both sides at once,
and a name changed on one side only fails tests/unit/runner/test_job_contract.py.

Standard library only, and nothing from walwarden: the operator side may import this module
without importing the runner (psycopg, pg_dump's plumbing), and the runner without the operator.
"""

from __future__ import annotations

from typing import Final

# --- the command ------------------------------------------------------------------------------

# The Job container's command; the subcommand is the first argument.
RUNNER_COMMAND: Final = ("walwarden", "runner")
RUNNER_SUBCOMMAND: Final = RUNNER_COMMAND[1]  # the `walwarden` command's subparser


class Command:
    """The runner's subcommands."""

    BACKUP: Final = "backup"  # pg_dump into S3, manifest last
    VERIFY: Final = "verify"  # download, sha256, pg_restore --list: touches no database
    RESTORE: Final = "restore"  # verify, wait for the go when given one, pg_restore
    LOGINS: Final = "logins"  # try each service's database login (a Redirected restore's Preflight)


class Flag:
    """The runner's command-line flags. None carries a secret: secrets come by environment only."""

    # backup
    DATABASE: Final = "--database"  # repeatable for backup; the target database for restore
    BUCKET: Final = "--bucket"
    PREFIX: Final = "--prefix"
    REGION: Final = "--region"
    ENDPOINT: Final = "--endpoint"
    FORCE_PATH_STYLE: Final = "--force-path-style"
    OBJECT_LOCK_MODE: Final = "--object-lock-mode"  # GOVERNANCE or COMPLIANCE: the dump and manifest are locked
    OBJECT_LOCK_UNTIL: Final = "--object-lock-until"  # RFC 3339: the lock's retain-until date
    EMP: Final = "--emp"  # NAME=ENVVAR, see emp_argument()
    BACKUP_NAMESPACE: Final = "--backup-namespace"
    BACKUP_NAME: Final = "--backup-name"
    BACKUP_UID: Final = "--backup-uid"
    EXPECTED_BYTES: Final = "--expected-bytes"
    # verify and restore
    URL_ENV: Final = "--url-env"  # names the variable holding the presigned URL, never the URL itself
    SHA256: Final = "--sha256"
    SIZE: Final = "--size"
    # restore
    CLEAN: Final = "--clean"
    JOBS: Final = "--jobs"
    GO_URL_ENV: Final = "--go-url-env"
    GO_SHA256: Final = "--go-sha256"
    GO_TIMEOUT: Final = "--go-timeout"
    # logins
    LOGIN: Final = "--login"  # repeatable: SERVICE=HOST:PORT/DATABASE, see login_argument()


class Env:
    """Environment variables of the runner's container."""

    ARTIFACT_URL: Final = "WALWARDEN_ARTIFACT_URL"  # presigned GET URL of the artifact (given by --url-env)
    GO_URL: Final = "WALWARDEN_GO_URL"  # presigned GET URL of the go object (by --go-url-env)
    RESULT_KEY: Final = "WALWARDEN_RESULT_KEY"  # when set, the backup signs its manifest with it
    STAGING_DIR: Final = "WALWARDEN_STAGING_DIR"  # where restore stages the artifact (default: tempdir)
    EMP_PREFIX: Final = "WALWARDEN_EMP_"  # WALWARDEN_EMP_<n>: one Encryptor Master Password each
    # libpq reads the admin connection from these; the runner names PGHOST and PGPORT in its messages.
    PG_HOST: Final = "PGHOST"
    PG_PORT: Final = "PGPORT"
    PG_USER: Final = "PGUSER"
    PG_PASSWORD: Final = "PGPASSWORD"
    PG_SSLMODE: Final = "PGSSLMODE"
    PG_CONNECT_TIMEOUT: Final = "PGCONNECT_TIMEOUT"
    # boto3 reads the object-store keys from these (else the ambient identity: IRSA, instance profile).
    AWS_ACCESS_KEY_ID: Final = "AWS_ACCESS_KEY_ID"
    AWS_SECRET_ACCESS_KEY: Final = "AWS_SECRET_ACCESS_KEY"


def emp_env(index: int) -> str:
    """The variable holding the `index`-th Encryptor Master Password: WALWARDEN_EMP_0, ..."""
    return f"{Env.EMP_PREFIX}{index}"


EMP_SEPARATOR: Final = "="

LOGIN_PREFIX: Final = "WALWARDEN_LOGIN_"


def login_user_env(index: int) -> str:
    """The variable holding the `index`-th --login's user (WALWARDEN_LOGIN_0_USER, ...)."""
    return f"{LOGIN_PREFIX}{index}_USER"


def login_password_env(index: int) -> str:
    """The variable holding the `index`-th --login's password."""
    return f"{LOGIN_PREFIX}{index}_PASSWORD"


def login_argument(service: str, host: str, port: int, database: str) -> str:
    """One --login: where a service's login is tried; its user and password come from
    login_user_env/login_password_env of its position. Split by parse_login_argument."""
    return f"{service}={host}:{port}/{database}"


def parse_login_argument(text: str) -> tuple[str, str, int, str]:
    """(service, host, port, database) of a login_argument(); ValueError when it is not one.
    From the right: a host may hold ':' (IPv6), a database name holds no '/'."""
    service, separator, rest = text.partition("=")
    where, slash, database = rest.rpartition("/")
    host, colon, port = where.rpartition(":")
    if not (separator and slash and colon and service and host and database and port.isdigit()):
        raise ValueError(f"expected SERVICE=HOST:PORT/DATABASE, got {text!r}")
    return service, host, int(port), database


def emp_argument(secret: str, variable: str) -> str:
    """The value of one --emp: the EMP's name for the manifest (e.g. 'emp/password'), then the
    variable holding its value. The runner splits at the last '=', so the name may hold one."""
    return f"{secret}{EMP_SEPARATOR}{variable}"


# --- defaults both sides assume -----------------------------------------------------------------

DEFAULT_REGION: Final = "us-east-1"
DEFAULT_PARALLEL_JOBS: Final = 2  # pg_restore --jobs
DEFAULT_GO_TIMEOUT_SECONDS: Final = 3600  # how long a restore waits for its go

# --- the go signal ----------------------------------------------------------------------------

# What the operator writes into the go object to call a staged restore off (the request failed
# before its go); any other content must hash to --go-sha256.
GO_ABORT_CONTENT: Final = "abort"

# --- how the runner and the operator show up in pg_stat_activity --------------------------------

# ScaleDown looks for sessions still on the database and leaves Walwarden's own aside.
RUNNER_APPLICATION_NAME: Final = "walwarden-runner"
OPERATOR_APPLICATION_NAME: Final = "walwarden-operator"

# --- the outcome ------------------------------------------------------------------------------

EXIT_SUCCEEDED: Final = 0
EXIT_FAILED: Final = 1
EXIT_INVALID_ARGUMENTS: Final = 2  # argparse's own convention

# On failure the runner's last line on stderr is `walwarden-error: <Reason>: <message>`; the pod's
# termination message (terminationMessagePolicy FallbackToLogsOnError) carries it to the operator.
ERROR_PREFIX: Final = "walwarden-error: "
REASON_SEPARATOR: Final = ": "
# Kubernetes keeps at most the log's last 2048 bytes as the termination message: a longer line
# would lose its start, the prefix the operator looks for. The rest leaves room for the newline.
MAX_ERROR_LINE_BYTES: Final = 2000
ELLIPSIS: Final = "…"


def format_error_line(reason: str, message: str) -> str:
    """The one line the operator parses: whitespace (newlines too) squeezed to single spaces, cut
    with an ellipsis to fit MAX_ERROR_LINE_BYTES once encoded."""
    head = f"{ERROR_PREFIX}{reason}{REASON_SEPARATOR}"
    text = " ".join(message.split())
    room = MAX_ERROR_LINE_BYTES - len(head.encode())
    if len(text.encode()) > room:
        cut = text.encode()[: room - len(ELLIPSIS.encode())]
        text = cut.decode(errors="ignore") + ELLIPSIS  # "ignore": drop a character cut in half
    return head + text


def parse_error_line(line: str) -> tuple[str, str] | None:
    """(reason, message) of a line format_error_line made, or None for any other line."""
    if not line.startswith(ERROR_PREFIX):
        return None
    reason, _, message = line[len(ERROR_PREFIX) :].partition(REASON_SEPARATOR)
    return reason.strip(), message.strip()
