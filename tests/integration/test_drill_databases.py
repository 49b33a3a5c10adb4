"""A drill's scratch database and reading login (postgres/databases.py, postgres/roles.py, the
checks' query) against the real PostgreSQL: the scratch database never exists under its name
without its marker, another drill's is never taken over, the login reads and cannot write."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from walwarden import postgres
from walwarden.postgres import databases, roles

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(postgres_server) -> dict[str, str]:
    return {
        "host": postgres_server.host,
        "port": str(postgres_server.port),
        "user": postgres_server.superuser,
        "password": postgres_server.password,
        "sslmode": "disable",
    }


def test_the_scratch_database_is_made_marked_and_another_drills_is_refused_not_taken_over(admin):
    name, suffix = f"scratch_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    try:
        databases.create_marked(admin, name, "drill A", f"staging_a_{suffix}")
        assert databases.comment_of(admin, name) == "drill A"
        databases.create_marked(admin, name, "drill A", f"staging_a_{suffix}")  # again, a lost pass: fine
        with pytest.raises(postgres.DatabaseError) as refused:
            databases.create_marked(admin, name, "drill B", f"staging_b_{suffix}")
        assert refused.value.reason == "ScratchDatabaseExists"
        assert databases.comment_of(admin, name) == "drill A"  # still A's
        assert not postgres.database_exists(admin, f"staging_b_{suffix}")
    finally:
        databases.drop(admin, name)


def test_a_staging_database_left_by_a_crash_is_marked_and_renamed_on_the_next_pass(admin):
    name, staging = f"scratch_{uuid.uuid4().hex[:8]}", f"staging_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**{**admin, "dbname": "postgres"}, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(staging)))  # then the crash
    try:
        databases.create_marked(admin, name, "drill A", staging)
        assert databases.comment_of(admin, name) == "drill A"
        assert not postgres.database_exists(admin, staging)
    finally:
        databases.drop(admin, name)
        databases.drop(admin, staging)


def test_the_reading_login_reads_the_scratch_database_and_its_checks_can_neither_write_nor_escape(admin):
    name, reader = f"scratch_{uuid.uuid4().hex[:8]}", f"reader_{uuid.uuid4().hex[:8]}"
    databases.create_marked(admin, name, "drill A", f"staging_{uuid.uuid4().hex[:8]}")
    try:
        with psycopg.connect(**{**admin, "dbname": name}, autocommit=True) as connection:
            connection.execute("CREATE TABLE accounts (id int); INSERT INTO accounts VALUES (1), (2)")
        roles.create_reader(admin, reader, "reader-password", name, "reader of drill A")
        login = {**admin, "user": reader, "password": "reader-password"}
        assert postgres.read_only_answer(login, name, "SELECT count(*) FROM accounts", 10) == "2"
        assert postgres.read_only_answer(login, name, "SELECT count(*) > 1 FROM accounts", 10) == "t"
        assert postgres.read_only_answer(login, name, "SELECT NULL", 10) is None
        for query, words in (
            ("DELETE FROM accounts RETURNING id", "not a query"),
            ("COMMIT; DELETE FROM accounts", "cannot insert multiple commands"),
            ("SELECT id FROM accounts", "returned more than one row, not one"),
            ("SELECT pg_sleep(5)", "longer than 1 s"),
        ):
            with pytest.raises(postgres.DatabaseError) as refused:
                postgres.read_only_answer(login, name, query, 1)
            assert words in refused.value.message, (query, refused.value.message)
        assert postgres.read_only_answer(admin, name, "SELECT count(*) FROM accounts", 10) == "2"  # nothing written
        with pytest.raises(postgres.DatabaseError):  # a login with another drill's marker is not taken over
            roles.create_reader(admin, reader, "other-password", name, "reader of drill B")
    finally:
        databases.drop(admin, name)
        roles.drop_marked_roles(admin, [reader], "reader of drill A")
