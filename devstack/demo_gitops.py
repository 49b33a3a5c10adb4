"""`scripts/demo.sh --gitops`: the demo's vault under a real Argo CD (devstack/argocd.py). An
Application syncs the wallet's Deployment and the PreSync BackupRequest of
examples/argocd-presync-backup.yaml from a local git repository; a wallet upgrade committed to
git takes the backup first, then a RestoreRequest committed to git restores it, the Application's
health shown as it goes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from devstack.argocd import ArgoCD
from devstack.gitrepo import LocalGitRepo

REPO = Path(__file__).resolve().parent.parent
APP = "vault"
IGNORE_REPLICAS = [
    {"group": "apps", "kind": kind, "jsonPointers": ["/spec/replicas"]} for kind in ("Deployment", "StatefulSet")
]


def presync_backup(bucket: str, endpoint: str) -> dict:
    """examples/argocd-presync-backup.yaml itself, pointed at the local stack's S3 and database."""
    backup = yaml.safe_load((REPO / "examples" / "argocd-presync-backup.yaml").read_text())
    backup["spec"]["storage"]["s3"].update(
        {
            "bucket": bucket,
            "endpoint": endpoint,
            "forcePathStyle": True,
            "credentialsSecretRef": {"name": "s3-credentials"},
        }
    )
    backup["spec"]["storage"]["s3"].pop("region", None)
    backup["spec"].pop("encryptorSecrets", None)  # the demo's vault has no EMP Secret
    return backup


def hooks(cluster, namespace: str) -> dict[str, dict]:
    """The BackupRequests the PreSync hook made, by name."""
    items = cluster.kubectl_json(["get", "backuprequests", "-n", namespace])["items"]
    return {b["metadata"]["name"]: b for b in items if b["metadata"]["name"].startswith("pre-upgrade-backup-")}


def manifest_of(cluster, kind: str, name: str, namespace: str) -> dict:
    """A live workload as a manifest for git: its spec, without what the API server adds."""
    live = cluster.kubectl_json(["get", kind, name, "-n", namespace])
    metadata = {key: live["metadata"][key] for key in ("name", "labels") if key in live["metadata"]}
    return {"apiVersion": live["apiVersion"], "kind": live["kind"], "metadata": metadata, "spec": live["spec"]}


class ApplicationView:
    """Prints the Application's sync and health, and each Walwarden request's, when they change."""

    def __init__(self, argocd: ArgoCD):
        self.argocd = argocd
        self.last: tuple | None = None

    def look(self) -> dict:
        status = self.argocd.get_application(APP).get("status", {})
        requests = tuple(
            (r["kind"], r["name"], r.get("health", {}).get("status"), r.get("health", {}).get("message", ""))
            for r in status.get("resources", [])
            if r.get("group") == "walwarden.io" and r.get("health")  # hooks have none: they ran before the sync
        )
        seen = (status.get("sync", {}).get("status"), status.get("health", {}).get("status"), requests)
        if seen != self.last:
            print(f"  Application {APP}: sync {seen[0]}, health {seen[1]}", flush=True)
            for kind, name, health, message in requests:
                print(f"    {kind}/{name}: {health} {message[:110]}", flush=True)
            self.last = seen
        return status

    def until(self, condition: Callable[[dict], bool], what: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.look()
            if condition(status):
                return status
            time.sleep(1)
        raise SystemExit(f"demo failed: timed out waiting for {what}")


def run(workdir: Path, cluster, namespace: str, bucket: str, endpoint: str, say: Callable[[str], None]) -> None:
    say("GitOps: a real Argo CD (application controller, repo server, redis) with Walwarden's health checks")
    with ArgoCD(workdir / "argocd", cluster) as argocd:
        git = LocalGitRepo(workdir / "git")
        git.write("vault/wallet.yaml", manifest_of(cluster, "deployment", "wallet", namespace))
        git.write("vault/pre-upgrade-backup.yaml", presync_backup(bucket, endpoint))
        git.commit_and_push("the vault's wallet, and a backup before every sync")
        app = argocd.application(APP, git.url, "vault", namespace)
        app["spec"]["ignoreDifferences"] = IGNORE_REPLICAS  # docs/gitops.md: restores set replicas
        app["spec"]["syncPolicy"]["syncOptions"] = ["RespectIgnoreDifferences=true"]
        argocd.apply(app)
        view = ApplicationView(argocd)
        view.until(lambda s: s.get("sync", {}).get("status") == "Synced", "the first sync")

        say("GitOps 1. A wallet upgrade committed to git: the PreSync BackupRequest runs first")
        wallet = manifest_of(cluster, "deployment", "wallet", namespace)
        wallet["spec"]["template"]["metadata"].setdefault("annotations", {})["vault.example/release"] = "2"
        git.write("vault/wallet.yaml", wallet)
        upgrade = git.commit_and_push("wallet: release 2")
        argocd.refresh(APP)
        view.until(
            lambda s: (
                s.get("sync", {}).get("revision") == upgrade
                and (s.get("operationState") or {}).get("phase") == "Succeeded"
            ),
            "the upgrade's sync",
        )
        taken = hooks(cluster, namespace)
        hook = taken[max(taken, key=lambda name: taken[name]["metadata"]["creationTimestamp"])]
        print(f"  {hook['metadata']['name']}: {hook['status']['phase']} {hook['status']['artifact']['uri']}")

        say("GitOps 2. A RestoreRequest committed to git: its health in Argo CD follows the steps")
        restore = {
            "apiVersion": "walwarden.io/v1alpha1",
            "kind": "RestoreRequest",
            "metadata": {"name": "restore-from-git", "annotations": {"argocd.argoproj.io/sync-options": "Prune=false"}},
            "spec": {"mode": "InPlace", "source": {"backupRef": {"name": hook["metadata"]["name"]}}},
        }
        git.write("vault/restore.yaml", restore)
        git.commit_and_push("restore the pre-upgrade backup")
        argocd.refresh(APP)
        status = view.until(
            lambda s: any(
                r.get("kind") == "RestoreRequest" and r.get("health", {}).get("status") in ("Healthy", "Degraded")
                for r in s.get("resources", [])
            ),
            "the restore to finish in Argo CD's eyes",
            timeout=600,
        )
        print(f"  Application {APP} health: {json.dumps(status.get('health', {}))}")
        print(f"  each sync took a PreSync backup: {', '.join(sorted(hooks(cluster, namespace)))}")
        # Let the Application go without its finalizer: the vault's workloads stay (the demo goes on).
        patch = json.dumps([{"op": "remove", "path": "/metadata/finalizers"}])
        cluster.kubectl(["patch", "application", APP, "-n", "argocd", "--type=json", "-p", patch])
