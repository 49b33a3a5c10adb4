"""A migration onto a freshly installed PostgreSQL server (issue 11): the backup records the roles
its database needs, and a Redirected restore onto a server that lacks them creates them
(spec.target.roles CreateMissing) or is refused in Preflight with every service untouched (Require).

Two real servers: the vault's (postgres_server) and a fresh one (fresh_postgres_server), whose
only role is its superuser. The vault's tables are owned by an application role made here. The
whole staging → prod migration runs across two namespaces, each with its operator and vault."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from psycopg import sql

from devstack import vaultdb
from devstack.observe import PodObserver
from devstack.operator_process import OperatorProcess
from devstack.pytest_kube import fresh_namespace
from devstack.vault import ready_replicas
from tests.e2e.vaults import DB_SERVICES, ENVIRONMENT, STOP_TIERS, Vault, account_names, deploy_stand_in_vault
from walwarden.api.restore import RESTORE_CREDENTIALS_LABEL
from walwarden.security import origin

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
    vault.admin_secret("fresh-db-admin", server=fresh)
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


@pytest.fixture
def prod(vault, cluster, postgres_server, s3_server, s3_bucket, tmp_path) -> Iterator[Vault]:
    """A second environment: namespace t-prod-..., its own operator and stand-in vault, running on
    a database of its own (older data) on the first server. `vault` is staging."""
    prod_db = f"prodvault_{uuid.uuid4().hex[:8]}"
    postgres_server.create_database(prod_db)
    vaultdb.generate(postgres_server.dsn(prod_db), accounts=50, seed=7)
    with fresh_namespace(cluster, "t-prod") as prod_namespace:
        # Prod may restore staging's signed backups: its operator's configuration says so.
        sources = json.dumps({prod_namespace: [vault.namespace]})
        env = {"WALWARDEN_POLL_SECONDS": "1", "WALWARDEN_ARTIFACT_SOURCE_NAMESPACES": sources}
        operator = OperatorProcess(cluster, prod_namespace, tmp_path / "operator-prod.log", env).start()
        try:
            yield deploy_stand_in_vault(
                cluster, prod_namespace, operator, postgres_server, s3_server, s3_bucket, _Database(prod_db)
            )
        finally:
            operator.stop()
            postgres_server.drop_database(prod_db)


@dataclass(frozen=True)
class _Database:
    name: str


def apply_secret(vault: Vault, name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> None:
    metadata = {"name": name, "labels": labels or {}}
    vault.apply({"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "stringData": data})


def test_staging_to_prod_onto_a_fresh_server_needs_no_role_created_by_hand(
    app_roles, vault, prod, fresh_postgres_server
):
    """The issue's whole migration: a backup in namespace A (staging), signed with staging's origin
    key; a Redirected restore by artifact URI in namespace B (prod), which trusts that key, onto a
    fresh server that has none of the vault's roles; prod's services log in there as the
    application role with prod's own password (spec.redirect.credentials)."""
    staging, fresh = vault, fresh_postgres_server
    vaultdb.give_to(staging.postgres.dsn(staging.database), app_roles.app)
    key = origin.generate_private_key()
    apply_secret(staging, "origin-key", {"privateKey": origin.private_key_pem(key)})
    artifact = staging.backup(originSigningKey={"name": "origin-key"})["status"]["artifact"]
    staging_accounts = account_names(staging.postgres.dsn(staging.database))
    assert roles_on(fresh, app_roles.app, app_roles.owners) == set()  # nobody made them by hand
    prod.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "trusted-keys"},
            "data": {"staging.pub": origin.public_key_pem(key.public_key())},
        }
    )
    prod_password = "prod-" + uuid.uuid4().hex
    login = {"DB_USER": app_roles.app, "DB_PASSWORD": prod_password}
    apply_secret(prod, "app-login", login, labels={RESTORE_CREDENTIALS_LABEL: "true"})  # prod's admins allow it
    request = migration(prod, fresh, "staging-to-prod", app_roles.database, "CreateMissing")
    request["spec"]["source"] = {"artifact": artifact["uri"], "trustedKeys": {"name": "trusted-keys"}}
    request["spec"]["storage"] = prod.storage()
    request["spec"]["redirect"]["credentials"] = [
        {"service": service, "secretRef": {"name": "app-login"}} for service in DB_SERVICES
    ]
    prod.apply(request)
    status = prod.wait_finished("restorerequests", "staging-to-prod", timeout=400)["status"]
    assert status["phase"] == "Succeeded", prod.describe("restorerequests", "staging-to-prod")
    assert status["origin"]["entry"] == "staging.pub"
    assert status["createdRoles"] == sorted([app_roles.app, app_roles.owners])
    build = next(step for step in status["steps"] if step["name"] == "Build")["message"]
    assert f"created the role(s) {', '.join(sorted([app_roles.app, app_roles.owners]))} first" in build
    preflight = next(step for step in status["steps"] if step["name"] == "Preflight")["message"]
    assert "log in as role(s) the restore creates for them" in preflight
    with fresh.connect(app_roles.database) as connection:
        owners = {row[0] for row in connection.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        member_of = connection.execute(
            "SELECT pg_has_role(%s, %s, 'MEMBER'), rolcanlogin FROM pg_roles WHERE rolname = %s",
            (app_roles.app, app_roles.owners, app_roles.app),
        ).fetchone()
    assert owners == {app_roles.app}  # the restored tables are the application role's there too
    assert member_of == (True, True)
    # prod's services run on the fresh server as the application role, on staging's data.
    for service in DB_SERVICES:
        info = {key: base64.b64decode(value).decode() for key, value in prod.db_info(service).items()}
        assert (info["DB_PORT"], info["DB_NAME"], info["DB_USER"]) == (
            str(fresh.port),
            app_roles.database,
            app_roles.app,
        )
    assert account_names(fresh.dsn(app_roles.database)) == staging_accounts
    served = [a["name"] for a in prod.wallet_accounts()]
    assert served and served == staging_accounts[: len(served)]
    assert ready_replicas(staging.cluster, staging.namespace) == staging.replicas  # staging untouched


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
