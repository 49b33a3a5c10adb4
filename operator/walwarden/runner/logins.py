"""`walwarden runner logins`: each service's database login tried where the services run.

A Redirected restore's Preflight runs it before anything stops: for every database service, a
connection to the new host, port and database with the user and password the service will read
after the repoint. A missing database after a successful authentication counts as proven (the
restore creates it); a refused login or an unreachable server fails the Job, naming each service,
user and address, never a password.
"""

from __future__ import annotations

import os

import psycopg

from walwarden.postgres import ConnectionFailure, Login, classify_connection_error
from walwarden.runner.contract import RUNNER_APPLICATION_NAME, login_password_env, login_user_env
from walwarden.runner.errors import InvalidArguments, RunnerError

CONNECT_TIMEOUT_SECONDS = 10


class ServiceLoginRefused(RunnerError):
    """A server refused a service's login (password, role, pg_hba.conf)."""

    reason = "ServiceLoginRefused"


class ServiceDatabaseUnreachable(RunnerError):
    """A service's new database server could not be reached (host, port, network, TLS)."""

    reason = "ServiceDatabaseUnreachable"


def logins_from_environment(wheres: list[tuple[str, str, int, str]]) -> list[Login]:
    logins = []
    for index, (service, host, port, database) in enumerate(wheres):
        user, password = os.environ.get(login_user_env(index)), os.environ.get(login_password_env(index))
        if not user or password is None:
            raise InvalidArguments(f"no {login_user_env(index)} / {login_password_env(index)} for {service}")
        logins.append(Login(service, host, port, database, user, password))
    return logins


def check_logins(logins: list[Login]) -> list[str]:
    """Try every login; what each proved, or RunnerError naming every one that failed."""
    proven, refused, unreachable = [], [], []
    for login in logins:
        outcome = _try(login)
        if outcome is None:
            proven.append(f"{login.describe()}: logged in")
        elif outcome[0] is ConnectionFailure.DATABASE_NOT_FOUND:
            proven.append(f"{login.describe()}: authenticated (the database is created by the restore)")
        elif outcome[0] is ConnectionFailure.AUTHENTICATION_FAILED:
            refused.append(f"{login.describe()}: {outcome[1]}")
        else:
            unreachable.append(f"{login.describe()}: {outcome[1]}")
    if refused:
        raise ServiceLoginRefused(
            "the new database refuses the login of " + "; ".join(refused + unreachable) + ". Create the role with "
            "that password on the new server, or give the service its login there in spec.redirect.credentials"
        )
    if unreachable:
        raise ServiceDatabaseUnreachable(
            "the services cannot reach their new database: " + "; ".join(unreachable) + ". Check spec.redirect.dbHost "
            "and dbPort (a typo?), and that the vault's namespace may reach that server (network policies, firewall)"
        )
    return proven


def _try(login: Login) -> tuple[ConnectionFailure, str] | None:
    try:
        connection = psycopg.connect(
            host=login.host,
            port=login.port,
            user=login.user,
            password=login.password,
            dbname=login.database,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=RUNNER_APPLICATION_NAME,
        )
    except psycopg.OperationalError as error:
        said = " ".join(str(error).split())
        # libpq's last words say what happened ("password authentication failed for user ...",
        # "Connection refused"); they name the user and the address, never the password.
        return classify_connection_error(error), said.rpartition("failed: ")[2] or said
    connection.close()
    return None
