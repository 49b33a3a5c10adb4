"""The stand-in wallet (devstack/wallet.py) as a real process against a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.postgres import PostgresServer
from devstack.processes import ManagedProcess, free_port, wait_until
from devstack.wallet import APPLICATION_NAME, REPO

pytestmark = pytest.mark.integration

AUTH_TOKEN = "s3cr3t-wallet-token"


class Wallet:
    def __init__(self, process: ManagedProcess, url: str):
        self.process, self.url = process, url

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def log(self) -> str:
        return self.process.log_path.read_text()


@pytest.fixture
def start_wallet(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Callable[..., Wallet]]:
    """start_wallet(database, **extra_env): a wallet process on a free loopback port, up and listening."""
    started: list[ManagedProcess] = []

    def start(database: str, **extra_env: str) -> Wallet:
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "POD_IP": "127.0.0.1",
            "PORT": str(port),
            "DB_HOST": postgres_server.host,
            "DB_PORT": str(postgres_server.port),
            "DB_USER": postgres_server.superuser,
            "DB_PASSWORD": postgres_server.password,
            "DB_NAME": database,
            **extra_env,
        }
        process = ManagedProcess(
            "wallet", [sys.executable, "-m", "devstack.wallet"], tmp_path / f"wallet-{port}.log", env=env, cwd=tmp_path
        ).start()
        started.append(process)
        wallet = Wallet(process, f"http://127.0.0.1:{port}")
        wait_until(lambda: "serving on" in wallet.log() or not process.alive(), 30, "the wallet to listen")
        process.check_alive()
        return wallet

    yield start
    for process in started:
        process.stop()


def wallet_sessions(server: PostgresServer, database: str) -> int:
    with server.connect() as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (database, APPLICATION_NAME),
        ).fetchone()[0]


def test_health_reports_the_database(start_wallet, vault_db, postgres_server):
    status, body = start_wallet(vault_db.name).get("/health")
    assert status == 200
    assert body == {"status": "ok", "database": {"host": postgres_server.host, "name": vault_db.name}}


def test_a_row_in_wallet_health_blocks_makes_it_unready_until_the_row_goes(start_wallet, vault_db, postgres_server):
    wallet = start_wallet(vault_db.name)
    with postgres_server.connect(vault_db.name) as conn:
        conn.execute("CREATE TABLE wallet_health_blocks (why text)")
        assert wallet.get("/health")[0] == 200  # an empty table blocks nothing
        conn.execute("INSERT INTO wallet_health_blocks VALUES ('a test')")
        status, body = wallet.get("/health")
        assert status == 503 and body["status"] == "blocked"
        conn.execute("DELETE FROM wallet_health_blocks")
    assert wallet.get("/health")[0] == 200


def test_accounts_come_from_the_database(start_wallet, vault_db):
    wallet = start_wallet(vault_db.name)
    total = vault_db.row_counts["accounts"]
    status, body = wallet.get(f"/api/v2/accounts?limit={total + 50}")
    assert status == 200 and body["count"] == total == len(body["accounts"])
    assert [a["id"] for a in body["accounts"]] == list(range(1, total + 1))  # ordered by id
    assert body["accounts"][0]["name"].endswith(" #1") and set(body["accounts"][0]) == {"id", "name"}

    status, body = wallet.get("/api/v2/accounts")
    assert status == 200 and body["count"] == 100 < total  # the default limit
    assert wallet.get("/api/v2/accounts?limit=7")[1]["count"] == 7
    assert wallet.get("/api/v2/accounts?limit=0")[0] == 400
    assert wallet.get("/api/v2/accounts?limit=x")[0] == 400
    assert wallet.get("/nope")[0] == 404


def test_accounts_need_the_bearer_token_when_configured(start_wallet, vault_db):
    wallet = start_wallet(vault_db.name, WALLET_AUTH_TOKEN=AUTH_TOKEN)
    assert wallet.get("/api/v2/accounts")[0] == 401
    assert wallet.get("/api/v2/accounts", {"Authorization": "Bearer wrong"})[0] == 401
    assert wallet.get("/api/v2/accounts", {"Authorization": AUTH_TOKEN})[0] == 401
    status, body = wallet.get("/api/v2/accounts", {"Authorization": f"Bearer {AUTH_TOKEN}"})
    assert status == 200 and body["count"] == 100
    assert wallet.get("/health")[0] == 200  # probes carry no credentials
    assert AUTH_TOKEN not in wallet.log()


def test_reconnects_after_its_session_is_terminated(start_wallet, vault_db, postgres_server):
    wallet = start_wallet(vault_db.name)
    assert wallet.get("/health")[0] == 200
    assert postgres_server.terminate_sessions(vault_db.name) == 1  # as a restore's ScaleDown policy may
    status, body = wallet.get("/api/v2/accounts?limit=3")
    assert status == 200 and body["count"] == 3


def test_sigterm_ends_the_process_and_its_session(start_wallet, vault_db, postgres_server):
    wallet = start_wallet(vault_db.name)
    assert wallet.get("/health")[0] == 200
    assert wallet_sessions(postgres_server, vault_db.name) == 1
    wallet.process.stop(timeout=5)  # SIGTERM; SIGKILL (exit -9) only if it did not stop in time
    assert wallet.process.popen.returncode == 0
    # The session ends a moment after the connection closes: the backend exits on its own.
    wait_until(lambda: wallet_sessions(postgres_server, vault_db.name) == 0, 60, "the wallet's session to end")
    assert "stopped" in wallet.log()


def test_a_missing_database_makes_it_unhealthy(start_wallet, postgres_server):
    wallet = start_wallet("no_such_database")
    status, body = wallet.get("/health")
    assert status == 503
    assert body == {
        "status": "unavailable",
        "error": "OperationalError",
        "database": {"host": postgres_server.host, "name": "no_such_database"},
    }
    assert wallet.get("/api/v2/accounts")[0] == 503
    for text in (json.dumps(body), wallet.log()):
        assert postgres_server.password not in text


def test_requests_are_logged_one_line_each(start_wallet, vault_db):
    wallet = start_wallet(vault_db.name)
    wallet.get("/health")
    wallet.get("/api/v2/accounts?limit=2")
    lines = [line for line in wallet.log().splitlines() if '"GET ' in line]
    assert len(lines) == 2
    assert '"GET /health HTTP/1.1" 200' in lines[0] and '"GET /api/v2/accounts?limit=2 HTTP/1.1" 200' in lines[1]
