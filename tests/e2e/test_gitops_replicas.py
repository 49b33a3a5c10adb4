"""Restores that GitOps cannot undermine (issue 12 item 3), with the real Argo CD: the vault's
wallet Deployment is synced from git by an Application with automated sync and self-heal.
Without ignoring its replicas, Argo CD would scale it back up while the restore has it stopped:
the restore is refused in Preflight, every service running. With the replicas ignored as
docs/gitops.md says, the restore runs and the Application stays Synced throughout."""

from __future__ import annotations

import threading
import time

import pytest

from devstack.argocd import ArgoCD
from devstack.gitrepo import LocalGitRepo
from devstack.pytest_kube import wait_for
from devstack.vault import ready_replicas
from tests.e2e.vaults import Vault

pytestmark = pytest.mark.integration

IGNORE_REPLICAS = {
    "ignoreDifferences": [{"group": "apps", "kind": "Deployment", "name": "wallet", "jsonPointers": ["/spec/replicas"]}]
}
RESPECT_IGNORE = ["RespectIgnoreDifferences=true"]


def wallet_from_the_cluster(vault: Vault) -> dict:
    """The wallet Deployment as a manifest for git: what the vault runs, without server fields."""
    live = vault.cluster.kubectl_json(["get", "deployment", "wallet", "-n", vault.namespace])
    metadata = {key: live["metadata"][key] for key in ("name", "labels") if key in live["metadata"]}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": live["spec"]}


def app_status(argocd: ArgoCD, name: str) -> tuple[str | None, str | None]:
    status = argocd.get_application(name).get("status", {})
    return status.get("sync", {}).get("status"), status.get("health", {}).get("status")


class StatusRecorder(threading.Thread):
    """The Application's (sync, health) every half second while a restore runs."""

    def __init__(self, argocd: ArgoCD, name: str):
        super().__init__(daemon=True)
        self.argocd, self.name, self.seen, self.done = argocd, name, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.seen.append(app_status(self.argocd, self.name))
            time.sleep(0.5)


def test_argo_cd_self_heal_on_the_replicas_is_refused_and_ignoring_them_lets_the_restore_run(
    vault, argocd: ArgoCD, git_repo: LocalGitRepo
):
    vault.backup()
    git_repo.write("vault/wallet.yaml", wallet_from_the_cluster(vault))
    git_repo.commit_and_push("the vault's wallet")
    app = argocd.application("vault-wallet", git_repo.url, "vault", vault.namespace)
    argocd.apply(app)
    try:
        wait_for(lambda: app_status(argocd, "vault-wallet") == ("Synced", "Healthy"), 180, "the wallet synced")
        tracking = vault.get("deployments", "wallet")["metadata"].get("annotations", {})
        assert tracking.get("argocd.argoproj.io/tracking-id", "").startswith("vault-wallet:")

        # Self-heal, replicas not ignored: refused before anything stops.
        vault.apply(vault.restore_request("under-self-heal", safetyBackup=False))
        status = vault.wait_finished("restorerequests", "under-self-heal")["status"]
        assert status["phase"] == "Failed" and status["currentStep"] == "Preflight", status
        [failed] = [c for c in status["conditions"] if c["type"] == "Failed"]
        assert failed["reason"] == "GitOpsWouldRestartServices"
        assert "wallet (Deployment, Application argocd/vault-wallet)" in failed["message"]
        assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas

        # The replicas ignored as docs/gitops.md says: the restore runs, Argo CD stays Synced.
        app["spec"].update(IGNORE_REPLICAS)
        app["spec"]["syncPolicy"]["syncOptions"] = RESPECT_IGNORE
        argocd.apply(app)
        argocd.refresh("vault-wallet")
        wait_for(lambda: app_status(argocd, "vault-wallet") == ("Synced", "Healthy"), 180, "the wallet synced")
        recorder = StatusRecorder(argocd, "vault-wallet")
        recorder.start()
        vault.apply(vault.restore_request("replicas-ignored", safetyBackup=False))
        status = vault.wait_finished("restorerequests", "replicas-ignored", timeout=300)["status"]
        recorder.done.set()
        recorder.join()
        assert status["phase"] == "Succeeded", vault.describe("restorerequests", "replicas-ignored")
        preflight = next(s for s in status["steps"] if s["name"] == "Preflight")["message"]
        assert "Argo CD leaves the replicas of wallet alone" in preflight
        assert recorder.seen and {sync for sync, _ in recorder.seen} == {"Synced"}, recorder.seen
        assert "Degraded" not in {health for _, health in recorder.seen}, recorder.seen
        wait_for(lambda: app_status(argocd, "vault-wallet") == ("Synced", "Healthy"), 180, "the wallet healthy")
        assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas
    finally:
        argocd.delete_applications("vault-wallet")
