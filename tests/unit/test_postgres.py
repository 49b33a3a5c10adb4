"""What both the operator and the runner read out of PostgreSQL's answers: which failure a refused
connection is, and the major version of a version string."""

from __future__ import annotations

import psycopg
import pytest

from walwarden import postgres
from walwarden.postgres import ConnectionFailure, classify_connection_error, major_version

SERVER = 'connection failed: connection to server at "10.0.0.5", port 5432 failed: '


@pytest.mark.parametrize(
    "message, failure",
    [
        (
            SERVER + 'FATAL:  password authentication failed for user "postgres"',
            ConnectionFailure.AUTHENTICATION_FAILED,
        ),
        (SERVER + "fe_sendauth: no password supplied", ConnectionFailure.AUTHENTICATION_FAILED),
        (
            SERVER
            + 'FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "postgres", database "vault", no encryption',
            ConnectionFailure.AUTHENTICATION_FAILED,
        ),
        (SERVER + 'FATAL:  role "ghost" does not exist', ConnectionFailure.AUTHENTICATION_FAILED),
        (
            SERVER + 'FATAL:  permission denied for database "vault"\nDETAIL:  User does not have CONNECT privilege.',
            ConnectionFailure.AUTHENTICATION_FAILED,
        ),
        (SERVER + "SCRAM authentication requires libpq version 10 or above", ConnectionFailure.AUTHENTICATION_FAILED),
        (SERVER + 'FATAL:  database "vault" does not exist', ConnectionFailure.DATABASE_NOT_FOUND),
        # A database named in one place and a missing role in another is a refused login, not a missing database.
        (
            'connection to server at "a" failed: database "vault" is not the problem: '
            'FATAL:  role "ghost" does not exist',
            ConnectionFailure.AUTHENTICATION_FAILED,
        ),
        (
            SERVER + "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
            ConnectionFailure.DATABASE_UNREACHABLE,
        ),
        (SERVER + "timeout expired", ConnectionFailure.DATABASE_UNREACHABLE),
        (SERVER + "FATAL:  the database system is starting up", ConnectionFailure.DATABASE_UNREACHABLE),
        (
            "failed to resolve host 'db.invalid': [Errno -2] Name or service not known",
            ConnectionFailure.DATABASE_UNREACHABLE,
        ),
    ],
)
def test_connection_failures_are_classified_from_libpq_messages(message, failure):
    assert classify_connection_error(psycopg.OperationalError(message)) is failure
    assert classify_connection_error(message) is failure


def test_the_classification_is_the_reason_both_sides_report():
    assert {failure.value for failure in ConnectionFailure} == {
        "AuthenticationFailed",
        "DatabaseNotFound",
        "DatabaseUnreachable",
    }


@pytest.mark.parametrize(
    "message, reason",
    [
        (
            SERVER + 'FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "admin", database "vault"',
            "AuthenticationFailed",
        ),
        (SERVER + 'FATAL:  database "vault" does not exist', "DatabaseNotFound"),
        (SERVER + "Connection refused", "DatabaseUnreachable"),
    ],
)
def test_the_operator_reports_a_refused_connection_by_class_without_the_password(monkeypatch, message, reason):
    def refuse(**conninfo):
        raise psycopg.OperationalError(message)

    monkeypatch.setattr(psycopg, "connect", refuse)
    secret = {"host": "db.internal", "port": "5432", "user": "admin", "password": "s3cret-value"}
    with pytest.raises(postgres.DatabaseError) as refused, postgres.connect(secret, "vault"):
        pass
    assert refused.value.reason == reason and type(refused.value.reason) is str
    assert "s3cret-value" not in refused.value.message and "db.internal" in refused.value.message


def test_a_refused_login_says_why_in_libpq_words(monkeypatch):
    def refuse(**conninfo):
        raise psycopg.OperationalError(SERVER + 'FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "admin"')

    monkeypatch.setattr(psycopg, "connect", refuse)
    secret = {"host": "db.internal", "user": "admin", "password": "s3cret-value"}
    with pytest.raises(postgres.DatabaseError) as refused, postgres.connect(secret, "vault"):
        pass
    assert refused.value.message == (
        'FATAL: no pg_hba.conf entry for host "10.0.0.9", user "admin" (user \'admin\', '
        "database 'vault' on db.internal:5432); check the admin Secret and the server's "
        "pg_hba.conf"
    )


@pytest.mark.parametrize(
    "text, major",
    [
        ("16.4", (16,)),
        ("16.4 (Debian 16.4-1.pgdg120+1)", (16,)),
        ("15.18 (Debian 15.18-0+deb12u1)", (15,)),
        ("16beta2", (16,)),
        ("17devel", (17,)),
        ("10", (10,)),
        ("9.6.24", (9, 6)),
        ("9.6", (9, 6)),
        ("9.6beta1", (9, 6)),
        ("  15.2", (15,)),
        ("", ()),
        ("unknown", ()),
        ("PostgreSQL 16.4", ()),  # a whole banner is not a version: callers pass the version itself
    ],
)
def test_major_version(text, major):
    assert major_version(text) == major


def test_major_versions_compare_across_the_old_numbering():
    assert major_version("9.5.25") < major_version("9.6.24") < major_version("10.1") < major_version("15.2")
    assert major_version("15.2") == major_version("15.18")
