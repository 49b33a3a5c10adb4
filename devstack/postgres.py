"""A real PostgreSQL server in a temporary directory, for tests and the demo.

The server listens on 127.0.0.1 only, on a free port, with scram-sha-256 for TCP connections and
settings that trade durability for speed. The superuser's password never appears in a command
line, a log or a repr: initdb reads it from a file that is deleted afterwards, and clients get it
through dsn() or client_env() only.
"""

from __future__ import annotations

import atexit
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import psycopg
from psycopg import sql

from devstack.processes import free_port, log_tail

BINDIR_ENV = "WALWARDEN_PG_BINDIR"
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
# initdb and postgres refuse to run as root; Debian's postgresql package creates this OS user.
SERVER_OS_USER = "postgres"
HOST = "127.0.0.1"
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it


class PostgresError(RuntimeError):
    """The local PostgreSQL server could not be found, started or stopped."""


def find_bindir() -> Path:
    """The directory of initdb, pg_ctl, postgres, pg_dump and pg_restore.

    WALWARDEN_PG_BINDIR if set, else `pg_config --bindir` if it holds initdb (Debian's pg_config
    can come from libpq-dev alone, without a server), else the newest /usr/lib/postgresql/*/bin.
    """
    if env := os.environ.get(BINDIR_ENV):
        if not (Path(env) / "initdb").is_file():
            raise PostgresError(f"{BINDIR_ENV}={env} does not contain initdb")
        return Path(env)
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            out = ""
        if out.strip() and (Path(out.strip()) / "initdb").is_file():
            return Path(out.strip())
    versions = []
    for bindir in DEBIAN_PG_ROOT.glob("*/bin"):
        key = tuple(int(p) for p in bindir.parent.name.split(".") if p.isdigit())
        if key and (bindir / "initdb").is_file():
            versions.append((key, bindir))
    if versions:
        return max(versions)[1]
    raise PostgresError(
        "no PostgreSQL server binaries (initdb) found: install Debian's postgresql package, "
        f"or set {BINDIR_ENV} to the directory that holds initdb and pg_ctl"
    )


def _server_account() -> pwd.struct_passwd | None:
    """The OS account the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise PostgresError(
            f"running as root, and initdb refuses root, but there is no '{SERVER_OS_USER}' OS user "
            "to run the server as: install Debian's postgresql package (it creates that user)"
        ) from None


def _conf_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PostgresServer:
    """A throwaway PostgreSQL cluster: initdb into a new directory under datadir_parent, start, stop.

    Use as a context manager, or call start() and stop(). When run as root the server processes
    run as the 'postgres' OS user, which owns the cluster's directory.
    """

    def __init__(
        self, datadir_parent: Path, superuser: str = "postgres", password: str | None = None, bindir: Path | None = None
    ):
        self.datadir_parent = Path(datadir_parent)
        self._superuser = superuser
        self._password = password or secrets.token_urlsafe(24)
        self._bindir = bindir
        self._account: pwd.struct_passwd | None = None
        self._workdir: Path | None = None
        self._owns_workdir = False  # True when the directory lives outside datadir_parent (see _make_workdir)
        self._port: int | None = None
        self._version: str | None = None
        self._running = False

    def __repr__(self) -> str:  # never the password
        return (
            f"PostgresServer(host={HOST!r}, port={self._port!r}, superuser={self._superuser!r}, "
            f"workdir={str(self._workdir)!r})"
        )

    # -- properties ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        self._require_running()
        return self._port

    @property
    def superuser(self) -> str:
        return self._superuser

    @property
    def password(self) -> str:
        return self._password

    @property
    def version(self) -> str:
        """The server's server_version, e.g. '15.14 (Debian 15.14-0+deb12u1)'."""
        self._require_running()
        return self._version

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    @property
    def workdir(self) -> Path | None:
        """The cluster's directory: data/, the Unix socket and postgres.log."""
        return self._workdir

    @property
    def log_file(self) -> Path:
        return self._workdir / "postgres.log"

    @property
    def running(self) -> bool:
        return self._running

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> PostgresServer:
        if self._running:
            return self
        self._account = _server_account()
        self._workdir = self._make_workdir()
        try:
            self._initdb()
            self._pg_ctl_start()
        except PostgresError:
            self._remove_own_workdir()  # the error carries the log tail; a workdir under datadir_parent stays
            raise
        self._running = True
        atexit.register(self.stop)  # a session that ends without stop() must not leave a server behind
        with self.connect() as conn:
            self._version = conn.execute("SHOW server_version").fetchone()[0]
        return self

    def stop(self) -> None:
        if not self._running:
            return
        result = self._run_as_server([self.bindir / "pg_ctl", "stop", "-m", "fast", "-w", "-D", self._datadir])
        if result.returncode != 0:
            raise PostgresError(f"pg_ctl stop failed: {result.stdout.strip()}\n{log_tail(self.log_file)}")
        self._running = False
        atexit.unregister(self.stop)
        self._remove_own_workdir()

    # -- clients ------------------------------------------------------------------------------

    def dsn(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        """A libpq URI. Without user: the superuser and (unless password is given) its password."""
        user, password = self._credentials(user, password)
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password is not None else "")
        return f"postgresql://{auth}@{HOST}:{self._port}/{quote(dbname, safe='')}"

    def client_env(
        self, dbname: str = "postgres", user: str | None = None, password: str | None = None
    ) -> dict[str, str]:
        """os.environ plus PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE, for pg_dump, pg_restore and psql:
        the password goes through the environment, not the command line that `ps` shows."""
        user, password = self._credentials(user, password)
        env = {**os.environ, "PGHOST": HOST, "PGPORT": str(self._port), "PGUSER": user, "PGDATABASE": dbname}
        env.pop("PGPASSWORD", None)
        if password is not None:
            env["PGPASSWORD"] = password
        return env

    def connect(
        self, dbname: str = "postgres", user: str | None = None, password: str | None = None
    ) -> psycopg.Connection:
        return psycopg.connect(self.dsn(dbname, user, password), autocommit=True)

    def create_database(self, name: str, owner: str | None = None) -> None:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            stmt += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        with self.connect() as conn:
            conn.execute(stmt)

    def drop_database(self, name: str) -> None:
        """Drop the database if it exists, terminating its sessions first (WITH FORCE)."""
        with self.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def create_role(self, name: str, password: str, superuser: bool = False) -> None:
        with self.connect() as conn:
            # Hash client-side (libpq's PQencryptPasswordConn) so the plaintext never reaches the
            # server, where a statement log or an error report could show it.
            verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256")
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
                    sql.Identifier(name),
                    sql.SQL("SUPERUSER" if superuser else "NOSUPERUSER"),
                    sql.Literal(verifier.decode()),
                )
            )

    def terminate_sessions(self, dbname: str) -> int:
        """Terminate every other session connected to dbname; returns how many were terminated."""
        with self.connect() as conn:
            return conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            ).fetchone()[0]

    # -- internals ----------------------------------------------------------------------------

    @property
    def _datadir(self) -> Path:
        return self._workdir / "data"

    def _require_running(self) -> None:
        if not self._running:
            raise PostgresError("the PostgreSQL server is not running: call start() first")

    def _credentials(self, user: str | None, password: str | None) -> tuple[str, str | None]:
        self._require_running()
        user = user or self._superuser
        if password is None and user == self._superuser:
            password = self._password
        return user, password

    def _run_as_server(self, argv: list[str | Path]) -> subprocess.CompletedProcess:
        """Run a server binary as the server's OS user, in the cluster directory, output captured."""
        account = self._account
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # no stray PGDATA/PGPORT
        env["LC_ALL"] = "C"  # English messages, which start() looks for in the log
        kwargs = {}
        if account is not None:
            env.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
            kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(a) for a in argv],
            cwd=self._workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **kwargs,
        )

    def _give_to_server(self, path: Path) -> None:
        if self._account is not None:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def _write_server_file(self, path: Path, text: str) -> None:
        # Created 0600 from the start: the password file must never be readable by others.
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(text)
        self._give_to_server(path)

    def _make_workdir(self) -> Path:
        self.datadir_parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="pg-", dir=self.datadir_parent))
        if self._account is None:
            return workdir
        self._give_to_server(workdir)
        self._workdir = workdir
        if self._run_as_server(["test", "-w", workdir]).returncode == 0:
            return workdir
        # root's temporary trees (pytest's among them) are mode 0700, so the postgres user cannot
        # reach inside: use a directory of our own in the system temp dir, removed by stop().
        workdir.rmdir()
        workdir = Path(tempfile.mkdtemp(prefix="walwarden-pg-"))
        self._give_to_server(workdir)
        self._owns_workdir = True
        return workdir

    def _initdb(self) -> None:
        pwfile = self._workdir / "pwfile"
        self._write_server_file(pwfile, self._password + "\n")
        try:
            result = self._run_as_server(
                [
                    self.bindir / "initdb",
                    "-D",
                    self._datadir,
                    "-U",
                    self._superuser,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",  # a throwaway cluster need not survive a power cut
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PostgresError(f"initdb failed:\n{result.stdout.strip()}")
        with open(self._datadir / "postgresql.conf", "a") as conf:
            conf.write("\ninclude 'walwarden.conf'\n")

    def _pg_ctl_start(self) -> None:
        for attempt in range(1, START_ATTEMPTS + 1):
            self._port = free_port(HOST)
            self._write_config()
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            result = self._run_as_server(
                [self.bindir / "pg_ctl", "start", "-w", "-t", "60", "-D", self._datadir, "-l", self.log_file]
            )
            if result.returncode == 0:
                return
            # pg_ctl may have given up waiting on a postmaster that is still coming up.
            self._run_as_server([self.bindir / "pg_ctl", "stop", "-m", "immediate", "-D", self._datadir])
            port_taken = b"Address already in use" in self._log_bytes()[log_offset:]
            if not port_taken or attempt == START_ATTEMPTS:
                raise PostgresError(
                    f"PostgreSQL did not start (pg_ctl: {result.stdout.strip()}); "
                    f"last lines of the server log:\n{log_tail(self.log_file)}"
                )

    def _remove_own_workdir(self) -> None:
        if self._owns_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def _write_config(self) -> None:
        # Rewritten before every start attempt, since the port may change.
        self._write_server_file(
            self._datadir / "walwarden.conf",
            "\n".join(
                [
                    f"listen_addresses = {_conf_string(HOST)}",
                    f"port = {self._port}",
                    f"unix_socket_directories = {_conf_string(str(self._workdir))}",
                    "max_connections = 100",
                    # Speed over durability: the cluster is thrown away after the tests.
                    "fsync = off",
                    "synchronous_commit = off",
                    "full_page_writes = off",
                    "",
                ]
            ),
        )

    def _log_bytes(self) -> bytes:
        try:
            return self.log_file.read_bytes()
        except OSError:
            return b""
