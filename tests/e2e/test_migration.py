"""A migration onto a freshly installed PostgreSQL server (issue 11): the backup records the roles
its database needs, and a Redirected restore onto a server that lacks them creates them
(spec.target.roles CreateMissing) or is refused in Preflight with every service untouched (Require).

Two real servers: the vault's (postgres_server) and a fresh one (fresh_postgres_server), whose
only role is its superuser. The vault's tables are owned by an application role made here."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from psycopg import sql

from devstack import vaultdb
from devstack.observe import PodObserver
from devstack.vault import ready_replicas
from tests.e2e.vaults import DB_SERVICES, ENVIRONMENT, STOP_TIERS, Vault, account_names

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class AppRoles:
    app: str  # LOGIN, owns the vault's tables, member of owners
    owners: str  # NOLOGIN
    database: str  # the database the restore makes on the fresh server


@pytest.fixture
def app_roles(postgres_server, fresh_postgres_server) -> Iterator[AppRoles]:
    """Roles unique to the test on the vault's server (both servers are the session's); afterwards
    the restored database and the roles are dropped from both. Request it before `vault`: its
    clean-up then runs after the vault's database is gone."""
    suffix = uuid.uuid4().hex[:8]
    roles = AppRoles(f"vault_app_{suffix}", f"vault_owners_{suffix}", f"migrated_{suffix}")
    with postgres_server.connect() as connection:
        connection.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(roles.owners)))
        connection.execute(
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(roles.app), sql.Identifier(roles.owners))
        )
    yield roles
    fresh_postgres_server.drop_database(roles.database)
    for server in (postgres_server, fresh_postgres_server):
        with server.connect() as connection:
            for name in (roles.app, roles.owners):
                connection.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def migration(vault: Vault, fresh, name: str, database: str, roles: str) -> dict:
    vault.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "fresh-db-admin"},
            "stringData": {
                "host": "127.0.0.1",
                "port": str(fresh.port),
                "user": fresh.superuser,
                "password": fresh.password,
                "sslmode": "disable",
            },
        }
    )
    return vault.restore_request(
        name,
        mode="Redirected",
        target={"secretRef": {"name": "fresh-db-admin"}, "database": database, "roles": roles},
        redirect={"dbHost": "127.0.0.1", "dbPort": fresh.port, "dbName": database, "environment": ENVIRONMENT},
    )


def roles_on(server, *names: str) -> set[str]:
    with server.connect() as connection:
        rows = connection.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(names),)).fetchall()
    return {row[0] for row in rows}


def test_a_migration_onto_a_fresh_server_creates_the_roles_the_backup_records(app_roles, vault, fresh_postgres_server):
    vaultdb.give_to(vault.postgres.dsn(vault.database), app_roles.app)
    vault.backup()
    original = account_names(vault.postgres.dsn(vault.database))
    assert roles_on(fresh_postgres_server, app_roles.app, app_roles.owners) == set()  # nobody made them by hand
    vault.apply(migration(vault, fresh_postgres_server, "migrate", app_roles.database, "CreateMissing"))
    restore = vault.wait_finished("restorerequests", "migrate")
    status = restore["status"]
    assert status["phase"] == "Succeeded", vault.describe("restorerequests", "migrate")
    assert status["createdRoles"] == sorted([app_roles.app, app_roles.owners])
    build = next(step for step in status["steps"] if step["name"] == "Build")["message"]
    assert f"created the role(s) {', '.join(sorted([app_roles.app, app_roles.owners]))} first" in build
    with fresh_postgres_server.connect(app_roles.database) as connection:
        owners = {row[0] for row in connection.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        member_of = connection.execute(
            "SELECT pg_has_role(%s, %s, 'MEMBER'), rolcanlogin FROM pg_roles WHERE rolname = %s",
            (app_roles.app, app_roles.owners, app_roles.app),
        ).fetchone()
    assert owners == {app_roles.app}  # the restored tables are the application role's there too
    assert member_of == (True, True)
    for service in DB_SERVICES:
        assert base64.b64decode(vault.db_info(service)["DB_PORT"]).decode() == str(fresh_postgres_server.port)
    restored = account_names(fresh_postgres_server.dsn(app_roles.database))
    assert restored == original
    served = [a["name"] for a in vault.wallet_accounts()]
    assert served and served == restored[: len(served)]


def test_a_migration_onto_a_server_without_the_roles_is_refused_in_preflight_by_default(
    app_roles, vault, fresh_postgres_server
):
    vaultdb.give_to(vault.postgres.dsn(vault.database), app_roles.app)
    vault.backup()
    secrets = {service: vault.db_info(service) for service in DB_SERVICES}
    with PodObserver(vault.cluster, vault.namespace) as observer:
        vault.apply(migration(vault, fresh_postgres_server, "refused", app_roles.database, "Require"))
        restore = vault.wait_finished("restorerequests", "refused")
    status = restore["status"]
    assert status["phase"] == "Failed" and status["currentStep"] == "Preflight", vault.describe(
        "restorerequests", "refused"
    )
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Failed"] == ["RolesMissing"]
    assert f"{app_roles.app} (LOGIN, member of {app_roles.owners})" in status["message"]
    assert f"{app_roles.owners} (NOLOGIN)" in status["message"] and "CreateMissing" in status["message"]
    assert not observer.times("deleted", sum(STOP_TIERS, []))
    assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas
    assert {service: vault.db_info(service) for service in DB_SERVICES} == secrets
    assert roles_on(fresh_postgres_server, app_roles.app, app_roles.owners) == set()
    with fresh_postgres_server.connect() as connection:
        made = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (app_roles.database,)).fetchone()
    assert made is None
