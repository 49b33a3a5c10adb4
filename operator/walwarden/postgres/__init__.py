"""What the operator itself asks the target database: is it reachable, who is still connected,
and how many rows do the restored tables hold. Credentials come from a Secret's values, held
in memory only; connection errors are reported by class, never with the DSN.

Also what both the operator and the runner need to read PostgreSQL's answers the same way: which
kind of failure a refused connection is (`classify_connection_error`) and the major version of a
version string (`major_version`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq, sql

from walwarden.runner.contract import OPERATOR_APPLICATION_NAME, RUNNER_APPLICATION_NAME

CONNECT_TIMEOUT = 10
APPLICATION_NAME = OPERATOR_APPLICATION_NAME


class ConnectionFailure(StrEnum):
    """Why a connection was refused; the values are the reasons both sides put in conditions."""

    AUTHENTICATION_FAILED = "AuthenticationFailed"  # the server refused this login: user, password, pg_hba.conf
    DATABASE_NOT_FOUND = "DatabaseNotFound"
    DATABASE_UNREACHABLE = "DatabaseUnreachable"  # anything else: host, port, network, TLS, a starting server


# libpq reports no SQLSTATE for a failed connection, only its (English) message: these are what
# libpq and the server say when they refuse a login, rather than cannot be reached.
_LOGIN_REFUSED = ("authentication failed", "password", 'role "', "no pg_hba.conf entry", "permission denied", "scram")
# `[^"]*`, not `.*`: a message naming a database in one place and a missing role in another
# ('... database "vault" ... role "ghost" does not exist') is a refused login.
_DATABASE_MISSING = re.compile(r'database "[^"]*" does not exist')


def classify_connection_error(error: psycopg.OperationalError | str) -> ConnectionFailure:
    """Which kind of failure a failed psycopg.connect() is. Anything unrecognised counts as
    unreachable: the one of the three that asks to check the path to the server, and to retry."""
    text = " ".join(str(error).split()).lower()
    if _DATABASE_MISSING.search(text):
        return ConnectionFailure.DATABASE_NOT_FOUND
    if any(words in text for words in _LOGIN_REFUSED):
        return ConnectionFailure.AUTHENTICATION_FAILED
    return ConnectionFailure.DATABASE_UNREACHABLE


_VERSION = re.compile(r"\s*(\d+)(?:\.(\d+))?")


def major_version(text: str) -> tuple[int, ...]:
    """The major version of what a server or a client tool reports, comparable as a tuple:
    '16.4 (Debian 16.4-1.pgdg120+1)' -> (16,), '16beta2' -> (16,), '9.6.24' -> (9, 6) (before 10,
    the major version had two numbers), () when unreadable (callers then refuse nothing on it)."""
    match = _VERSION.match(text)
    if match is None:
        return ()
    major = int(match[1])
    if major >= 10 or match[2] is None:
        return (major,)
    return (major, int(match[2]))


class DatabaseError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class Login:
    """One service's database login: where, and as whom (the password kept out of reprs)."""

    service: str
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)

    def describe(self) -> str:
        return f"{self.service} (user {self.user!r} on {self.host}:{self.port}, database {self.database!r})"


@dataclass(frozen=True)
class Session:
    pid: int
    user: str
    application: str
    client: str

    def describe(self) -> str:
        return f"pid {self.pid} user {self.user} application {self.application or '-'} from {self.client or 'local'}"


def _conninfo(secret: dict[str, str], dbname: str) -> dict[str, str]:
    return {
        "host": secret["host"],
        "port": secret.get("port", "5432"),
        "user": secret["user"],
        "password": secret["password"],
        "dbname": dbname,
        "sslmode": secret.get("sslmode") or "prefer",
        "connect_timeout": str(CONNECT_TIMEOUT),
        "application_name": APPLICATION_NAME,
    }


@contextmanager
def connect(secret: dict[str, str], dbname: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to `dbname` with the Secret's login; a refusal as DatabaseError,
    whose message names the host and user but never carries the password."""
    try:
        connection = psycopg.connect(**_conninfo(secret, dbname), autocommit=True)  # type: ignore[arg-type]
    except psycopg.OperationalError as error:
        raise _connection_error(error, secret, dbname) from None
    try:
        yield connection
    finally:
        connection.close()


def _connection_error(error: psycopg.OperationalError, secret: dict[str, str], dbname: str) -> DatabaseError:
    failure = classify_connection_error(error)
    where = f"{secret.get('host')}:{secret.get('port', '5432')}"
    if failure is ConnectionFailure.AUTHENTICATION_FAILED:
        # libpq's words tell a wrong password from a pg_hba.conf rule or a missing role; they
        # name the user and host, never the password.
        said = " ".join(str(error).split()).rpartition("failed: ")[2] or "login refused"
        message = (
            f"{said} (user {secret.get('user')!r}, database {dbname!r} on {where}); check the admin Secret "
            "and the server's pg_hba.conf"
        )
    elif failure is ConnectionFailure.DATABASE_NOT_FOUND:
        message = f"database {dbname!r} does not exist on {secret.get('host')}"
    else:
        message = f"cannot connect to {where}"
    return DatabaseError(failure.value, message)


def refused(error: psycopg.Error, doing: str) -> DatabaseError:
    """The server's refusal of a statement, with its own words: the primary message only, which names
    objects but never carries the statement (nor so a password literal in it)."""
    said = (error.diag.message_primary or str(error)).strip()
    reason = "InsufficientPrivilege" if isinstance(error, pg_errors.InsufficientPrivilege) else "DatabaseError"
    return DatabaseError(reason, f"{doing}: {said}")


def scalar(connection: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    """The first column of the one row a query returns (count(*), SHOW, ...)."""
    row = connection.execute(query, params).fetchone()
    if row is None:
        raise DatabaseError("UnexpectedAnswer", "the server returned no row where one was expected")
    return row[0]


def server_version(secret: dict[str, str], dbname: str = "postgres") -> str:
    with connect(secret, dbname) as connection:
        return str(scalar(connection, "SHOW server_version"))


def database_exists(secret: dict[str, str], dbname: str) -> bool:
    with connect(secret, "postgres") as connection:
        return connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def application_sessions(secret: dict[str, str], dbname: str) -> list[Session]:
    """Client sessions on `dbname`, other than Walwarden's own: the operator's, and the staged
    restore Job's brief login check (application names walwarden-operator, walwarden-runner)."""
    with connect(secret, "postgres") as connection:
        rows = connection.execute(
            "SELECT pid, usename, application_name, coalesce(host(client_addr), '') FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
            "AND application_name NOT IN (%s, %s) ORDER BY pid",
            (dbname, APPLICATION_NAME, RUNNER_APPLICATION_NAME),
        ).fetchall()
    return [Session(*row) for row in rows]


def terminate_sessions(secret: dict[str, str], sessions: list[Session]) -> None:
    with connect(secret, "postgres") as connection:
        for session in sessions:
            connection.execute("SELECT pg_terminate_backend(%s)", (session.pid,))


def row_counts(secret: dict[str, str], dbname: str, tables: list[str]) -> dict[str, int | None]:
    """Exact counts of schema-qualified tables; None for a table that does not exist."""
    counts: dict[str, int | None] = {}
    with connect(secret, dbname) as connection:
        for table in tables:
            schema, _, name = table.rpartition(".")
            exists = scalar(connection, "SELECT to_regclass(%s)", (table,))
            if exists is None:
                counts[table] = None
                continue
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema or "public", name))
            counts[table] = int(scalar(connection, query))
    return counts


# A check's answer is compared with its `expected`, at most 1024 characters (api SqlCheck). The
# query is the request author's and may return huge values or many rows: the operator fetches at
# most two rows (two tells "more than one") of at most one character more than that.
MAX_ANSWER_CHARACTERS = 1024
_BOUNDED_ANSWER = sql.SQL(
    # format('%s', …) prints any type as PostgreSQL does (t, not the ::text cast's true). The
    # newline ends a trailing -- comment of the statement before the parenthesis closes.
    "SELECT CASE WHEN num_nulls(q.answer) = 0 THEN left(format('%s', q.answer), {limit}) END "
    "FROM ({statement}\n) AS q(answer) LIMIT 2"
)


def read_only_answer(secret: dict[str, str], dbname: str, query: str, timeout_seconds: int) -> str | None:
    """The first column of the single row `query` returns, as PostgreSQL prints it (text format:
    t/f, 42, 2026-12-03 ...), None for NULL; run in a read-only transaction with a statement
    timeout. A query that fails, does not return exactly one row or answers more than
    MAX_ANSWER_CHARACTERS is a DatabaseError saying so."""
    statement = query.strip().rstrip(";").rstrip()  # "SELECT 1;" would not fit in a subquery
    with connect(secret, dbname) as connection:
        try:
            # Rolled back, not committed: READ ONLY still lets a query write a little (lo_create).
            with connection.transaction(force_rollback=True):
                connection.execute("SET TRANSACTION READ ONLY")
                connection.execute(
                    sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(timeout_seconds * 1000))
                )
                _require_one_query(connection, statement)
                rows = _bounded_rows(connection, statement)
        except pg_errors.QueryCanceled:
            raise DatabaseError("CheckTimedOut", f"the query ran longer than {timeout_seconds} s") from None
        except psycopg.Error as error:
            raise refused(error, "running the query") from None
    return _one_answer(rows)


def _require_one_query(connection: psycopg.Connection[Any], statement: str) -> None:
    """Parse the statement on its own, running nothing: the server refuses more than one statement
    ("COMMIT; ..." cannot leave the read-only transaction), and one that parses alone cannot close
    the subquery it is then put in and add to the query around it."""
    pgconn, encoding = connection.pgconn, connection.info.encoding
    parsed = pgconn.prepare(b"", statement.encode(encoding))
    if parsed.status != pq.ExecStatus.COMMAND_OK:
        raise pg_errors.error_from_result(parsed, encoding=encoding)
    if pgconn.describe_prepared(b"").nfields == 0:
        raise DatabaseError("CheckNoResult", "the statement returned no rows (it must be a query)")


def _bounded_rows(connection: psycopg.Connection[Any], statement: str) -> list[tuple[Any, ...]]:
    bounded = _BOUNDED_ANSWER.format(limit=sql.Literal(MAX_ANSWER_CHARACTERS + 1), statement=sql.SQL(statement))
    try:
        # Prepared, as one statement: the extended protocol takes no second one.
        return connection.execute(bounded, prepare=True).fetchall()
    except pg_errors.SyntaxError:  # it parsed alone: it is a statement that is not a query
        raise DatabaseError(
            "CheckNotAQuery", "the statement is not a query: a check is a SELECT, VALUES, TABLE or WITH query"
        ) from None


def _one_answer(rows: list[tuple[Any, ...]]) -> str | None:
    if len(rows) != 1:
        counted = "more than one row" if rows else "0 rows"
        raise DatabaseError("CheckNotOneRow", f"the query returned {counted}, not one")
    value = rows[0][0]
    if value is not None and len(value) > MAX_ANSWER_CHARACTERS:
        raise DatabaseError(
            "CheckAnswerTooLong",
            f"the answer is longer than {MAX_ANSWER_CHARACTERS} characters, the longest expected value: "
            "return a count or a boolean",
        )
    return None if value is None else str(value)
