"""Roles (postgres/roles.py) against the real PostgreSQL: what a backup records of the roles its
database needs, and what a restore user that is no superuser, only CREATEROLE, creates from it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from devstack import vaultdb
from walwarden.api.roles import DatabaseRole, RoleMembership
from walwarden.postgres import roles

pytestmark = pytest.mark.integration


@pytest.fixture
def names(postgres_server) -> Iterator[dict[str, str]]:
    """Unique role names for this test (roles are the server's, not a database's), dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    made = {kind: f"{kind}_{suffix}" for kind in ("owners", "app", "reader", "restorer", "other")}
    yield made
    with postgres_server.connect() as connection:
        for name in reversed(made.values()):
            connection.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def execute(postgres_server, dbname: str, *statements: str, **names: str) -> None:
    with postgres_server.connect(dbname) as connection:
        for statement in statements:
            connection.execute(
                sql.SQL(statement).format(**{key: sql.Identifier(value) for key, value in names.items()})
            )


def test_the_backup_records_the_application_role_its_grantee_and_what_they_are_members_of(
    postgres_server, names, vault_db
):  # names before vault_db: the roles are dropped after the database that names them
    execute(
        postgres_server,
        vault_db.name,
        "CREATE ROLE {owners} NOLOGIN NOINHERIT",
        "CREATE ROLE {app} LOGIN CREATEDB CONNECTION LIMIT 7 PASSWORD 'never recorded'",
        "GRANT {owners} TO {app} WITH ADMIN OPTION",
        "CREATE ROLE {reader} NOLOGIN",
        "CREATE ROLE {other} NOLOGIN",  # named by nothing in the database: not recorded
        "GRANT SELECT ON accounts TO {reader}",
        "GRANT pg_read_all_stats TO {app}",  # predefined roles are never recorded
        **names,
    )
    vaultdb.give_to(postgres_server.dsn(vault_db.name), names["app"])
    with postgres_server.connect(vault_db.name) as connection:
        needed = roles.needed_role_names(connection)
        recorded = {role.name: role for role in roles.describe_roles(connection, needed)}
    assert {names["app"], names["reader"], postgres_server.superuser} <= set(needed)
    assert names["owners"] not in needed and names["other"] not in needed  # a member's parent is added next
    assert not any(name.startswith("pg_") for name in needed)
    assert set(recorded) == {names["app"], names["reader"], names["owners"], postgres_server.superuser}
    assert recorded[names["app"]] == DatabaseRole(
        name=names["app"],
        login=True,
        createdb=True,
        connection_limit=7,
        member_of=[RoleMembership(role=names["owners"], admin=True)],
    )
    assert recorded[names["owners"]] == DatabaseRole(name=names["owners"], inherit=False)
    assert recorded[postgres_server.superuser].superuser
    assert "password" not in recorded[names["app"]].model_dump_json().lower()


@pytest.fixture
def restorer(postgres_server, names) -> dict[str, str]:
    """The admin Secret's values of a restore user as a managed server gives one: CREATEROLE, CREATEDB,
    no superuser; its statements are logged (log_statement all), to show what reaches the server."""
    postgres_server.create_role(names["restorer"], "restorer-password")
    execute(
        postgres_server,
        "postgres",
        "ALTER ROLE {restorer} NOSUPERUSER CREATEROLE CREATEDB",
        "ALTER ROLE {restorer} SET log_statement = 'all'",
        **names,
    )
    return {
        "host": postgres_server.host,
        "port": str(postgres_server.port),
        "user": names["restorer"],
        "password": "restorer-password",
        "sslmode": "disable",
    }


def test_a_createrole_user_creates_the_missing_roles_with_memberships_and_drops_only_its_own(
    postgres_server, restorer, names
):
    execute(postgres_server, "postgres", "CREATE ROLE {other} NOLOGIN", **names)  # there before: never dropped
    recorded = [
        DatabaseRole(name=names["owners"], inherit=False),
        DatabaseRole(
            name=names["app"],
            login=True,
            connection_limit=5,
            member_of=[RoleMembership(role=names["owners"]), RoleMembership(role=names["other"])],
        ),
        DatabaseRole(name=names["reader"], login=True),  # LOGIN, no known password
        DatabaseRole(name=names["other"]),
    ]
    marker = f"walwarden: created for RestoreRequest ns/r ({uuid.uuid4()})"
    missing_names = {names["owners"], names["app"], names["reader"]}
    assert roles.existing_roles(restorer, [r.name for r in recorded]) == {names["other"]}
    missing = [role for role in recorded if role.name in missing_names]
    assert roles.creation_problems(restorer, missing) == []

    created = roles.create_roles(restorer, recorded, {names["app"]: "app-password"}, marker)
    assert created == sorted(missing_names)
    assert roles.create_roles(restorer, recorded, {names["app"]: "app-password"}, marker) == created  # again: same
    assert roles.marked_roles(restorer, marker) == created

    with psycopg.connect(postgres_server.dsn(user=names["app"], password="app-password")) as app:
        member_of = {
            row[0]
            for row in app.execute(
                "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = current_user"
            )
        }
        limit = app.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    assert member_of == {names["owners"], names["other"]} and limit == 5
    with pytest.raises(psycopg.OperationalError):  # LOGIN without a password: no password login works
        psycopg.connect(postgres_server.dsn(user=names["reader"], password="anything")).close()
    log = postgres_server.log_file.read_text(errors="replace")
    assert "CREATE ROLE" in log and "SCRAM-SHA-256$" in log  # the statements were logged...
    assert "app-password" not in log  # ...with the verifier, never the password

    dropped, left = roles.drop_marked_roles(restorer, [*created, names["other"]], marker)
    assert sorted(dropped) == created and left == {}
    assert roles.existing_roles(restorer, [r.name for r in recorded]) == {names["other"]}


def test_what_a_restore_user_lacks_to_create_roles_is_named(postgres_server, restorer, names):
    execute(postgres_server, "postgres", "ALTER ROLE {restorer} NOCREATEROLE", **names)
    missing = [DatabaseRole(name=names["app"], login=True, member_of=[RoleMembership(role=postgres_server.superuser)])]
    problems = roles.creation_problems(restorer, missing)
    assert any(p.startswith("CREATEROLE") and names["app"] in p for p in problems), problems
    assert any(f"superuser role {postgres_server.superuser}" in p for p in problems), problems
