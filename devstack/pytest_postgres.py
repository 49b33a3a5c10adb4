"""pytest fixtures: one real PostgreSQL server per test session, and fresh databases on it.

Register with `pytest_plugins = ["devstack.pytest_postgres"]` in the top-level conftest.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from devstack import vaultdb
from devstack.postgres import PostgresServer

VAULT_DB_ACCOUNTS = 200  # with vaultdb's ratios: 400 wallets, 1,200 key shares, 5,000 transactions


@dataclass(frozen=True)
class VaultDatabase:
    """A database filled by vaultdb.generate(); row_counts is what the generator wrote."""

    name: str
    dsn: str = field(repr=False)  # holds the superuser's password: kept out of pytest's reports
    row_counts: dict[str, int]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@contextmanager
def _fresh_database(server: PostgresServer, prefix: str) -> Iterator[str]:
    # A unique name per test, dropped afterwards so the session's server stays small.
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    server.create_database(name)
    try:
        yield name
    finally:
        server.drop_database(name)
        # And what restores of it left beside it: a Switch restore's previous database, its sibling.
        with server.connect() as connection:
            leftovers = connection.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (f"{name}_",)
            ).fetchall()
        for (leftover,) in leftovers:
            server.drop_database(leftover)


@pytest.fixture
def empty_db(postgres_server: PostgresServer) -> Iterator[str]:
    """The name of a new, empty database."""
    with _fresh_database(postgres_server, "empty") as name:
        yield name


@pytest.fixture
def vault_db(postgres_server: PostgresServer) -> Iterator[VaultDatabase]:
    """A new database holding a small generated vault (seed 0, VAULT_DB_ACCOUNTS accounts)."""
    with _fresh_database(postgres_server, "vault") as name:
        dsn = postgres_server.dsn(name)
        yield VaultDatabase(name, dsn, vaultdb.generate(dsn, accounts=VAULT_DB_ACCOUNTS))


@pytest.fixture(scope="session")
def fresh_postgres_server(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[PostgresServer]:
    """A second server, freshly initialised (no role but its superuser), to migrate onto: loopback
    only, like the first. Its superuser has postgres_server's login, as a migrated vault's services
    keep theirs (the db-info secrets' DB_USER and DB_PASSWORD work on both)."""
    with PostgresServer(tmp_path_factory.mktemp("fresh-postgres"), password=postgres_server.password) as server:
        yield server
