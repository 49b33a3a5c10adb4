"""`walwarden runner logins` (runner/logins.py) against a host the requester chose: a password goes
only by SCRAM and over TLS as the operator's policy says, and every refusal names the service and
host, never the password. libpq's own answers are played back here; the real servers are in
tests/integration/test_logins_runner.py."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from walwarden.postgres import Login
from walwarden.runner import logins as runner_logins
from walwarden.runner.errors import InvalidArguments
from walwarden.runner.logins import (
    LibpqTooOld,
    ServiceDatabaseUnreachable,
    ServiceLoginNotScram,
    ServiceLoginRefused,
    ServiceLoginTlsFailed,
    check_logins,
)

PASSWORD = "the-wallet-password"
WALLET = Login("wallet", "listener.example", 5432, "vault", "vault_wallet", PASSWORD)
ORCHESTRATOR = Login("orchestrator", "listener.example", 5432, "vault", "vault_orchestrator", "o-password")
SERVER = 'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
CLEARTEXT = SERVER + 'authentication method requirement "scram-sha-256" failed: server requested a cleartext password'


class Libpq:
    """psycopg.connect as libpq would answer it: what each user's connection says (None: it works)."""

    def __init__(self, answers: dict[str, str | None]) -> None:
        self.answers = answers
        self.calls: list[dict[str, Any]] = []

    def connect(self, **params: Any) -> Any:
        self.calls.append(params)
        said = self.answers.get(params["user"])
        if said is not None:
            raise psycopg.OperationalError(said)
        return type("Connection", (), {"close": lambda self: None})()


@pytest.fixture
def libpq(monkeypatch) -> Libpq:
    fake = Libpq({})
    monkeypatch.setattr(psycopg, "connect", fake.connect)
    monkeypatch.delenv("PGSSLMODE", raising=False)
    return fake


def refusal(logins: list[Login], ssl_mode: str | None = "disable") -> Any:
    with pytest.raises(runner_logins.RunnerError) as refused:
        check_logins(logins, ssl_mode)
    assert PASSWORD not in refused.value.error_line()
    return refused.value


def test_every_login_requires_scram_and_the_policys_sslmode(libpq):
    assert check_logins([WALLET], "verify-full") == [f"{WALLET.describe()}: logged in"]
    [call] = libpq.calls
    assert call["require_auth"] == "scram-sha-256" and call["sslmode"] == "verify-full"


def test_without_a_policy_in_the_environment_the_certificate_is_verified(libpq):
    check_logins([WALLET])
    assert libpq.calls[0]["sslmode"] == "verify-full"


def test_the_policy_comes_from_pgsslmode(libpq, monkeypatch):
    monkeypatch.setenv("PGSSLMODE", "disable")
    check_logins([WALLET])
    assert libpq.calls[0]["sslmode"] == "disable"
    monkeypatch.setenv("PGSSLMODE", "sometimes")
    with pytest.raises(InvalidArguments):
        check_logins([WALLET])


def test_a_server_asking_for_the_password_in_cleartext_does_not_get_it(libpq):
    libpq.answers = {"vault_wallet": CLEARTEXT}
    failure = refusal([ORCHESTRATOR, WALLET])
    assert isinstance(failure, ServiceLoginNotScram) and failure.reason == "ServiceLoginNotScram"
    assert "the new database at listener.example:5432 did not ask for the password by SCRAM, so it was not sent" in (
        failure.message
    )
    assert "wallet (user 'vault_wallet' on listener.example:5432" in failure.message
    assert "server requested a cleartext password" in failure.message and "orchestrator" not in failure.message
    assert "spec.redirect.dbHost" in failure.message


@pytest.mark.parametrize("asked", ["server requested a hashed password", "server did not complete authentication"])
def test_md5_or_no_authentication_is_not_scram_either(libpq, asked):
    libpq.answers = {"vault_wallet": SERVER + f'authentication method requirement "scram-sha-256" failed: {asked}'}
    assert isinstance(refusal([WALLET]), ServiceLoginNotScram)


def test_not_scram_is_named_first_with_the_other_failures(libpq):
    libpq.answers = {
        "vault_orchestrator": SERVER + 'FATAL:  password authentication failed for user "vault_orchestrator"',
        "vault_wallet": CLEARTEXT,
    }
    failure = refusal([ORCHESTRATOR, WALLET])
    assert isinstance(failure, ServiceLoginNotScram)
    assert "orchestrator (user 'vault_orchestrator'" in failure.message  # also listed


def test_a_server_without_tls_fails_the_policy_naming_it(libpq):
    libpq.answers = {"vault_wallet": SERVER + "server does not support SSL, but SSL was required"}
    failure = refusal([WALLET], "verify-full")
    assert isinstance(failure, ServiceLoginTlsFailed)
    assert "sslmode verify-full" in failure.message and "redirectLoginSslMode" in failure.message


def test_refused_and_unreachable_logins_keep_their_reasons(libpq):
    libpq.answers = {"vault_wallet": SERVER + 'FATAL:  password authentication failed for user "vault_wallet"'}
    assert isinstance(refusal([WALLET]), ServiceLoginRefused)
    libpq.answers = {"vault_wallet": SERVER + "Connection refused"}
    assert isinstance(refusal([WALLET]), ServiceDatabaseUnreachable)


def test_a_database_yet_to_be_created_counts_as_proven(libpq):
    libpq.answers = {"vault_wallet": SERVER + 'FATAL:  database "vault" does not exist'}
    assert check_logins([WALLET], "disable") == [
        f"{WALLET.describe()}: authenticated (the database is created by the restore)"
    ]


def test_a_libpq_that_cannot_require_scram_tries_no_login(libpq, monkeypatch):
    monkeypatch.setattr(psycopg.pq, "version", lambda: 150012)
    failure = refusal([WALLET])
    assert isinstance(failure, LibpqTooOld) and "libpq 16 or newer" in failure.message
    assert libpq.calls == []
