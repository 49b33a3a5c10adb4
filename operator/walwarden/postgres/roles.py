"""Roles, all their SQL in one place: which roles a database needs (the runner records them in the
manifest at backup time), which of them a target server lacks, whether the restore user may create
them, creating them and dropping what a restore created.

What a database needs: the owner of the database and of every object pg_dump writes (schemas,
relations, functions, types, operators, collations, text-search objects, conversions, event
triggers, publications, extended statistics, foreign-data objects, large objects, default
privileges), every grantee and grantor in their ACLs (column ACLs too), the roles of row-level
policies, user mappings and per-database role settings — then, recursively, every role those are
members of. Built-in objects (oid below FirstNormalObjectId) are left out, but for the public
schema's ACL; so are PUBLIC and the predefined pg_* roles (memberships in them included).

A role this module creates carries a comment naming the request (`marker`): a later pass (after an
operator restart) tells the roles it created from those that were there, and the undo drops only
those. Passwords are sent as SCRAM verifiers computed here by libpq (PQencryptPasswordConn): the
server, its log and pg_stat_statements never see one in clear.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from walwarden.api.roles import DatabaseRole, RoleMembership
from walwarden.postgres import DatabaseError, connect, major_version, refused, scalar

MAINTENANCE_DATABASE = "postgres"
FIRST_NORMAL_OID = 16384  # PostgreSQL's FirstNormalObjectId: below it, what initdb made

# (catalog, owner column, ACL column or None) of what pg_dump dumps with an owner.
_OWNED = (
    ("pg_namespace", "nspowner", "nspacl"),
    ("pg_class", "relowner", "relacl"),
    ("pg_proc", "proowner", "proacl"),
    ("pg_type", "typowner", "typacl"),
    ("pg_collation", "collowner", None),
    ("pg_conversion", "conowner", None),
    ("pg_operator", "oprowner", None),
    ("pg_opclass", "opcowner", None),
    ("pg_opfamily", "opfowner", None),
    ("pg_ts_config", "cfgowner", None),
    ("pg_ts_dict", "dictowner", None),
    ("pg_language", "lanowner", "lanacl"),
    ("pg_event_trigger", "evtowner", None),
    ("pg_publication", "pubowner", None),
    ("pg_statistic_ext", "stxowner", None),
    ("pg_foreign_data_wrapper", "fdwowner", "fdwacl"),
    ("pg_foreign_server", "srvowner", "srvacl"),
    ("pg_largeobject_metadata", "lomowner", "lomacl"),
    ("pg_default_acl", "defaclrole", "defaclacl"),
)


def _needed_oids_query() -> sql.Composed:
    normal = sql.Literal(FIRST_NORMAL_OID)
    parts = [
        sql.SQL("SELECT datdba FROM pg_database WHERE datname = current_database()"),
        sql.SQL(
            "SELECT a.grantee FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = current_database() "
            "UNION ALL SELECT a.grantor FROM pg_database d, aclexplode(d.datacl) a "
            "WHERE d.datname = current_database()"
        ),
        # The public schema is initdb's, but pg_dump writes its ACL when it was changed.
        sql.SQL(
            "SELECT a.grantee FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = 'public' "
            "AND a.grantee <> n.nspowner"
        ),
        sql.SQL("SELECT a.grantee FROM pg_attribute t, aclexplode(t.attacl) a WHERE t.attrelid >= {}").format(normal),
        sql.SQL("SELECT unnest(polroles) FROM pg_policy WHERE oid >= {}").format(normal),
        sql.SQL("SELECT umuser FROM pg_user_mapping WHERE oid >= {}").format(normal),
        sql.SQL(
            "SELECT setrole FROM pg_db_role_setting s, pg_database d "
            "WHERE d.datname = current_database() AND s.setdatabase = d.oid"
        ),
    ]
    for catalog, owner, acl in _OWNED:
        table = sql.Identifier(catalog)
        parts.append(sql.SQL("SELECT {} FROM {} WHERE oid >= {}").format(sql.Identifier(owner), table, normal))
        if acl:
            for column in ("grantee", "grantor"):
                parts.append(
                    sql.SQL("SELECT a.{} FROM {} o, aclexplode(o.{}) a WHERE o.oid >= {}").format(
                        sql.Identifier(column), table, sql.Identifier(acl), normal
                    )
                )
    union = sql.SQL(" UNION ").join(parts)
    return sql.SQL(
        "SELECT DISTINCT r.rolname FROM ({}) AS needed(role) JOIN pg_roles r ON r.oid = needed.role "
        "WHERE r.rolname !~ '^pg_' ORDER BY 1"
    ).format(union)


def needed_role_names(connection: psycopg.Connection) -> list[str]:
    """The roles the connection's database names (see the module's docstring); PUBLIC (oid 0) and
    pg_* roles left out. Read in the caller's transaction: in the dump's snapshot, when it is open."""
    return [row[0] for row in connection.execute(_needed_oids_query()).fetchall()]


def describe_roles(connection: psycopg.Connection, names: list[str]) -> list[DatabaseRole]:
    """`names` and every role they are members of (recursively), as the manifest records them."""
    rows = connection.execute(
        "WITH RECURSIVE needed(oid) AS (SELECT oid FROM pg_roles WHERE rolname = ANY(%s) "
        "UNION SELECT m.roleid FROM pg_auth_members m JOIN needed n ON m.member = n.oid) "
        "SELECT r.oid, r.rolname, r.rolsuper, r.rolcanlogin, r.rolinherit, r.rolcreatedb, r.rolcreaterole, "
        "r.rolconnlimit FROM pg_roles r JOIN needed USING (oid) WHERE r.rolname !~ '^pg_' ORDER BY r.rolname",
        (names,),
    ).fetchall()
    memberships: dict[int, list[RoleMembership]] = {}
    for member, role, admin in connection.execute(
        "SELECT m.member, g.rolname, bool_or(m.admin_option) FROM pg_auth_members m "
        "JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = ANY(%s) AND g.rolname !~ '^pg_' "
        "GROUP BY 1, 2 ORDER BY 2",
        ([row[0] for row in rows],),
    ).fetchall():
        memberships.setdefault(member, []).append(RoleMembership(role=role, admin=admin))
    return [
        DatabaseRole(
            name=name,
            superuser=superuser,
            login=login,
            inherit=inherit,
            createdb=createdb,
            createrole=createrole,
            connection_limit=limit,
            member_of=memberships.get(oid, []),
        )
        for oid, name, superuser, login, inherit, createdb, createrole, limit in rows
    ]


# --- the restore's side, on the target server -------------------------------------------------


@dataclass(frozen=True)
class RestoreUser:
    name: str
    superuser: bool
    createrole: bool
    createdb: bool
    server_major: int


def _restore_user(connection: psycopg.Connection) -> RestoreUser:
    major = major_version(str(scalar(connection, "SHOW server_version")))
    row = connection.execute(
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if row is None:
        raise DatabaseError("UnexpectedAnswer", "the restore user is not in pg_roles")
    name, superuser, createrole, createdb = row
    return RestoreUser(name, superuser, createrole, createdb, major[0] if major else 0)


def existing_roles(secret: dict[str, str], names: list[str]) -> set[str]:
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        rows = connection.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (names,)).fetchall()
    return {row[0] for row in rows}


def creation_problems(secret: dict[str, str], missing: list[DatabaseRole]) -> list[str]:
    """What keeps the restore user from creating `missing` with their memberships, in words that
    say what to grant; empty when it may. Missing superuser roles are the caller's refusal."""
    names = {role.name for role in missing}
    parents = sorted({m.role for role in missing for m in role.member_of} - names)
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        user = _restore_user(connection)
        if user.superuser:
            return []
        # Each parent that exists: is it a superuser, and may the restore user grant it (PG16+: ADMIN)?
        rows = connection.execute(
            "SELECT rolname, rolsuper, pg_has_role(current_user, oid, 'MEMBER WITH ADMIN OPTION') "
            "FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1",
            (parents,),
        ).fetchall()
    problems = []
    if not user.createrole:
        problems.append(
            f"CREATEROLE (ALTER ROLE {user.name} CREATEROLE, or on RDS/Azure the admin login): "
            f"to create {', '.join(sorted(names))}"
        )
    if user.server_major >= 16 and not user.createdb:
        with_createdb = sorted(role.name for role in missing if role.createdb)
        if with_createdb:
            problems.append(
                f"CREATEDB (ALTER ROLE {user.name} CREATEDB): on PostgreSQL 16+ a CREATEROLE user gives only "
                f"the attributes it has, and {', '.join(with_createdb)} are recorded with CREATEDB"
            )
    for parent, parent_super, admin in rows:
        if parent_super:
            problems.append(f"superuser: membership in the superuser role {parent} is granted by a superuser only")
        elif user.server_major >= 16 and not admin:
            problems.append(
                f"ADMIN OPTION on {parent} (GRANT {parent} TO {user.name} WITH ADMIN OPTION): on PostgreSQL 16+ "
                "a CREATEROLE user grants memberships only in roles it administers"
            )
    return problems


def marked_roles(secret: dict[str, str], marker: str) -> list[str]:
    """The roles whose comment is `marker`: those created for the request it names."""
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        return sorted(_marked(connection, marker))


def _marked(connection: psycopg.Connection, marker: str) -> set[str]:
    rows = connection.execute(
        "SELECT rolname FROM pg_roles WHERE shobj_description(oid, 'pg_authid') = %s", (marker,)
    ).fetchall()
    return {row[0] for row in rows}


def create_roles(
    secret: dict[str, str], roles: list[DatabaseRole], passwords: dict[str, str], marker: str
) -> list[str]:
    """Create those of `roles` that do not exist (each marked with `marker`, a LOGIN role with its
    password from `passwords` when it has one), then grant every recorded membership of the roles
    so marked; a restore user that is no superuser is made a member of each (SET, not INHERIT on
    PostgreSQL 16+) so pg_restore may give them its objects. Idempotent: returns the marked roles."""
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        user = _restore_user(connection)
        present = {row[0] for row in connection.execute("SELECT rolname FROM pg_roles").fetchall()}
        for role in roles:
            if role.name in present:
                continue
            try:
                with connection.transaction():
                    connection.execute(_create_statement(connection, role, passwords.get(role.name)))
                    connection.execute(
                        sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role.name), sql.Literal(marker))
                    )
            except pg_errors.DuplicateObject:
                pass  # created by someone else just now: it is not ours
            except psycopg.Error as error:
                raise refused(error, f"creating the role {role.name}") from None
        marked = _marked(connection, marker)
        for role in roles:
            if role.name not in marked:
                continue
            grants = [
                sql.SQL("GRANT {} TO {}{}").format(
                    sql.Identifier(membership.role),
                    sql.Identifier(role.name),
                    sql.SQL(" WITH ADMIN OPTION") if membership.admin else sql.SQL(""),
                )
                for membership in role.member_of
            ]
            if not user.superuser:
                grants.append(
                    sql.SQL("GRANT {} TO {}{}").format(
                        sql.Identifier(role.name),
                        sql.Identifier(user.name),
                        sql.SQL(" WITH INHERIT FALSE, SET TRUE") if user.server_major >= 16 else sql.SQL(""),
                    )
                )
            for grant in grants:
                try:
                    connection.execute(grant)
                except psycopg.Error as error:
                    raise refused(error, f"granting the memberships of {role.name}") from None
    return sorted(marked)


def _create_statement(connection: psycopg.Connection, role: DatabaseRole, password: str | None) -> sql.Composed:
    def flag(value: bool, name: str) -> sql.SQL:
        return sql.SQL(name if value else f"NO{name}")

    options = [
        flag(role.login, "LOGIN"),
        flag(role.inherit, "INHERIT"),
        flag(role.createdb, "CREATEDB"),
        flag(role.createrole, "CREATEROLE"),
        sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(role.connection_limit)),
    ]
    if password is not None and role.login:
        # CREATE ROLE takes no bind parameter: the verifier goes in as a literal, never the password.
        verifier = connection.pgconn.encrypt_password(password.encode(), role.name.encode(), b"scram-sha-256")
        options.append(sql.SQL("PASSWORD {}").format(sql.Literal(verifier.decode())))
    return sql.SQL("CREATE ROLE {} WITH ").format(sql.Identifier(role.name)) + sql.SQL(" ").join(options)


def drop_marked_roles(secret: dict[str, str], names: list[str], marker: str) -> tuple[list[str], dict[str, str]]:
    """Drop those of `names` that still carry `marker` (never another role); returns the dropped
    ones and, for each left, the server's reason (it still owns or is granted something)."""
    dropped, left = [], {}
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        ours = _marked(connection, marker)
        pending = [name for name in names if name in ours]
        # A role granted to another of ours is dropped with its grants: any order works, but a
        # dependent one may refuse until the others are gone, so go round while something drops.
        while pending:
            refused = {}
            for name in pending:
                try:
                    connection.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
                    dropped.append(name)
                except psycopg.Error as error:
                    refused[name] = (error.diag.message_primary or str(error)).strip()
            if len(refused) == len(pending):
                left = refused
                break
            pending = list(refused)
    return dropped, left


def create_reader(secret: dict[str, str], name: str, password: str, database: str, marker: str) -> None:
    """A LOGIN role (marked with `marker`) that may read every table and sequence of `database`
    and nothing else: no superuser, no CREATEDB/CREATEROLE, no memberships. What a drill's checks
    run as, never the admin login (a check's SQL is the request author's, not the operator's).
    Idempotent: an existing role of that name gets the password again, if it carries the marker."""
    with connect(secret, MAINTENANCE_DATABASE) as connection:
        verifier = connection.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256").decode()
        role = sql.Identifier(name)
        exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None
        if exists and name not in _marked(connection, marker):
            raise DatabaseError("RoleExists", f"the role {name} exists and was not made by this drill: drop it")
        statements = [
            sql.SQL(
                "{} ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                "NOINHERIT CONNECTION LIMIT 4 PASSWORD {}"
            ).format(sql.SQL("ALTER" if exists else "CREATE"), role, sql.Literal(verifier)),
            sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(marker)),
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role),
        ]
        for statement in statements:
            try:
                connection.execute(statement)
            except psycopg.Error as error:
                raise refused(error, f"creating the reading role {name}") from None
    with connect(secret, database) as connection:
        schemas = [
            row[0]
            for row in connection.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND nspname NOT LIKE 'pg_toast%%' AND nspname NOT LIKE 'pg_temp%%'"
            ).fetchall()
        ]
        for schema in schemas:
            for grant in (
                "GRANT USAGE ON SCHEMA {} TO {}",
                "GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}",
                "GRANT SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}",
            ):
                try:
                    connection.execute(sql.SQL(grant).format(sql.Identifier(schema), role))
                except psycopg.Error as error:
                    raise refused(error, f"letting {name} read the schema {schema}") from None
