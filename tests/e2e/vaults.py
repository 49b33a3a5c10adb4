"""The e2e tests' vault: the stand-in Institutional Vault deployed on the local stack, with its
database, object store and operator, and the helpers the tests use to drive and inspect it."""

from __future__ import annotations

import json
import random
import time
import urllib.request
from dataclasses import dataclass, field

import pytest

from devstack import wallet
from devstack.operator_process import OperatorProcess
from devstack.pytest_kube import wait_for
from devstack.vault import DEFAULT_SERVICES, DatabaseInfo, deploy_vault, ready_replicas, workload

pytestmark = pytest.mark.integration

ENVIRONMENT = "test"
STOP_TIERS = [["wallet"], ["policy-node0", "policy-node1", "policy-node2"], ["nats"]]
DB_SERVICES = ["orchestrator", "policy-node0", "policy-node1", "policy-node2", "wallet"]
EXEC = {"devstack.walwarden.io/exec": "true"}
# WALWARDEN_STOP_TIMEOUT_SECONDS where a test needs it to pass: for the whole ScaleDown (the
# wallet, a real process, stops first) and for ScaleUp's loud condition, so never a few seconds a
# busy machine could spend stopping the services that do go away.
STOP_TIMEOUT_SECONDS = 30


APPROVAL_KEY = b"approval-key-for-tests-0123456789"


@dataclass
class Vault:
    cluster: object
    namespace: str
    postgres: object
    s3: object
    bucket: str
    operator: OperatorProcess
    database: str
    wallet_url: str
    replicas: dict[str, int] = field(default_factory=dict)

    def apply(self, manifest: dict) -> None:
        self.cluster.kubectl(["apply", "-n", self.namespace, "-f", "-"], stdin=json.dumps(manifest))

    def get(self, plural: str, name: str) -> dict:
        return self.cluster.kubectl_json(["get", plural, name, "-n", self.namespace])

    def wait_finished(self, plural: str, name: str, timeout: float = 240) -> dict:
        wait_for(
            lambda: (self.get(plural, name).get("status") or {}).get("phase") in ("Succeeded", "Failed", "RolledBack"),
            timeout,
            f"{plural}/{name} to finish\n",
            on_timeout=lambda: self.describe(plural, name)[-20000:],
        )
        return self.get(plural, name)

    def describe(self, plural: str, name: str) -> str:
        return json.dumps(self.get(plural, name).get("status"), indent=1) + "\n" + self.operator.log()

    def admin_secret(
        self, name: str, password: str | None = None, user: str | None = None, server: object | None = None
    ) -> None:
        """An admin connection Secret for the vault's server (or `server`, e.g. a fresh one)."""
        server = server or self.postgres
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name},
                "stringData": {
                    "host": "127.0.0.1",
                    "port": str(server.port),
                    "user": user or server.superuser,
                    "password": password or server.password,
                    "sslmode": "disable",
                },
            }
        )

    def backup(self, name: str = "nightly", **spec) -> dict:
        self.apply(
            {
                "apiVersion": "walwarden.io/v1alpha1",
                "kind": "BackupRequest",
                "metadata": {"name": name},
                "spec": {
                    "database": {"secretRef": {"name": "vault-db-admin"}, "databases": [self.database]},
                    "storage": self.storage(),
                    **spec,
                },
            }
        )
        backup = self.wait_finished("backuprequests", name)
        assert backup["status"]["phase"] == "Succeeded", self.describe("backuprequests", name)
        return backup

    def storage(self) -> dict:
        return {
            "s3": {
                "bucket": self.bucket,
                "endpoint": self.s3.endpoint,
                "forcePathStyle": True,
                "credentialsSecretRef": {"name": "s3-credentials"},
            }
        }

    def restore_request(self, name: str, **spec) -> dict:
        body = {
            "mode": "InPlace",
            "source": {"backupRef": {"name": "nightly"}},
            "verify": {
                "healthUrl": f"{self.wallet_url}/health",
                "accountsUrl": f"{self.wallet_url}/api/v2/accounts",
                "timeoutSeconds": 60,
            },
            "sessionPolicy": {"onRemaining": "Terminate", "waitSeconds": 3},
        }
        body.update(spec)
        return {
            "apiVersion": "walwarden.io/v1alpha1",
            "kind": "RestoreRequest",
            "metadata": {"name": name},
            "spec": body,
        }

    def redirected_request(self, name: str, database: str, **spec) -> dict:
        """A Redirected restore into `database` on the same server (admin Secret new-db-admin),
        repointing the services' DB_NAME to it."""
        return self.restore_request(
            name,
            mode="Redirected",
            target={"secretRef": {"name": "new-db-admin"}, "database": database},
            redirect={"dbHost": "127.0.0.1", "dbName": database, "environment": ENVIRONMENT},
            **spec,
        )

    def wallet_accounts(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.wallet_url}/api/v2/accounts?limit=1000", timeout=5) as response:
            return json.loads(response.read())["accounts"]

    def db_info(self, service: str) -> dict:
        return self.cluster.kubectl_json(
            ["get", "secret", f"{ENVIRONMENT}.{self.namespace}.{service}.db-info", "-n", self.namespace]
        )["data"]


def parse_time(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def status_updates(vault: Vault, plural: str, name: str, timeout: float):
    """Each status of the request as the API server stores it, in order, until `timeout`."""
    from kubernetes import client, watch

    api = client.CustomObjectsApi(vault.cluster.api_client())
    deadline, resource_version = time.monotonic() + timeout, None
    while (left := deadline - time.monotonic()) > 0:
        stream = watch.Watch().stream(
            api.list_namespaced_custom_object,
            "walwarden.io",
            "v1alpha1",
            vault.namespace,
            plural,
            field_selector=f"metadata.name={name}",
            resource_version=resource_version,
            timeout_seconds=max(1, int(left)),
        )
        for event in stream:
            resource_version = event["object"]["metadata"]["resourceVersion"]
            yield event["object"].get("status") or {}


def audit_verify(vault: Vault, uri: str, heads: list[str]):
    import os
    import subprocess
    import sys

    env = {**os.environ, "AWS_ACCESS_KEY_ID": vault.s3.access_key, "AWS_SECRET_ACCESS_KEY": vault.s3.secret_key}
    args = [
        sys.executable,
        "-m",
        "walwarden",
        "audit",
        "verify",
        uri,
        "--endpoint",
        vault.s3.endpoint,
        "--force-path-style",
        *[arg for head in heads for arg in ("--expect-head", head)],
    ]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)


def restore_killing_at(vault: Vault, tmp_path, points: list[str], request: dict, between=None) -> list[str]:
    """Apply the RestoreRequest `request` with an operator that kills itself (SIGKILL, a failpoint)
    at the first of `points` it reaches, then start a new one armed with the points not reached
    yet, until the request finishes; `between()` runs after each kill. Returns the points hit, in
    order; the vault is left with a fresh operator stopped (the caller's fixture restarts none)."""
    import signal

    from walwarden.failpoints import ANNOUNCEMENT, ENV

    name, remaining, hit = request["metadata"]["name"], list(points), []

    def operator_with(armed: list[str]) -> OperatorProcess:
        env = {"WALWARDEN_POLL_SECONDS": "1", ENV: ",".join(armed)}
        return OperatorProcess(vault.cluster, vault.namespace, tmp_path / f"operator-{len(hit)}.log", env).start()

    def finished() -> bool:
        phase = (vault.get("restorerequests", name).get("status") or {}).get("phase")
        return phase in ("Succeeded", "Failed", "RolledBack")

    vault.operator.stop()
    vault.operator = operator_with(remaining)
    vault.apply(request)
    try:
        while not finished():
            wait_for(lambda: finished() or not vault.operator.alive(), 300, "a kill or the end")
            if vault.operator.alive():
                break
            assert vault.operator.process.popen.returncode == -signal.SIGKILL
            [point] = [
                line.removeprefix(ANNOUNCEMENT)
                for line in vault.operator.log().splitlines()
                if line.startswith(ANNOUNCEMENT)
            ]
            hit.append(point)
            remaining.remove(point)
            if between is not None:
                between()
            vault.operator = operator_with(remaining)
        wait_for(finished, 300, f"restorerequests/{name} to finish")
    finally:
        vault.operator.stop()
    return hit


def flip_a_byte_of_the_dump(vault: Vault, backup: dict) -> None:
    """Corrupt a backup's dump in S3 (its manifest, with the sha256, left as it was)."""
    bucket, key = backup["status"]["artifact"]["uri"].removeprefix("s3://").split("/", 1)
    s3 = vault.s3.client()
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))


def account_names(dsn: str) -> list[str]:
    import psycopg

    with psycopg.connect(dsn) as connection:
        return [row[0] for row in connection.execute("SELECT name FROM accounts ORDER BY id")]


def server_databases(vault: Vault) -> dict[str, bool]:
    """The vault database and those beside it (<db>_...) on the server: name -> accepts connections."""
    import psycopg

    with psycopg.connect(vault.postgres.dsn()) as connection:
        rows = connection.execute(
            "SELECT datname, datallowconn FROM pg_database WHERE datname = %s OR starts_with(datname, %s)",
            (vault.database, f"{vault.database}_"),
        ).fetchall()
    return dict(rows)


def accounts_in_closed_database(vault: Vault, name: str) -> list[str]:
    """The accounts of a database that refuses connections (opened for the look, closed again)."""
    import psycopg
    from psycopg import sql

    def allow(allowed: bool) -> None:
        with psycopg.connect(vault.postgres.dsn(), autocommit=True) as connection:
            connection.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                    sql.Identifier(name), sql.SQL(str(allowed).lower())
                )
            )

    allow(True)
    try:
        return account_names(vault.postgres.dsn(name))
    finally:
        allow(False)


def assert_switched(vault: Vault, status: dict, history: list[str]) -> None:
    """After a Switch restore: the previous database is kept, named in status, refusing connections,
    with the accounts as they were up to the stop; no sibling is left."""
    previous = status["previousDatabase"]["name"]
    assert server_databases(vault) == {vault.database: True, previous: False}, status
    assert accounts_in_closed_database(vault, previous) == history


def wallet_deployment(namespace: str, address: str) -> dict:
    """The stand-in wallet's Deployment (one replica, run by the pod executor, bound to `address`)."""
    return workload(
        "wallet", "Deployment", 1, EXEC, wallet.container(f"{ENVIRONMENT}.{namespace}.wallet.db-info", bind=address)
    )


def deploy_stand_in_vault(cluster, namespace, operator, postgres_server, s3_server, s3_bucket, vault_db) -> Vault:
    """The stand-in vault in `namespace`, its services Ready, on `postgres_server`'s `vault_db`."""
    if not cluster.local:
        pytest.skip("the stand-in wallet runs on the local stack's pod executor only")
    address = f"127.3.{random.randint(0, 255)}.{random.randint(1, 254)}"
    result = Vault(
        cluster, namespace, postgres_server, s3_server, s3_bucket, operator, vault_db.name, f"http://{address}:8080"
    )
    result.admin_secret("vault-db-admin")
    result.apply(s3_server.credentials_secret("s3-credentials"))
    info = DatabaseInfo(
        "127.0.0.1", postgres_server.port, postgres_server.superuser, postgres_server.password, vault_db.name
    )
    deploy_vault(cluster, namespace, ENVIRONMENT, info, overrides={"wallet": wallet_deployment(namespace, address)})
    result.replicas = {name: replicas for name, (_, replicas, _) in DEFAULT_SERVICES.items()}
    result.replicas["wallet"] = 1
    wait_for(lambda: ready_replicas(cluster, namespace) == result.replicas, 300, "the vault to be Ready")
    return result


def require_approvals(vault: Vault, log_path, env: dict[str, str] | None = None) -> bytes:
    """Restart the vault's operator with approvals required (its key, and the ledger of spent
    tokens, in a namespace of the operator's own, as a Helm install has it) and `env`; returns the
    key to issue tokens with."""
    operator_namespace = f"{vault.namespace[:59]}-op"
    vault.cluster.kubectl(["create", "namespace", operator_namespace], check=False)  # kept if it exists
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "walwarden-approval-key", "namespace": operator_namespace},
        "stringData": {"key": APPROVAL_KEY.decode()},
    }
    vault.cluster.kubectl(["apply", "-f", "-"], stdin=json.dumps(secret))
    vault.operator.stop()
    approvals = {"WALWARDEN_APPROVALS_REQUIRED": "true", "WALWARDEN_OPERATOR_NAMESPACE": operator_namespace}
    vault.operator = OperatorProcess(
        vault.cluster, vault.namespace, log_path, {"WALWARDEN_POLL_SECONDS": "1", **approvals, **(env or {})}
    ).start()
    return APPROVAL_KEY
