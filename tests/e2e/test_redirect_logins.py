"""A Redirected restore proves every service's login on the new database before anything stops
(issue 11 item 1), and can give services new credentials from Secrets (item 3): real local stack,
two real PostgreSQL servers (the vault's and a fresh one to move to), the logins tried by a
runner Job in the vault's namespace."""

from __future__ import annotations

import base64
import uuid

import pytest

from devstack.vault import ready_replicas
from tests.e2e.vaults import DB_SERVICES, Vault, account_names, server_databases
from walwarden.api.restore import RESTORE_CREDENTIALS_LABEL

pytestmark = pytest.mark.integration


def failure(status: dict) -> tuple[str, str]:
    [condition] = [c for c in status["conditions"] if c["type"] == "Failed"]
    return condition["reason"], condition["message"]


def assert_untouched(vault: Vault, db_info_before: dict, status: dict) -> None:
    """Refused in Preflight: no service was stopped, no db-info secret changed, nothing built."""
    assert status["phase"] == "Failed", status
    ran = [s["name"] for s in status["steps"] if s.get("state") not in (None, "Pending", "Skipped")]
    assert "ScaleDown" not in ran and "Build" not in ran, ran
    assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas
    assert {service: vault.db_info(service) for service in DB_SERVICES} == db_info_before
    assert all(not name.endswith("_prod") for name in server_databases(vault))


def login_secret(vault: Vault, name: str, user: str, password: str) -> None:
    """A service's new login, labelled for that use by whoever may write the namespace's Secrets."""
    vault.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "labels": {RESTORE_CREDENTIALS_LABEL: "true"}},
            "stringData": {"DB_USER": user, "DB_PASSWORD": password},
        }
    )


@pytest.fixture
def prod_role(vault, fresh_postgres_server):
    """A role on the new (fresh) server with its own password, as a DBA creates it there; the
    request's admin Secret new-db-admin points at that server."""
    fresh = fresh_postgres_server
    name, password = f"wallet_prod_{uuid.uuid4().hex[:6]}", f"prod-{uuid.uuid4().hex}"
    fresh.create_role(name, password, superuser=True)
    vault.admin_secret("new-db-admin", server=fresh)
    yield name, password
    fresh.drop_database(f"{vault.database}_prod")
    with fresh.connect() as connection:
        connection.execute(f'DROP ROLE IF EXISTS "{name}"')


def onto_the_fresh_server(vault: Vault, fresh, name: str, credentials_secret: str) -> dict:
    request = vault.redirected_request(name, f"{vault.database}_prod", safetyBackup=False)
    request["spec"]["redirect"]["dbPort"] = fresh.port
    request["spec"]["redirect"]["credentials"] = [{"service": "wallet", "secretRef": {"name": credentials_secret}}]
    return request


def test_a_login_the_new_server_refuses_is_refused_in_preflight_with_every_service_untouched(
    vault, prod_role, fresh_postgres_server
):
    vault.backup()
    before = {service: vault.db_info(service) for service in DB_SERVICES}
    login_secret(vault, "wallet-prod-login", prod_role[0], "the-password-from-staging")
    vault.apply(onto_the_fresh_server(vault, fresh_postgres_server, "wrong-password", "wallet-prod-login"))
    status = vault.wait_finished("restorerequests", "wrong-password")["status"]
    reason, message = failure(status)
    assert reason == "ServiceLoginRefused", message
    assert f"wallet (user {prod_role[0]!r} on 127.0.0.1:{fresh_postgres_server.port}" in message
    assert "password authentication failed" in message and "Nothing was touched" in message
    assert "orchestrator" not in message  # its login (kept) works there
    assert "the-password-from-staging" not in str(status)
    assert_untouched(vault, before, status)
    with fresh_postgres_server.connect() as connection:
        made = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (f"{vault.database}_prod",))
        assert made.fetchone() is None  # nothing built on the new server either


def test_a_mistyped_db_host_is_refused_in_preflight_with_every_service_untouched(vault):
    vault.backup()
    before = {service: vault.db_info(service) for service in DB_SERVICES}
    vault.admin_secret("new-db-admin")
    request = vault.redirected_request("mistyped-host", f"{vault.database}_prod", safetyBackup=False)
    request["spec"]["redirect"]["dbHost"] = "127.0.0.99"  # nothing listens there
    vault.apply(request)
    status = vault.wait_finished("restorerequests", "mistyped-host")["status"]
    reason, message = failure(status)
    assert reason == "ServiceDatabaseUnreachable", message
    assert "127.0.0.99" in message and "spec.redirect.dbHost" in message
    assert_untouched(vault, before, status)


def test_new_credentials_are_proven_then_written_and_the_wallet_serves_with_them(
    vault, prod_role, fresh_postgres_server
):
    vault.backup()
    expected = account_names(vault.postgres.dsn(vault.database))
    login_secret(vault, "wallet-prod-login", *prod_role)
    vault.apply(onto_the_fresh_server(vault, fresh_postgres_server, "new-login", "wallet-prod-login"))
    status = vault.wait_finished("restorerequests", "new-login")["status"]
    assert status["phase"] == "Succeeded", vault.describe("restorerequests", "new-login")
    preflight = next(s for s in status["steps"] if s["name"] == "Preflight")
    proven = "the logins of orchestrator, policy-node0, policy-node1, policy-node2, wallet work on"
    assert proven in preflight["message"]
    wallet = vault.db_info("wallet")
    assert base64.b64decode(wallet["DB_USER"]).decode() == prod_role[0]
    assert base64.b64decode(wallet["DB_PASSWORD"]).decode() == prod_role[1]
    assert base64.b64decode(wallet["DB_PORT"]).decode() == str(fresh_postgres_server.port)
    assert [a["name"] for a in vault.wallet_accounts()] == expected[: len(vault.wallet_accounts())]
