"""A real Argo CD (devstack/argocd.py) syncs Walwarden requests from a git repository and judges
their health with Walwarden's shipped Lua health checks (argocd/argocd-cm-patch.yaml, installed
as docs/gitops.md says). No operator runs: the test writes the requests' status itself, as the
operator would, and reads what Argo CD makes of it from the Application's status in the API
server."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import yaml

from devstack.argocd import ArgoCD
from devstack.cluster import ClusterAccess
from devstack.gitrepo import LocalGitRepo
from devstack.pytest_kube import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 120  # per step; each ends as soon as Argo CD shows it
ARTIFACT = {
    "uri": "s3://vault-backups/prod/vault/vault-2025-06-01-0a1b2c3d/vault.dump",
    "manifestUri": "s3://vault-backups/prod/vault/vault-2025-06-01-0a1b2c3d/manifest.json",
    "sha256": "0" * 64,
    "sizeBytes": 4096,
}


def test_argocd_syncs_requests_from_git_and_reports_their_health(
    argocd: ArgoCD, cluster: ClusterAccess, crds, namespace: str, git_repo: LocalGitRepo
):
    backup = yaml.safe_load((EXAMPLES / "backup.yaml").read_text())
    restore = yaml.safe_load((EXAMPLES / "restore-inplace.yaml").read_text())
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vault-settings"}, "data": {"tier": "1"}}
    git_repo.write("vault/backup.yaml", backup)
    git_repo.write("vault/restore.yaml", restore)
    git_repo.write("vault/settings.yaml", settings)
    first = git_repo.commit_and_push("vault: a backup, a restore and its settings")

    with argocd.synced_application(namespace, git_repo.url, "vault", namespace) as app:
        watch = Watch(argocd, app)

        # Synced from git; no status yet: both requests wait for the operator.
        watch.until(lambda s: s.revision == first and s.sync == "Synced", "synced at the first commit")
        watch.until_health(
            "BackupRequest", "Progressing", "waiting for the Walwarden operator to accept the BackupRequest"
        )
        watch.until_health(
            "RestoreRequest", "Progressing", "waiting for the Walwarden operator to accept the RestoreRequest"
        )
        assert cluster.kubectl_json(["get", "configmap", "vault-settings", "-n", namespace])["data"] == {"tier": "1"}

        # A change pushed to git reaches the cluster.
        settings["data"]["tier"] = "2"
        git_repo.write("vault/settings.yaml", settings)
        second = git_repo.commit_and_push("vault: tier 2")
        argocd.refresh(app)
        watch.until(lambda s: s.revision == second and s.sync == "Synced", "synced at the second commit")
        assert cluster.kubectl_json(["get", "configmap", "vault-settings", "-n", namespace])["data"] == {"tier": "2"}

        # What the operator would write, phase by phase. A new message with the same health shows
        # at the next reconciliation (Argo CD ignores status-only updates that keep the health):
        # every 10 s here.
        restore_status = partial(write_status, cluster, "restorerequest", restore["metadata"]["name"], namespace)
        backup_status = partial(write_status, cluster, "backuprequest", backup["metadata"]["name"], namespace)
        step = {"name": "ScaleDown", "state": "Running", "message": "stopping tier 1 (wallet)"}
        restore_status({"phase": "Running", "currentStep": "ScaleDown", "steps": [step]})
        watch.until_health("RestoreRequest", "Progressing", "ScaleDown: stopping tier 1 (wallet)")

        backup_status({"phase": "Succeeded", "message": "BackupRequest succeeded", "artifact": ARTIFACT})
        watch.until_health("BackupRequest", "Healthy", f"BackupRequest succeeded: {ARTIFACT['uri']}")

        failed = "Preflight: EMP fingerprint mismatch: the target's vault-emp is not the backup's; nothing was changed"
        restore_status({"phase": "Failed", "message": failed})
        watch.until_health("RestoreRequest", "Degraded", failed)
        watch.until(lambda s: s.health == "Degraded", "the Application Degraded by its failed RestoreRequest")


def write_status(cluster: ClusterAccess, kind: str, name: str, namespace: str, status: dict) -> None:
    """Merge `status` into the request's status subresource, as the operator writes it."""
    cluster.kubectl(
        ["patch", kind, name, "-n", namespace, "--subresource=status", "--type=merge"]
        + ["-p", json.dumps({"status": status})]
    )


class AppStatus:
    def __init__(self, app: dict):
        status = app.get("status", {})
        self.sync = status.get("sync", {}).get("status")
        self.revision = status.get("sync", {}).get("revision")
        self.health = status.get("health", {}).get("status")
        self.resources = {r["kind"]: r for r in status.get("resources", [])}

    def resource_health(self, kind: str) -> tuple[str | None, str | None]:
        health = self.resources.get(kind, {}).get("health", {})
        return health.get("status"), health.get("message")


class Watch:
    """Polls one Application's status in the API server; on a timeout, says what it last saw."""

    def __init__(self, argocd: ArgoCD, name: str):
        self.argocd, self.name = argocd, name
        self.last: dict = {}

    def until(self, condition, what: str) -> None:
        def check() -> bool:
            self.last = self.argocd.get_application(self.name)
            return condition(AppStatus(self.last))

        wait_for(check, TIMEOUT, what, on_timeout=self._explain)

    def until_health(self, kind: str, health: str, message: str) -> None:
        self.until(lambda s: s.resource_health(kind) == (health, message), f"{kind} {health}: {message}")

    def _explain(self) -> str:
        return f"\nApplication status: {json.dumps(self.last.get('status', {}), indent=1)[-3000:]}" + self.argocd.logs()
