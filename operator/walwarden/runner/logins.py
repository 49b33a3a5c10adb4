"""`walwarden runner logins`: each service's database login tried where the services run.

A Redirected restore's Preflight runs it before anything stops: for every database service, a
connection to the new host, port and database with the user and password the service will read
after the repoint. A missing database after a successful authentication counts as proven (the
restore creates it); a refused login or an unreachable server fails the Job, naming each service,
user and address, never a password.

The host is the requester's choice, so a password goes out only by SCRAM (libpq's require_auth):
a server that asks for it in cleartext or as md5, or asks for none, is refused before libpq sends
anything of it (ServiceLoginNotScram). TLS is the operator's policy, given as libpq's PGSSLMODE
(and PGSSLROOTCERT); without one the strictest, verify-full.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg

from walwarden.postgres import ConnectionFailure, Login, classify_connection_error
from walwarden.runner.contract import RUNNER_APPLICATION_NAME, Env, login_password_env, login_user_env
from walwarden.runner.errors import InvalidArguments, RunnerError

CONNECT_TIMEOUT_SECONDS = 10
REQUIRED_AUTH = "scram-sha-256"
# require_auth came with libpq 16: an older libpq answers whatever the server asks for.
REQUIRE_AUTH_SINCE = 160000
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_SSL_MODE = "verify-full"


class ServiceLoginRefused(RunnerError):
    """A server refused a service's login (password, role, pg_hba.conf)."""

    reason = "ServiceLoginRefused"


class ServiceDatabaseUnreachable(RunnerError):
    """A service's new database server could not be reached (host, port, network)."""

    reason = "ServiceDatabaseUnreachable"


class ServiceLoginNotScram(RunnerError):
    """A server asked for a service's password other than by SCRAM (cleartext, md5) or for none:
    the password was not sent."""

    reason = "ServiceLoginNotScram"


class ServiceLoginTlsFailed(RunnerError):
    """No TLS connection as the operator's policy asks (no TLS, a certificate not verified)."""

    reason = "ServiceLoginTlsFailed"


class LibpqTooOld(RunnerError):
    """This runner's libpq cannot refuse a non-SCRAM password request: no login is tried."""

    reason = "LibpqTooOld"


@dataclass(frozen=True)
class Outcome:
    """What trying one login showed: None for `failure` when it was proven."""

    login: Login
    failure: type[RunnerError] | None = None
    said: str = ""  # libpq's last words, which name the user and address, never the password


def logins_from_environment(wheres: list[tuple[str, str, int, str]]) -> list[Login]:
    logins = []
    for index, (service, host, port, database) in enumerate(wheres):
        user, password = os.environ.get(login_user_env(index)), os.environ.get(login_password_env(index))
        if not user or password is None:
            raise InvalidArguments(f"no {login_user_env(index)} / {login_password_env(index)} for {service}")
        logins.append(Login(service, host, port, database, user, password))
    return logins


def ssl_mode_from_environment() -> str:
    """The operator's TLS policy for these logins (PGSSLMODE), verify-full when unset."""
    mode = os.environ.get(Env.PG_SSLMODE) or DEFAULT_SSL_MODE
    if mode not in SSL_MODES:
        raise InvalidArguments(f"{Env.PG_SSLMODE}={mode!r} is not one of libpq's sslmodes ({', '.join(SSL_MODES)})")
    return mode


def require_scram_support() -> None:
    version = psycopg.pq.version()
    if version < REQUIRE_AUTH_SINCE:
        raise LibpqTooOld(
            f"this runner's libpq is version {version}: it cannot refuse a server that asks for a password in "
            f"cleartext (require_auth needs libpq {REQUIRE_AUTH_SINCE // 10000} or newer), so no password was "
            "sent and no login tried. Run the runner image with psycopg[binary] (its own libpq) or a newer libpq"
        )


def check_logins(logins: list[Login], ssl_mode: str | None = None) -> list[str]:
    """Try every login; what each proved, or RunnerError naming every one that failed."""
    require_scram_support()
    ssl_mode = ssl_mode or ssl_mode_from_environment()
    outcomes = [_try(login, ssl_mode) for login in logins]
    failed = [outcome for outcome in outcomes if outcome.failure is not None]
    if failed:
        raise _failure(failed, ssl_mode)
    return [f"{outcome.login.describe()}: {outcome.said}" for outcome in outcomes]


def _try(login: Login, ssl_mode: str) -> Outcome:
    try:
        connection = psycopg.connect(
            host=login.host,
            port=login.port,
            user=login.user,
            password=login.password,
            dbname=login.database,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=RUNNER_APPLICATION_NAME,
            require_auth=REQUIRED_AUTH,
            sslmode=ssl_mode,
        )
    except psycopg.OperationalError as error:
        return _refusal(login, error)
    connection.close()
    return Outcome(login, said="logged in")


def _refusal(login: Login, error: psycopg.OperationalError) -> Outcome:
    text = " ".join(str(error).split())
    said = text.rpartition("failed: ")[2] or text  # e.g. "server requested a cleartext password"
    if "authentication method requirement" in text:  # libpq's own refusal of the server's request
        return Outcome(login, ServiceLoginNotScram, said)
    failure = classify_connection_error(error)
    if failure is ConnectionFailure.DATABASE_NOT_FOUND:
        return Outcome(login, said="authenticated (the database is created by the restore)")
    if failure is ConnectionFailure.AUTHENTICATION_FAILED:
        return Outcome(login, ServiceLoginRefused, said)
    if "ssl" in said.lower() or "certificate" in said.lower():
        return Outcome(login, ServiceLoginTlsFailed, said)
    return Outcome(login, ServiceDatabaseUnreachable, said)


# The most telling failure first: one that kept a password from a server that asked for it in
# cleartext is named even when another service's login failed otherwise.
_ORDER: tuple[type[RunnerError], ...] = (
    ServiceLoginNotScram,
    ServiceLoginTlsFailed,
    ServiceLoginRefused,
    ServiceDatabaseUnreachable,
)


def _failure(failed: list[Outcome], ssl_mode: str) -> RunnerError:
    first = min((outcome.failure for outcome in failed if outcome.failure), key=_ORDER.index)
    listed = "; ".join(f"{outcome.login.describe()}: {outcome.said}" for outcome in failed)
    hosts = ", ".join(sorted({f"{o.login.host}:{o.login.port}" for o in failed if o.failure is first}))
    if first is ServiceLoginNotScram:
        return ServiceLoginNotScram(
            f"the new database at {hosts} did not ask for the password by SCRAM, so it was not sent: {listed}. "
            "Walwarden sends a service's password only by scram-sha-256: give the role a SCRAM password there "
            "(password_encryption = scram-sha-256) and authenticate it with scram-sha-256 in pg_hba.conf; and "
            "check that spec.redirect.dbHost names the server you meant"
        )
    if first is ServiceLoginTlsFailed:
        return ServiceLoginTlsFailed(
            f"no TLS connection to the new database at {hosts} as the operator's policy asks (sslmode "
            f"{ssl_mode}): {listed}. Serve TLS there with a certificate for that host name, signed by a CA the "
            "runner trusts (the operator's redirectLoginSslRootCert), or relax the operator's "
            "redirectLoginSslMode (docs/security.md)"
        )
    if first is ServiceLoginRefused:
        return ServiceLoginRefused(
            f"the new database refuses the login of {listed}. Create the role with that password on the new "
            "server, or give the service its login there in spec.redirect.credentials"
        )
    return ServiceDatabaseUnreachable(
        f"the services cannot reach their new database: {listed}. Check spec.redirect.dbHost and dbPort (a typo?), "
        "and that the vault's namespace may reach that server (network policies, firewall)"
    )
