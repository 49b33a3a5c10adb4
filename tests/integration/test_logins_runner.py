"""`walwarden runner logins`, as a Redirected restore's Preflight Job runs it, against a real
PostgreSQL server: each service's login on the new host, with the user and password from the
environment only. The host is the requester's: a server that asks for the password in cleartext
(or as md5), a real one or a listener that records what it gets, never receives it."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from devstack.postgres import PostgresServer
from devstack.processes import free_port
from walwarden.runner.contract import ERROR_PREFIX, login_argument, login_password_env, login_user_env

pytestmark = pytest.mark.integration

# The operator's TLS policy, given to the Job as PGSSLMODE: the local stack's servers have no TLS.
NO_TLS = "disable"


@pytest.fixture
def role(postgres_server):
    """A login role with a password of its own, dropped afterwards."""
    name, password = f"svc_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    postgres_server.create_role(name, password)
    yield name, password
    with postgres_server.connect() as connection:
        connection.execute(f'DROP ROLE IF EXISTS "{name}"')


def run_logins(
    logins: list[tuple[str, str, int, str, str, str]], ssl_mode: str | None = NO_TLS
) -> subprocess.CompletedProcess:
    """The runner as the logins Job runs it; `ssl_mode` None: no policy given (the runner's own default)."""
    args, env = [], {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    if ssl_mode:
        env["PGSSLMODE"] = ssl_mode
    for index, (service, host, port, database, user, password) in enumerate(logins):
        args += ["--login", login_argument(service, host, port, database)]
        env[login_user_env(index)], env[login_password_env(index)] = user, password
    return subprocess.run(
        [sys.executable, "-m", "walwarden", "runner", "logins", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_logins_that_work_are_proven_and_a_database_yet_to_be_created_counts(postgres_server, vault_db, role):
    user, password = role
    host, port = postgres_server.host, postgres_server.port
    result = run_logins(
        [
            ("wallet", host, port, vault_db.name, user, password),
            ("policy-node0", host, port, "vault_not_restored_yet", user, password),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert f"wallet (user {user!r} on {host}:{port}, database {vault_db.name!r}): logged in" in result.stdout
    assert "policy-node0" in result.stdout and "authenticated (the database is created by the restore)" in result.stdout


def test_a_wrong_password_is_refused_naming_service_and_user_never_the_password(postgres_server, vault_db, role):
    user, _ = role
    host, port = postgres_server.host, postgres_server.port
    result = run_logins(
        [
            ("orchestrator", host, port, vault_db.name, user, role[1]),
            ("wallet", host, port, vault_db.name, user, "the-staging-password"),
        ]
    )
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith(f"{ERROR_PREFIX}ServiceLoginRefused: the new database refuses the login of wallet")
    assert f"user {user!r}" in line and "password authentication failed" in line
    assert "orchestrator" not in line  # its login works
    assert "spec.redirect.credentials" in line
    assert "the-staging-password" not in result.stderr + result.stdout


def test_a_host_nothing_listens_on_is_unreachable_and_says_to_check_db_host(role):
    user, password = role
    port = free_port()  # nothing listens there
    result = run_logins([("wallet", "127.0.0.1", port, "vault", user, password)])
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith(f"{ERROR_PREFIX}ServiceDatabaseUnreachable: the services cannot reach their new database")
    assert f"127.0.0.1:{port}" in line and "spec.redirect.dbHost" in line


# --- a server that asks for the password in cleartext ---------------------------------------------


@pytest.fixture
def cleartext_server(tmp_path) -> Iterator[PostgresServer]:
    """A second server whose pg_hba.conf asks every TCP login for its password in cleartext
    (method `password`), and which logs every connection it authorizes."""
    with PostgresServer(tmp_path / "cleartext") as server:
        hba = server.workdir / "data" / "pg_hba.conf"
        hba.write_text("host all all 127.0.0.1/32 password\n" + hba.read_text())
        with server.connect() as connection:
            connection.execute("ALTER SYSTEM SET log_connections = on")
            connection.execute("SELECT pg_reload_conf()")
        wait_for_cleartext(server)
        yield server


def wait_for_cleartext(server: PostgresServer, timeout: float = 10) -> None:
    """Until the reloaded pg_hba.conf holds: asked with require_auth, the server wants cleartext."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(server.dsn(), require_auth="scram-sha-256").close()
        except psycopg.OperationalError as error:
            if "cleartext" in str(error):
                return
        if time.monotonic() > deadline:
            raise AssertionError("the server does not ask for a cleartext password")
        time.sleep(0.2)


def test_a_server_asking_for_the_cleartext_password_never_gets_it(cleartext_server, tmp_path):
    server = cleartext_server
    user, password = f"svc_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    server.create_role(user, password)
    result = run_logins([("wallet", server.host, server.port, "postgres", user, password)])
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith(f"{ERROR_PREFIX}ServiceLoginNotScram: the new database at {server.host}:{server.port}")
    assert f"wallet (user {user!r}" in line and "server requested a cleartext password" in line
    assert password not in result.stderr + result.stdout
    authorized = f"connection authorized: user={user}"
    assert authorized not in server.log_file.read_text()  # no login completed with the password
    # The control: a client that answers cleartext requests logs in, and the log shows it.
    psycopg.connect(server.dsn(user=user, password=password)).close()
    wait_until_logged(server, authorized)


def wait_until_logged(server: PostgresServer, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log_file.read_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the server's log")
        time.sleep(0.1)


# --- a listener that records what it receives -----------------------------------------------------

SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104
CLEARTEXT_PASSWORD = struct.pack("!cii", b"R", 8, 3)  # AuthenticationCleartextPassword
MD5_PASSWORD = struct.pack("!cii4s", b"R", 12, 5, b"salt")  # AuthenticationMD5Password


class PasswordListener:
    """A PostgreSQL server's first words on loopback: no TLS, then a request for the password (in
    cleartext or md5). What clients send is recorded: all of it, and what came after the request."""

    def __init__(self, ask: bytes) -> None:
        self.ask, self.received, self.answers = ask, bytearray(), bytearray()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            with client:
                client.settimeout(5)
                self._converse(client)

    def _converse(self, client: socket.socket) -> None:
        while (code := self._startup(client)) in (SSL_REQUEST, GSSENC_REQUEST):
            client.sendall(b"N")  # no TLS, no GSS encryption: go on in the clear
        if code is None:
            return
        client.sendall(self.ask)
        try:
            while chunk := client.recv(65536):
                self.received += chunk
                self.answers += chunk
        except OSError:
            pass

    def _startup(self, client: socket.socket) -> int | None:
        """Read one startup-phase message (length, code, rest); its code, None on end of stream."""
        head = self._read(client, 8)
        if len(head) < 8:
            return None
        length, code = struct.unpack("!ii", head)
        self.received += head + self._read(client, length - 8)
        return int(code)

    def _read(self, client: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size and (chunk := client.recv(size - len(data))):
            data += chunk
        return data

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture(params=[CLEARTEXT_PASSWORD, MD5_PASSWORD], ids=["cleartext", "md5"])
def listener(request) -> Iterator[PasswordListener]:
    listening = PasswordListener(request.param)
    yield listening
    listening.stop()


def test_a_listener_asking_for_the_password_receives_no_password_message(listener):
    password = f"pw-{uuid.uuid4().hex}"
    result = run_logins([("wallet", "127.0.0.1", listener.port, "vault", "vault_wallet", password)])
    assert result.returncode == 1
    assert error_line(result).startswith(f"{ERROR_PREFIX}ServiceLoginNotScram: ")
    listener.stop()  # everything the runner sent is in
    assert b"vault_wallet" in listener.received  # it did talk to the listener: the startup message
    assert password.encode() not in listener.received
    assert not listener.answers.startswith(b"p")  # no PasswordMessage, not even an md5 hash


def test_without_a_tls_policy_a_server_without_tls_gets_no_login_at_all(listener):
    password = f"pw-{uuid.uuid4().hex}"
    result = run_logins([("wallet", "127.0.0.1", listener.port, "vault", "vault_wallet", password)], ssl_mode=None)
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith(f"{ERROR_PREFIX}ServiceLoginTlsFailed: ") and "sslmode verify-full" in line
    listener.stop()
    assert b"vault_wallet" not in listener.received and password.encode() not in listener.received
