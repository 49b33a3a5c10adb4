"""A stand-in Institutional Vault deployment in a namespace (DESIGN §1): the workloads wallet,
policy-node0..2, nats and orchestrator, and a db-info Secret per database user."""

from __future__ import annotations

import json
from dataclasses import dataclass

from devstack.cluster import ClusterAccess

# service -> (kind, replicas, uses the database)
DEFAULT_SERVICES: dict[str, tuple[str, int, bool]] = {
    "wallet": ("Deployment", 2, True),
    "policy-node0": ("StatefulSet", 1, True),
    "policy-node1": ("StatefulSet", 1, True),
    "policy-node2": ("StatefulSet", 1, True),
    "nats": ("StatefulSet", 3, False),
    "orchestrator": ("Deployment", 1, True),
}


@dataclass(frozen=True)
class DatabaseInfo:
    host: str
    port: int
    user: str
    password: str
    name: str

    def secret_data(self) -> dict[str, str]:
        return {
            "DB_HOST": self.host,
            "DB_PORT": str(self.port),
            "DB_USER": self.user,
            "DB_PASSWORD": self.password,
            "DB_NAME": self.name,
        }


def workload(
    name: str, kind: str, replicas: int, pod_labels: dict[str, str] | None = None, container: dict | None = None
) -> dict:
    spec = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": name, **(pod_labels or {})}},
            "spec": {"containers": [container or {"name": name, "image": f"vault/{name}:demo"}]},
        },
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
        spec["podManagementPolicy"] = "Parallel"
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def db_info_secret(environment: str, namespace: str, service: str, database: DatabaseInfo) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{environment}.{namespace}.{service}.db-info"},
        "stringData": database.secret_data(),
    }


def deploy_vault(
    cluster: ClusterAccess,
    namespace: str,
    environment: str,
    database: DatabaseInfo,
    services: dict[str, tuple[str, int, bool]] = DEFAULT_SERVICES,
    overrides: dict[str, dict] | None = None,
) -> None:
    """Apply the vault's Secrets and workloads; `overrides` replaces a service's manifest."""
    items = []
    for service, (kind, replicas, uses_db) in services.items():
        if uses_db:
            items.append(db_info_secret(environment, namespace, service, database))
        items.append((overrides or {}).get(service) or workload(service, kind, replicas))
    cluster.kubectl(
        ["apply", "-n", namespace, "-f", "-"], stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )


def ready_replicas(cluster: ClusterAccess, namespace: str) -> dict[str, int]:
    found = {}
    for kind in ("deployments", "statefulsets"):
        for item in cluster.kubectl_json(["get", kind, "-n", namespace])["items"]:
            found[item["metadata"]["name"]] = item.get("status", {}).get("readyReplicas", 0) or 0
    return found
