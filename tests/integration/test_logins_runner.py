"""`walwarden runner logins`, as a Redirected restore's Preflight Job runs it, against a real
PostgreSQL server: each service's login on the new host, with the user and password from the
environment only."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from devstack.processes import free_port
from walwarden.runner.contract import ERROR_PREFIX, login_argument, login_password_env, login_user_env

pytestmark = pytest.mark.integration


@pytest.fixture
def role(postgres_server):
    """A login role with a password of its own, dropped afterwards."""
    name, password = f"svc_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    postgres_server.create_role(name, password)
    yield name, password
    with postgres_server.connect() as connection:
        connection.execute(f'DROP ROLE IF EXISTS "{name}"')


def run_logins(logins: list[tuple[str, str, int, str, str, str]]) -> subprocess.CompletedProcess:
    args, env = [], {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    for index, (service, host, port, database, user, password) in enumerate(logins):
        args += ["--login", login_argument(service, host, port, database)]
        env[login_user_env(index)], env[login_password_env(index)] = user, password
    return subprocess.run(
        [sys.executable, "-m", "walwarden", "runner", "logins", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_logins_that_work_are_proven_and_a_database_yet_to_be_created_counts(postgres_server, vault_db, role):
    user, password = role
    host, port = postgres_server.host, postgres_server.port
    result = run_logins(
        [
            ("wallet", host, port, vault_db.name, user, password),
            ("policy-node0", host, port, "vault_not_restored_yet", user, password),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert f"wallet (user {user!r} on {host}:{port}, database {vault_db.name!r}): logged in" in result.stdout
    assert "policy-node0" in result.stdout and "authenticated (the database is created by the restore)" in result.stdout


def test_a_wrong_password_is_refused_naming_service_and_user_never_the_password(postgres_server, vault_db, role):
    user, _ = role
    host, port = postgres_server.host, postgres_server.port
    result = run_logins(
        [
            ("orchestrator", host, port, vault_db.name, user, role[1]),
            ("wallet", host, port, vault_db.name, user, "the-staging-password"),
        ]
    )
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith(f"{ERROR_PREFIX}ServiceLoginRefused: the new database refuses the login of wallet")
    assert f"user {user!r}" in line and "password authentication failed" in line
    assert "orchestrator" not in line  # its login works
    assert "spec.redirect.credentials" in line
    assert "the-staging-password" not in result.stderr + result.stdout


def test_a_host_nothing_listens_on_is_unreachable_and_says_to_check_db_host(role):
    user, password = role
    port = free_port()  # nothing listens there
    result = run_logins([("wallet", "127.0.0.1", port, "vault", user, password)])
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith(f"{ERROR_PREFIX}ServiceDatabaseUnreachable: the services cannot reach their new database")
    assert f"127.0.0.1:{port}" in line and "spec.redirect.dbHost" in line
