"""A drill check's answer (postgres.read_only_answer) against the real PostgreSQL: normal checks
answer as PostgreSQL prints them, and whatever the query, the operator fetches at most two rows of
at most MAX_ANSWER_CHARACTERS + 1 characters; a statement that tries to close the subquery it is
read through is refused."""

from __future__ import annotations

import time

import psycopg
import pytest

from walwarden import postgres
from walwarden.postgres import MAX_ANSWER_CHARACTERS

pytestmark = pytest.mark.integration


@pytest.fixture
def database(postgres_server, empty_db) -> tuple[dict[str, str], str]:
    admin = {
        "host": postgres_server.host,
        "port": str(postgres_server.port),
        "user": postgres_server.superuser,
        "password": postgres_server.password,
        "sslmode": "disable",
    }
    with psycopg.connect(**{**admin, "dbname": empty_db}, autocommit=True) as connection:
        connection.execute("CREATE TABLE accounts (id int, address inet); INSERT INTO accounts VALUES (1, '10.0.0.1')")
    return admin, empty_db


def answer(database, query: str, timeout: int = 10) -> str | None:
    login, name = database
    return postgres.read_only_answer(login, name, query, timeout)


def refusal(database, query: str) -> postgres.DatabaseError:
    with pytest.raises(postgres.DatabaseError) as refused:
        answer(database, query)
    return refused.value


@pytest.mark.parametrize(
    ("query", "printed"),
    [
        ("SELECT count(*) FROM accounts", "1"),
        ("SELECT count(*) > 0 FROM accounts", "t"),  # as psql -At prints it, not the ::text cast's "true"
        ("SELECT address FROM accounts", "10.0.0.1"),  # not inet::text's 10.0.0.1/32
        ("SELECT 'x'::char(3)", "x  "),
        ("SELECT DATE '2026-12-03'", "2026-12-03"),
        ("SELECT NULL", None),
        ("SELECT ROW(NULL, NULL)", "(,)"),  # a row of nulls is not a null
        ("SELECT 1, 2", "1"),  # the first column
        ("VALUES (42)", "42"),
        ("TABLE accounts", "1"),
        ("WITH a AS (SELECT id FROM accounts) SELECT max(id) FROM a", "1"),
        ("SELECT 1;", "1"),
        ("  SELECT 1 ; \n", "1"),
        ("SELECT 1 -- a comment to the end", "1"),
        ("SELECT '%s {} )'", "%s {} )"),
        ("SELECT repeat('é', 1024)", "é" * 1024),
    ],
)
def test_normal_checks_answer_as_postgresql_prints_them(database, query, printed):
    assert answer(database, query) == printed


def test_a_huge_answer_is_cut_by_the_server_and_refused(database):
    started = time.monotonic()
    failure = refusal(database, "SELECT repeat('x', 50000000)")
    assert failure.reason == "CheckAnswerTooLong"
    assert f"longer than {MAX_ANSWER_CHARACTERS} characters" in failure.message
    assert time.monotonic() - started < 10


def test_many_rows_are_not_fetched(database):
    started = time.monotonic()
    failure = refusal(database, "SELECT generate_series(1, 50000000)")
    assert (failure.reason, failure.message) == ("CheckNotOneRow", "the query returned more than one row, not one")
    assert time.monotonic() - started < 10  # LIMIT 2: the server stops after two
    assert refusal(database, "SELECT id FROM accounts WHERE false").message == "the query returned 0 rows, not one"


@pytest.mark.parametrize(
    "escape",
    [
        "SELECT 1) AS q(answer) UNION ALL SELECT repeat('x', 50000000) FROM (SELECT 1",
        "SELECT 1) AS q(answer) UNION ALL SELECT repeat('x', 50000000) --",
        "SELECT 1 /* ) AS q(answer) UNION ALL SELECT repeat('x', 50000000) --",
    ],
)
def test_a_statement_closing_the_subquery_is_refused_before_it_runs(database, escape):
    failure = refusal(database, escape)  # the server's parser refuses it on its own, before it runs
    assert failure.reason == "DatabaseError", failure.message
    assert "syntax error" in failure.message or "unterminated" in failure.message, failure.message


def test_what_is_not_one_query_is_refused(database):
    assert "cannot insert multiple commands" in refusal(database, "COMMIT; DELETE FROM accounts").message
    assert refusal(database, "SHOW server_version").reason == "CheckNotAQuery"
    assert refusal(database, "DELETE FROM accounts RETURNING id").reason == "CheckNotAQuery"
    assert refusal(database, "SELECT FROM accounts").reason == "CheckNoResult"
    assert answer(database, "SELECT count(*) FROM accounts") == "1"  # nothing was written


def test_what_a_query_writes_despite_read_only_is_rolled_back(database):
    assert answer(database, "SELECT lo_create(0) > 0") == "t"  # READ ONLY lets lo_create through
    assert answer(database, "SELECT count(*) FROM pg_largeobject_metadata") == "0"
