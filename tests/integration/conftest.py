"""Shared pieces of the integration tests: a namespace with the operator, PostgreSQL and MinIO
wired together for BackupRequests (and a stand-in vault for quiesce and restores)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from devstack.pytest_kube import wait_for
from devstack.vault import DEFAULT_SERVICES, DatabaseInfo, deploy_vault, ready_replicas


@dataclass
class BackupStack:
    cluster: object
    namespace: str
    postgres: object
    s3: object
    bucket: str
    operator: object

    def create_admin_secret(self, name: str = "vault-db-admin", password: str | None = None) -> None:
        data = {
            "host": "127.0.0.1",
            "port": str(self.postgres.port),
            "user": self.postgres.superuser,
            "password": password or self.postgres.password,
            "sslmode": "disable",
        }
        self.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data})

    def apply(self, manifest: dict) -> None:
        self.cluster.kubectl(["apply", "-n", self.namespace, "-f", "-"], stdin=json.dumps(manifest))

    def backup_request(self, name: str, databases: list[str], **spec) -> dict:
        return {
            "apiVersion": "walwarden.io/v1alpha1",
            "kind": "BackupRequest",
            "metadata": {"name": name},
            "spec": {
                "database": {"secretRef": {"name": "vault-db-admin"}, "databases": databases},
                "storage": {
                    "s3": {
                        "bucket": self.bucket,
                        "endpoint": self.s3.endpoint,
                        "forcePathStyle": True,
                        "prefix": "backups",
                        "credentialsSecretRef": {"name": "s3-credentials"},
                    }
                },
                **spec,
            },
        }

    def get(self, name: str) -> dict:
        return self.cluster.kubectl_json(["get", "backuprequest", name, "-n", self.namespace])

    def wait_finished(self, name: str, timeout: float = 180) -> dict:
        wait_for(
            lambda: (self.get(name).get("status") or {}).get("phase") in ("Succeeded", "Failed"),
            timeout,
            f"BackupRequest {name} to finish",
        )
        return self.get(name)


def describe(stack: BackupStack, name: str) -> str:
    return json.dumps(stack.get(name).get("status"), indent=1) + "\n--- operator log ---\n" + stack.operator.log()


def deploy_stand_in_vault(stack: BackupStack) -> dict[str, int]:
    database = DatabaseInfo("127.0.0.1", stack.postgres.port, "postgres", "unused", "vault")
    deploy_vault(stack.cluster, stack.namespace, "test", database)
    expected = {name: replicas for name, (_, replicas, _) in DEFAULT_SERVICES.items()}
    wait_for(lambda: ready_replicas(stack.cluster, stack.namespace) == expected, 60, "vault Ready")
    return expected


@pytest.fixture
def stack(cluster, namespace, operator, postgres_server, s3_server, s3_bucket) -> BackupStack:
    result = BackupStack(cluster, namespace, postgres_server, s3_server, s3_bucket, operator)
    result.create_admin_secret()
    result.apply({**s3_server.credentials_secret("s3-credentials")})
    return result
