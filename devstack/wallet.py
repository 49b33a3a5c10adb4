"""The stand-in wallet service: the vault's user-facing API, as end-to-end tests and the demo need it.

It serves what a restore's Verify step checks (DESIGN §1, §3):

    GET /health            200 {"status": "ok", "database": {"host", "name"}} when `SELECT 1` works,
                           else 503 with the error's class (never its text, never the password);
                           503 "blocked" too while the table wallet_health_blocks (if it exists)
                           holds a row: how tests make a wallet that fails readiness only on
                           some data, e.g. a backup taken with the row in it
    GET /api/v2/accounts   200 {"accounts": [{"id", "name"}], "count": n} from the accounts table
                           (devstack/vaultdb.py), ordered by id, ?limit=N (default 100, at most
                           1000); 503 when the database cannot answer; with WALLET_AUTH_TOKEN set,
                           401 unless `Authorization: Bearer <token>`

Like the real wallet it reads its database from the environment once, at start: DB_HOST, DB_PORT
(default 5432), DB_USER, DB_PASSWORD, DB_NAME, which in the cluster come from its db-info Secret
through envFrom. So a repointed secret takes effect when the pod restarts, and not before. It
binds $POD_IP (default 127.0.0.1) port $PORT (default 8080), holds one database connection
(opened on first use, reopened after a failure) and, on SIGTERM, closes it and exits 0, so its
database session ends with its pod.

    DB_HOST=... DB_USER=... DB_PASSWORD=... DB_NAME=... python -m devstack.wallet
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 8080
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
APPLICATION_NAME = "wallet"  # what pg_stat_activity shows, e.g. in ScaleDown's remaining-sessions report
CONNECT_TIMEOUT_SECONDS = 3  # a probe must get an answer, not hang on an unreachable host
STATEMENT_TIMEOUT_MS = 5000
CLOSE_WAIT_SECONDS = 2  # how long SIGTERM waits for an in-flight query before exiting anyway
log = logging.getLogger("wallet")


class ConfigurationError(Exception):
    """The environment does not say which database to use."""


@dataclass(frozen=True)
class DatabaseSettings:
    host: str
    port: int
    user: str
    name: str
    password: str = field(default="", repr=False)

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> DatabaseSettings:
        missing = [name for name in ("DB_HOST", "DB_USER", "DB_NAME") if not env.get(name)]
        if missing:
            raise ConfigurationError(
                f"{', '.join(missing)} not set (in the cluster they come from the wallet's db-info Secret)"
            )
        try:
            port = int(env.get("DB_PORT") or 5432)
        except ValueError:
            raise ConfigurationError(f"DB_PORT is not a port number: {env['DB_PORT']!r}") from None
        return cls(env["DB_HOST"], port, env["DB_USER"], env["DB_NAME"], env.get("DB_PASSWORD", ""))

    def labels(self) -> dict[str, str]:
        """What the service may show about its database: where it is, not how to get in."""
        return {"host": self.host, "name": self.name}


class Database:
    """One connection, opened on first use and reopened after it fails; queries take turns."""

    def __init__(self, settings: DatabaseSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None

    def query(self, statement: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            while True:
                reused = self._conn is not None and not self._conn.closed
                try:
                    return self._connection().execute(statement, params).fetchall()
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    self._discard()
                    # A reused connection may have died since its last use (the server restarted,
                    # a restore terminated it): one retry on a new one. A new one failing is final.
                    if not reused:
                        raise

    def close(self) -> None:
        # Under the lock, so an in-flight query is not pulled from under its thread; a query that
        # hangs longer than CLOSE_WAIT_SECONDS loses its session with the process anyway.
        if self._lock.acquire(timeout=CLOSE_WAIT_SECONDS):
            try:
                self._discard()
            finally:
                self._lock.release()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            s = self.settings
            self._conn = psycopg.connect(
                host=s.host,
                port=s.port,
                user=s.user,
                password=s.password,
                dbname=s.name,
                autocommit=True,
                application_name=APPLICATION_NAME,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            )
        return self._conn

    def _discard(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass  # already broken: nothing left to close
            self._conn = None


class WalletServer(ThreadingHTTPServer):
    daemon_threads = True  # a slow request never holds up the exit on SIGTERM

    def __init__(self, address: tuple[str, int], database: Database, auth_token: str | None):
        super().__init__(address, WalletHandler)
        self.database = database
        self.auth_token = auth_token


class WalletHandler(BaseHTTPRequestHandler):
    server: WalletServer
    server_version = "walwarden-wallet-standin"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        routes = {"/health": self._health, "/api/v2/accounts": self._accounts}
        route = routes.get(url.path)
        if route is None:
            self._send(404, {"error": f"no such endpoint: {url.path}"})
            return
        status, body = route(parse_qs(url.query))
        self._send(status, body)

    def _health(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        database = self.server.database
        try:
            (exists,) = database.query("SELECT to_regclass('wallet_health_blocks') IS NOT NULL")[0]
            blocked = exists and database.query("SELECT EXISTS (SELECT FROM wallet_health_blocks)")[0][0]
        except psycopg.Error as error:
            return 503, {"status": "unavailable", "database": database.settings.labels(), "error": type(error).__name__}
        if blocked:
            return 503, {"status": "blocked", "database": database.settings.labels()}
        return 200, {"status": "ok", "database": database.settings.labels()}

    def _accounts(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if not self._authorized():
            return 401, {"error": "missing or wrong bearer token"}
        try:
            limit = int(query.get("limit", [str(DEFAULT_LIMIT)])[-1])
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            return 400, {"error": f"limit must be a whole number from 1 to {MAX_LIMIT}"}
        try:
            rows = self.server.database.query("SELECT id, name FROM accounts ORDER BY id LIMIT %s", (limit,))
        except psycopg.Error as error:
            return 503, {"error": "the database did not answer", "errorClass": type(error).__name__}
        return 200, {"accounts": [{"id": id_, "name": name} for id_, name in rows], "count": len(rows)}

    def _authorized(self) -> bool:
        expected = self.server.auth_token
        if not expected:
            return True
        given = self.headers.get("Authorization", "")
        # Constant time, and on bytes: compare_digest refuses non-ASCII str.
        return hmac.compare_digest(given.encode(), f"Bearer {expected}".encode())

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="wallet"')
        self.end_headers()
        self.wfile.write(data)

    # -- logging: one line per request; the request line holds no secret (the token is a header)

    def parse_request(self) -> bool:
        self._started = time.monotonic()
        return super().parse_request()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        elapsed = (time.monotonic() - getattr(self, "_started", time.monotonic())) * 1000
        log.info('%s "%s" %s %.1fms', self.client_address[0], self.requestline, code, elapsed)

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        pass  # send_error() logs the response through log_request too: one line is enough


def container(
    db_info_secret: str, *, port: int = DEFAULT_PORT, auth_token_secret: str | None = None, bind: str | None = None
) -> dict:
    """The wallet's container for a Deployment on the local stack (run by devstack's pod executor):
    its database from the db-info Secret, bound to the pod's IP, Ready when /health answers.
    auth_token_secret names a Secret whose key `token` becomes WALLET_AUTH_TOKEN. `bind` fixes
    the address instead of the pod's (there is no Service routing on the local stack, so a test
    that must know the URL before the pod exists binds a loopback address of its own)."""
    address = {"value": bind} if bind else {"valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    env = [
        {"name": "POD_IP", **address},
        {"name": "PORT", "value": str(port)},
        {"name": "PYTHONPATH", "value": str(REPO)},  # the pod's working directory is not the repository
    ]
    if auth_token_secret:
        env.append(
            {"name": "WALLET_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": auth_token_secret, "key": "token"}}}
        )
    return {
        "name": "wallet",
        "image": "vault/wallet:standin",
        "command": [sys.executable, "-m", "devstack.wallet"],
        "envFrom": [{"secretRef": {"name": db_info_secret}}],
        "env": env,
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": "http", **({"host": bind} if bind else {})},
            "periodSeconds": 1,
        },
    }


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s wallet %(message)s")
    try:
        settings = DatabaseSettings.from_environment(os.environ)
        address = (os.environ.get("POD_IP") or "127.0.0.1", int(os.environ.get("PORT") or DEFAULT_PORT))
    except (ConfigurationError, ValueError) as error:
        log.error("cannot start: %s", error)
        return 2
    database = Database(settings)
    try:
        server = WalletServer(address, database, os.environ.get("WALLET_AUTH_TOKEN") or None)
    except OSError as error:
        log.error("cannot listen on %s:%d: %s", *address, error.strerror)
        return 1

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever() to return, which runs in this (the main) thread:
        # it must be called from another one.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving on http://%s:%d; database %s on %s:%d", *address, settings.name, settings.host, settings.port)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    database.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
