"""Database-level operations of a Switch restore, on the target server: a sibling made the way the
original is (owner, encoding, locale, tablespace, connection limit) with what pg_dump keeps only for
--create (comment, ACL, `ALTER DATABASE ... SET` and `ALTER ROLE ... IN DATABASE ... SET`); which
databases exist and accept connections; renames, connection switches and drops; and whether the
restore user may do all that.

Every statement runs on the maintenance database `postgres` (a database cannot be renamed or dropped
from a session on it). Names come from the operator, and go through sql.Identifier all the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from walwarden.postgres import DatabaseError, connect, major_version, refused, scalar

MAINTENANCE_DATABASE = "postgres"
TERMINATE_WAIT_MS = 5000  # pg_terminate_backend(pid, timeout): wait for the backend to be gone


@dataclass(frozen=True)
class DatabaseState:
    name: str
    exists: bool
    allows_connections: bool = False


@dataclass(frozen=True)
class RoleSetting:
    role: str | None  # None: ALTER DATABASE ... SET; else ALTER ROLE role IN DATABASE ... SET
    setting: str  # "name=value" as pg_db_role_setting stores it


@dataclass(frozen=True)
class Grant:
    grantee: str | None  # None: PUBLIC
    privilege: str  # CONNECT, CREATE, TEMPORARY
    grantable: bool


@dataclass(frozen=True)
class DatabaseProperties:
    """What makes a database this database, apart from its contents."""

    owner: str
    encoding: str
    collate: str
    ctype: str
    locale_provider: str | None = None  # "libc" / "icu" (PostgreSQL 15+)
    icu_locale: str | None = None
    icu_rules: str | None = None  # PostgreSQL 16+
    tablespace: str = "pg_default"
    connection_limit: int = -1
    comment: str | None = None
    acl: tuple[Grant, ...] | None = None  # None: the default ACL
    settings: tuple[RoleSetting, ...] = field(default_factory=tuple)

    def create_statement(self, name: str) -> sql.Composed:
        options = [
            sql.SQL("OWNER = {}").format(sql.Identifier(self.owner)),
            sql.SQL("TEMPLATE = template0"),
            sql.SQL("ENCODING = {}").format(sql.Literal(self.encoding)),
            sql.SQL("LC_COLLATE = {}").format(sql.Literal(self.collate)),
            sql.SQL("LC_CTYPE = {}").format(sql.Literal(self.ctype)),
            sql.SQL("TABLESPACE = {}").format(sql.Identifier(self.tablespace)),
            sql.SQL("CONNECTION LIMIT = {}").format(sql.Literal(self.connection_limit)),
        ]
        if self.locale_provider:
            options.append(sql.SQL("LOCALE_PROVIDER = {}").format(sql.Identifier(self.locale_provider)))
        if self.icu_locale:
            options.append(sql.SQL("ICU_LOCALE = {}").format(sql.Literal(self.icu_locale)))
        if self.icu_rules:
            options.append(sql.SQL("ICU_RULES = {}").format(sql.Literal(self.icu_rules)))
        return sql.SQL("CREATE DATABASE {} WITH ").format(sql.Identifier(name)) + sql.SQL(" ").join(options)

    def carry_statements(self, name: str) -> list[sql.Composed]:
        """What pg_dump --create would add after CREATE DATABASE; each may run again harmlessly."""
        target = sql.Identifier(name)
        statements = [
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                target, sql.Literal(self.comment) if self.comment is not None else sql.SQL("NULL")
            )
        ]
        if self.acl is not None:
            statements.append(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(target))
            statements.append(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(target, sql.Identifier(self.owner)))
            for grant in self.acl:
                statements.append(
                    sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                        sql.SQL(grant.privilege),
                        target,
                        sql.Identifier(grant.grantee) if grant.grantee else sql.SQL("PUBLIC"),
                        sql.SQL(" WITH GRANT OPTION") if grant.grantable and grant.grantee else sql.SQL(""),
                    )
                )
        for setting in self.settings:
            key, _, value = setting.setting.partition("=")
            set_clause = sql.SQL("SET {} = {}").format(sql.Identifier(key), sql.Literal(value))
            if setting.role is None:
                statements.append(sql.SQL("ALTER DATABASE {} ").format(target) + set_clause)
            else:
                statements.append(
                    sql.SQL("ALTER ROLE {} IN DATABASE {} ").format(sql.Identifier(setting.role), target) + set_clause
                )
        return statements


def _server_major(connection: psycopg.Connection) -> int:
    version = major_version(str(scalar(connection, "SHOW server_version")))
    return version[0] if version else 0


def read_properties(secret: dict[str, str], dbname: str) -> DatabaseProperties:
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        major = _server_major(connection)
        icu = {17: "d.datlocale"}.get(major, "d.daticulocale") if major >= 15 else "NULL"
        row = connection.execute(
            sql.SQL(
                "SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, "
                "{provider}, {icu}, {rules}, t.spcname, d.datconnlimit, "
                "shobj_description(d.oid, 'pg_database'), d.datacl IS NULL, d.oid "
                "FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %s"
            ).format(
                provider=sql.SQL(
                    "CASE d.datlocprovider WHEN 'i' THEN 'icu' WHEN 'b' THEN 'builtin' ELSE 'libc' END"
                    if major >= 15
                    else "NULL"
                ),
                icu=sql.SQL(icu),
                rules=sql.SQL("d.daticurules" if major >= 16 else "NULL"),
            ),
            (dbname,),
        ).fetchone()
        if row is None:
            raise DatabaseError("DatabaseNotFound", f"database {dbname!r} does not exist")
        oid = row[11]
        acl = None
        if not row[10]:
            acl = tuple(
                Grant(grantee, privilege, grantable)
                for grantee, privilege, grantable in connection.execute(
                    "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, "
                    "a.privilege_type, a.is_grantable FROM pg_database d, aclexplode(d.datacl) a "
                    "WHERE d.oid = %s ORDER BY 1 NULLS FIRST, 2",
                    (oid,),
                ).fetchall()
            )
        settings = tuple(
            RoleSetting(role, setting)
            for role, config in connection.execute(
                "SELECT CASE WHEN setrole = 0 THEN NULL ELSE pg_get_userbyid(setrole) END, setconfig "
                "FROM pg_db_role_setting WHERE setdatabase = %s ORDER BY 1 NULLS FIRST",
                (oid,),
            ).fetchall()
            for setting in config
        )
    return DatabaseProperties(
        owner=row[0],
        encoding=row[1],
        collate=row[2],
        ctype=row[3],
        locale_provider=row[4],
        icu_locale=row[5],
        icu_rules=row[6],
        tablespace=row[7],
        connection_limit=row[8],
        comment=row[9],
        acl=acl,
        settings=settings,
    )


def create_like(secret: dict[str, str], name: str, properties: DatabaseProperties) -> None:
    """CREATE DATABASE `name` made as `properties` say, with what pg_dump --create would carry."""
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        try:
            connection.execute(properties.create_statement(name))
        except pg_errors.DuplicateDatabase:
            pass  # created by an earlier pass: the carried properties below are set again
        except psycopg.Error as error:
            raise refused(error, f"creating the database {name!r}") from None
        for statement in properties.carry_statements(name):
            try:
                connection.execute(statement)
            except psycopg.Error as error:
                raise refused(error, f"carrying the database properties to {name!r}") from None


def states(secret: dict[str, str], names: list[str]) -> dict[str, DatabaseState]:
    """Which of `names` exist on the server, and which accept connections."""
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        rows = dict(
            connection.execute(
                "SELECT datname, datallowconn FROM pg_database WHERE datname = ANY(%s)", (names,)
            ).fetchall()
        )
    return {name: DatabaseState(name, name in rows, bool(rows.get(name))) for name in names}


def allow_connections(secret: dict[str, str], name: str, allowed: bool) -> None:
    _alter(
        secret,
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if allowed else "false")
        ),
        f"{'allowing' if allowed else 'refusing'} connections to {name!r}",
    )


def terminate_all_sessions(secret: dict[str, str], names: list[str]) -> int:
    """End every other session on `names` (waiting for each to be gone); how many there were."""
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        pids = [
            pid
            for (pid,) in connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()", (names,)
            ).fetchall()
        ]
        for pid in pids:
            try:
                connection.execute("SELECT pg_terminate_backend(%s, %s)", (pid, TERMINATE_WAIT_MS))
            except psycopg.Error as error:
                raise refused(error, f"terminating session {pid}") from None
    return len(pids)


class DatabaseInUse(DatabaseError):
    """A session reached the database between the termination and the statement: try again."""


def rename(secret: dict[str, str], old: str, new: str) -> None:
    _alter(
        secret,
        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)),
        f"renaming {old!r} to {new!r}",
    )


def drop(secret: dict[str, str], name: str) -> None:
    _alter(
        secret, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)), f"dropping {name!r}"
    )


def size_bytes(secret: dict[str, str], name: str) -> int | None:
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        row = connection.execute(
            "SELECT pg_database_size(datname) FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else None


def has_objects(secret: dict[str, str], name: str) -> list[str]:
    """A few of the tables, views and sequences outside the system schemas of `name` (empty: none)."""
    with connect(secret, name) as connection:
        rows = connection.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname NOT IN ('pg_catalog', "
            "'information_schema') AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%' "
            "ORDER BY 1 LIMIT 5"
        ).fetchall()
    return [row[0] for row in rows]


def missing_switch_privileges(secret: dict[str, str], name: str) -> list[str]:
    """What the restore user lacks to build a sibling of `name` and switch it in, in words that say
    what to grant; empty when it may. A superuser may everything."""
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        major = _server_major(connection)
        row = connection.execute(
            "SELECT r.rolname, r.rolsuper, r.rolcreatedb, pg_get_userbyid(d.datdba), "
            "pg_has_role(r.oid, d.datdba, 'USAGE'), pg_has_role(r.oid, d.datdba, %s), "
            "pg_has_role(r.oid, 'pg_signal_backend', 'USAGE') "
            "FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = %s",
            ("SET" if major >= 16 else "MEMBER", name),
        ).fetchone()
    if row is None:
        return [f"the database {name!r} does not exist"]
    user, superuser, createdb, owner, owns, may_become, may_signal = row
    if superuser:
        return []
    missing = []
    if not createdb:
        missing.append(f"CREATEDB (ALTER ROLE {user} CREATEDB): to create the new database and rename")
    if not owns:
        missing.append(f"ownership of {name!r} (GRANT {owner} TO {user}): to rename it and refuse connections")
    if not may_become:
        missing.append(f"membership in {owner} (GRANT {owner} TO {user}): to create the new database owned by it")
    if not may_signal:
        missing.append(f"pg_signal_backend (GRANT pg_signal_backend TO {user}): to end the sessions left on it")
    return missing


def _alter(secret: dict[str, str], statement: sql.Composed, doing: str) -> None:
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        try:
            connection.execute(statement)
        except pg_errors.ObjectInUse:
            raise DatabaseInUse("DatabaseInUse", f"{doing}: a session is still on it") from None
        except psycopg.Error as error:
            raise refused(error, doing) from None


def create_marked(secret: dict[str, str], name: str, marker: str, staging: str) -> None:
    """Database `name`, with `marker` as its comment: what says later that it is ours to drop
    (pg_restore without --create never sets a database comment). Made as `staging` (a name only
    this request uses), marked, then renamed: under `name` it never exists without its marker, and
    a database of that name that appeared meanwhile (another drill) is refused, never taken over."""
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        found = dict(
            connection.execute(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = ANY(%s)",
                ([name, staging],),
            ).fetchall()
        )
        if name in found:
            if found[name] == marker:
                return  # made by an earlier pass whose record was lost
            raise DatabaseError(
                "ScratchDatabaseExists", f"the database {name!r} appeared meanwhile, not made by this drill"
            )
        statements = [
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(staging), sql.Literal(marker)),
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(staging), sql.Identifier(name)),
        ]
        if staging not in found:
            statements.insert(0, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(staging)))
        for statement in statements:
            try:
                connection.execute(statement)
            except pg_errors.DuplicateDatabase:
                raise DatabaseError(
                    "ScratchDatabaseExists", f"the database {name!r} appeared meanwhile, not made by this drill"
                ) from None
            except psycopg.Error as error:
                raise refused(error, f"creating the database {name!r}") from None


def comment_of(secret: dict[str, str], name: str) -> str | None:
    """The comment of database `name`; None when it has none. DatabaseNotFound when it does not exist."""
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        row = connection.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    if row is None:
        raise DatabaseError("DatabaseNotFound", f"the database {name!r} does not exist")
    return row[0]


def missing_drill_privileges(secret: dict[str, str], needs_login: bool) -> list[str]:
    """What the admin user lacks to make a drill's scratch database (and, with `needs_login`, the
    checks' reading login), in words that say what to grant; empty when it may. A superuser may."""
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        row = connection.execute(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    if row is None or row[1]:
        return []
    user, _, createdb, createrole = row
    missing = [] if createdb else [f"CREATEDB (ALTER ROLE {user} CREATEDB): to create the scratch database"]
    if needs_login and not createrole:
        missing.append(f"CREATEROLE (ALTER ROLE {user} CREATEROLE): to make the login the checks run as")
    return missing
