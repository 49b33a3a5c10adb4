"""What the operator itself asks the target database: is it reachable, who is still connected,
and how many rows do the restored tables hold. Credentials come from a Secret's values, held
in memory only; connection errors are reported by class, never with the DSN."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import psycopg
from psycopg import sql

from walwarden.runner.contract import OPERATOR_APPLICATION_NAME, RUNNER_APPLICATION_NAME

CONNECT_TIMEOUT = 10
APPLICATION_NAME = OPERATOR_APPLICATION_NAME


class DatabaseError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class Session:
    pid: int
    user: str
    application: str
    client: str

    def describe(self) -> str:
        return f"pid {self.pid} user {self.user} application {self.application or '-'} from {self.client or 'local'}"


def _conninfo(secret: dict[str, str], dbname: str) -> dict[str, str]:
    return {"host": secret["host"], "port": secret.get("port", "5432"), "user": secret["user"],
            "password": secret["password"], "dbname": dbname, "sslmode": secret.get("sslmode") or "prefer",
            "connect_timeout": str(CONNECT_TIMEOUT), "application_name": APPLICATION_NAME}


@contextmanager
def connect(secret: dict[str, str], dbname: str) -> Iterator[psycopg.Connection]:
    try:
        connection = psycopg.connect(**_conninfo(secret, dbname), autocommit=True)
    except psycopg.OperationalError as error:
        text = str(error)
        if "password authentication failed" in text or "no password supplied" in text:
            raise DatabaseError("AuthenticationFailed", f"password authentication failed for user "
                                                        f"{secret.get('user')!r}; check the admin Secret") from None
        if "does not exist" in text and "database" in text:
            raise DatabaseError("DatabaseNotFound", f"database {dbname!r} does not exist on "
                                                    f"{secret.get('host')}") from None
        raise DatabaseError("DatabaseUnreachable", f"cannot connect to {secret.get('host')}:"
                                                   f"{secret.get('port', '5432')}") from None
    try:
        yield connection
    finally:
        connection.close()


def server_version(secret: dict[str, str], dbname: str = "postgres") -> str:
    with connect(secret, dbname) as connection:
        return connection.execute("SHOW server_version").fetchone()[0]


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
            "AND application_name NOT IN (%s, %s) ORDER BY pid", (dbname, APPLICATION_NAME, RUNNER_APPLICATION_NAME)
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
            exists = connection.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
            if exists is None:
                counts[table] = None
                continue
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema or "public", name))
            counts[table] = connection.execute(query).fetchone()[0]
    return counts
