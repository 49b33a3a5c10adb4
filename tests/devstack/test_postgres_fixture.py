"""The PostgreSQL test server and the vault generator, checked against a real server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from devstack import vaultdb
from devstack.postgres import PostgresServer

pytestmark = pytest.mark.integration


def run_tool(server: PostgresServer, tool: str, dbname: str, *args: str | Path) -> None:
    """Run pg_dump / pg_restore from the server's bindir; credentials travel in the environment."""
    result = subprocess.run(
        [str(server.bindir / tool), *map(str, args)], env=server.client_env(dbname), capture_output=True, text=True
    )
    assert result.returncode == 0, f"{tool} failed ({result.returncode}):\n{result.stderr}"


def dump(server: PostgresServer, dbname: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{dbname}.dump"
    run_tool(server, "pg_dump", dbname, "-Fc", "-f", path)
    return path


def fingerprint(dsn: str, table: str) -> str:
    """md5 of every row of a table in id order: equal fingerprints mean equal contents."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            sql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {} t").format(sql.Identifier(table))
        ).fetchone()[0]


def test_server_starts_and_reports_its_version(postgres_server):
    assert postgres_server.version[0].isdigit()
    with postgres_server.connect() as conn:
        assert conn.execute("SHOW server_version").fetchone()[0] == postgres_server.version
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        assert conn.execute("SELECT inet_server_addr()::text").fetchone()[0] == "127.0.0.1/32"
    assert postgres_server.password not in repr(postgres_server)


def test_scram_refuses_a_wrong_password(postgres_server):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres_server.dsn(password="not-the-password")).close()
    postgres_server.create_role("app_user", "s3cret-pw")
    with psycopg.connect(postgres_server.dsn(user="app_user", password="s3cret-pw")) as conn:
        assert conn.execute("SELECT current_user, current_setting('is_superuser')").fetchone() == ("app_user", "off")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres_server.dsn(user="app_user", password="wrong")).close()


def test_vault_schema_has_keys_and_indexes_and_the_generated_rows(vault_db):
    with psycopg.connect(vault_db.dsn) as conn:
        constraints = "FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype = "
        foreign_keys = set(
            conn.execute(f"SELECT conrelid::regclass::text, confrelid::regclass::text {constraints} 'f'")
        )
        primary_keys = {r[0] for r in conn.execute(f"SELECT conrelid::regclass::text {constraints} 'p'")}
        secondary = {
            r[0]
            for r in conn.execute(
                "SELECT indrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                "WHERE NOT i.indisprimary AND c.relnamespace = 'public'::regnamespace"
            )
        }
        payload_sizes = conn.execute("SELECT min(length(payload)), max(length(payload)) FROM key_shares").fetchone()
    assert foreign_keys == {
        ("wallets", "accounts"),
        ("key_shares", "wallets"),
        ("policies", "accounts"),
        ("policy_rules", "policies"),
        ("transactions", "wallets"),
    }
    assert primary_keys == set(vaultdb.TABLES)
    assert {"accounts", "wallets", "key_shares", "policies", "policy_rules", "transactions"} <= secondary
    assert 200 <= payload_sizes[0] <= payload_sizes[1] <= 400

    assert vault_db.row_counts == vaultdb.planned_rows(200)
    assert vaultdb.row_counts(vault_db.dsn) == vault_db.row_counts


def test_same_seed_gives_the_same_data(postgres_server, vault_db, empty_db):
    other = postgres_server.dsn(empty_db)
    vaultdb.generate(other, accounts=200, seed=0)
    for table in ("accounts", "key_shares", "transactions"):
        assert fingerprint(other, table) == fingerprint(vault_db.dsn, table)


def test_dump_restored_into_an_empty_database_has_the_same_rows(postgres_server, vault_db, empty_db, tmp_path):
    archive = dump(postgres_server, vault_db.name, tmp_path)
    run_tool(postgres_server, "pg_restore", empty_db, "--exit-on-error", "--no-owner", "-d", empty_db, archive)
    restored = postgres_server.dsn(empty_db)
    assert vaultdb.row_counts(restored) == vault_db.row_counts
    assert fingerprint(restored, "key_shares") == fingerprint(vault_db.dsn, "key_shares")


def test_in_place_restore_undoes_mutate_accounts(postgres_server, vault_db, tmp_path):
    archive = dump(postgres_server, vault_db.name, tmp_path)
    assert vaultdb.mutate_accounts(vault_db.dsn, delete=3) == {"deleted": 3, "renamed": 197}
    assert vaultdb.row_counts(vault_db.dsn) != vault_db.row_counts

    run_tool(
        postgres_server,
        "pg_restore",
        vault_db.name,
        "--clean",
        "--if-exists",
        "--exit-on-error",
        "-d",
        vault_db.name,
        archive,
    )
    assert vaultdb.row_counts(vault_db.dsn) == vault_db.row_counts
    with psycopg.connect(vault_db.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM accounts WHERE name LIKE 'MUTATED %'").fetchone()[0] == 0


def test_target_bytes_gives_a_database_near_the_target(postgres_server, empty_db):
    target = vaultdb.parse_size("20MB")
    vaultdb.generate(postgres_server.dsn(empty_db), target_bytes=target, seed=7)
    size = vaultdb.database_size(postgres_server.dsn(empty_db))
    assert target / 2 <= size <= target * 2, f"{size:,} bytes for a target of {target:,}"


def test_parse_size():
    assert vaultdb.parse_size("50MB") == 50 * 2**20
    assert vaultdb.parse_size("1GB") == 2**30
    assert vaultdb.parse_size("1.5 GiB") == 3 * 2**29
    assert vaultdb.parse_size("4096") == 4096
    with pytest.raises(ValueError):
        vaultdb.parse_size("lots")
