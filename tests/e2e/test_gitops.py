"""Walwarden's requests synced by a real Argo CD (devstack/argocd.py) into the e2e vault's
namespace, as docs/gitops.md tells users to: the PreSync BackupRequest of
examples/argocd-presync-backup.yaml beside the wallet's Deployment, and a RestoreRequest
committed to git. What happened is read from the API server: the requests, the wallet's
Deployment (watched, so the order of events is seen as the API server reports it) and the
Application's status."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from kubernetes import client, watch

from devstack.argocd import ArgoCD
from devstack.gitrepo import LocalGitRepo
from devstack.pytest_kube import wait_for
from devstack.vault import ready_replicas
from tests.e2e.vaults import Vault, parse_time, wallet_deployment

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "argocd-presync-backup.yaml"
TIMEOUT = 300  # per wait; each ends as soon as what it waits for is seen
HOOK_PREFIX = "pre-upgrade-backup-"
FINISHED = ("Succeeded", "Failed", "Error")


def presync_backup(vault: Vault, admin_secret: str = "vault-db-admin") -> dict:
    """The shipped example itself, changed only where the local stack needs it."""
    hook = yaml.safe_load(EXAMPLE.read_text())
    spec = hook["spec"]
    spec["database"]["secretRef"]["name"] = admin_secret
    spec["database"]["databases"] = [vault.database]
    s3 = spec["storage"]["s3"]
    s3 |= {"bucket": vault.bucket, "prefix": f"{vault.namespace}/pre-upgrade"}
    s3 |= {"endpoint": vault.s3.endpoint, "forcePathStyle": True}
    s3["credentialsSecretRef"]["name"] = "s3-credentials"
    return hook


def emp_secret(vault: Vault) -> None:
    """The example's Encryptor Master Password Secret: outside the Application, as the docs say."""
    vault.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-emp"}, "stringData": {"password": "emp"}}
    )


def wallet_in_git(vault: Vault, release: str) -> dict:
    """The wallet's Deployment as the fixture deployed it, at `release` (an env var)."""
    deployment = wallet_deployment(vault.namespace, urlsplit(vault.wallet_url).hostname or "")
    # One pod on a fixed address: the old pod must be gone before the new one binds it.
    deployment["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    deployment["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "WALLET_RELEASE", "value": release})
    return deployment


class Recorder:
    """Each BackupRequest's phases and each generation of the wallet's Deployment, in the order the
    API server's watches report them, with when (time.monotonic())."""

    def __init__(self, vault: Vault):
        api = vault.cluster.api_client()
        self.namespace = vault.namespace
        self.custom, self.apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
        self.events: list[tuple[float, str, Any]] = []  # (at, name, phase or generation)
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._run, args=(self._backups, self._backup), daemon=True),
            threading.Thread(target=self._run, args=(self._wallet, self._deployment), daemon=True),
        ]

    def __enter__(self) -> Recorder:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not self._errors, f"a watch failed: events may be missing: {self._errors!r}"

    def first(self, name: str, value: Any) -> float:
        return min(at for at, seen, what in self.events if seen == name and what == value)

    def first_generation_after(self, generation: int) -> float:
        return min(at for at, seen, what in self.events if seen == "deployment/wallet" and what > generation)

    def hooks(self) -> set[str]:
        return {name for _, name, _ in self.events if name.startswith(HOOK_PREFIX)}

    def _run(self, listing, record) -> None:
        try:
            resource_version = None
            while not self._stop.is_set():
                for event in watch.Watch().stream(listing, resource_version=resource_version, timeout_seconds=2):
                    item = event["raw_object"]
                    if event["type"] == "ERROR":  # e.g. 410 Gone: watch again from now
                        resource_version = None
                        break
                    record(item)
                    resource_version = item["metadata"]["resourceVersion"]
        except BaseException as error:  # seen by __exit__: a dead watch must not pass silently
            self._errors.append(error)

    def _backups(self, **kwargs):
        return self.custom.list_namespaced_custom_object(
            "walwarden.io", "v1alpha1", self.namespace, "backuprequests", **kwargs
        )

    def _wallet(self, **kwargs):
        return self.apps.list_namespaced_deployment(self.namespace, field_selector="metadata.name=wallet", **kwargs)

    def _backup(self, item: dict) -> None:
        self._record(item["metadata"]["name"], (item.get("status") or {}).get("phase"))

    def _deployment(self, item: dict) -> None:
        self._record("deployment/wallet", item["metadata"]["generation"])

    def _record(self, name: str, value: Any) -> None:
        if not [e for e in self.events if e[1] == name and e[2] == value]:
            self.events.append((time.monotonic(), name, value))


def app_status(argocd: ArgoCD, app: str) -> dict:
    return argocd.get_application(app).get("status") or {}


def wait_app(argocd: ArgoCD, app: str, condition, what: str) -> dict:
    """Poll the Application's status until `condition(status)`; return that status."""
    seen: dict = {}

    def check() -> bool:
        seen.update(status=app_status(argocd, app))
        return bool(condition(seen["status"]))

    def explain() -> str:
        return f"\nApplication status: {json.dumps(seen.get('status'), indent=1)[-4000:]}" + argocd.logs()

    wait_for(check, TIMEOUT, what, on_timeout=explain)
    return seen["status"]


def sync_finished(revision: str):
    def finished(status: dict) -> bool:
        operation = status.get("operationState") or {}
        ran = operation.get("syncResult", {}).get("revision") or operation.get("operation", {}).get("sync", {}).get(
            "revision"
        )
        return operation.get("phase") in FINISHED and ran == revision

    return finished


def resource_health(status: dict, kind: str) -> tuple[str | None, str | None]:
    resource = next((r for r in status.get("resources", []) if r["kind"] == kind), {})
    return resource.get("health", {}).get("status"), resource.get("health", {}).get("message")


def hook_of(vault: Vault, revision: str) -> dict:
    """The BackupRequest Argo CD created as the PreSync hook of the sync of `revision`."""
    wait_for(lambda: hooks_of(vault, revision), TIMEOUT, f"the PreSync BackupRequest of {revision}")
    [hook] = hooks_of(vault, revision)
    return hook


def hooks_of(vault: Vault, revision: str) -> list[dict]:
    # Argo CD names a generateName hook <prefix><revision[:7]>-<phase>-<sync start, unix seconds>.
    prefix = f"{HOOK_PREFIX}{revision[:7]}-presync-"
    items = vault.cluster.kubectl_json(["get", "backuprequests", "-n", vault.namespace])["items"]
    return [i for i in items if i["metadata"]["name"].startswith(prefix)]


def assert_backed_up_before_the_upgrade(
    argocd: ArgoCD, app: str, vault: Vault, seen: Recorder, revision: str, generation: int
) -> dict:
    """The sync of `revision` took a backup, it Succeeded, and only then did the wallet's
    Deployment get a new generation (after `generation`)."""
    status = wait_app(argocd, app, sync_finished(revision), f"the sync of {revision} to finish")
    assert status["operationState"]["phase"] == "Succeeded", status["operationState"]
    hook = hook_of(vault, revision)
    name = hook["metadata"]["name"]
    assert hook["status"]["phase"] == "Succeeded", vault.describe("backuprequests", name)
    assert hook["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    wait_for(lambda: vault.get("deployments", "wallet")["metadata"]["generation"] > generation, TIMEOUT, "the upgrade")
    wait_for(lambda: [e for e in seen.events if e[1] == "deployment/wallet" and e[2] > generation], 60, "its event")
    # As the API server told it: Succeeded first, the new Deployment after.
    assert seen.first(name, "Succeeded") < seen.first_generation_after(generation), seen.events
    deployment = vault.cluster.kubectl_json(
        ["get", "deployment", "wallet", "-n", vault.namespace, "--show-managed-fields"]
    )
    applied = max(
        parse_time(f["time"]) for f in deployment["metadata"]["managedFields"] if f["manager"] == "argocd-controller"
    )
    assert parse_time(hook["status"]["completedAt"]) <= applied
    return hook


def test_a_presync_backup_succeeds_before_each_wallet_upgrade_and_each_sync_keeps_its_own(
    vault: Vault, argocd: ArgoCD, git_repo: LocalGitRepo
):
    emp_secret(vault)
    git_repo.write("wallet/presync-backup.yaml", presync_backup(vault))
    git_repo.write("wallet/wallet.yaml", wallet_in_git(vault, "1"))
    first = git_repo.commit_and_push("wallet 1, a backup before every sync")
    generation = vault.get("deployments", "wallet")["metadata"]["generation"]
    with (
        Recorder(vault) as seen,
        argocd.synced_application(vault.namespace, git_repo.url, "wallet", vault.namespace) as app,
    ):
        before_first = assert_backed_up_before_the_upgrade(argocd, app, vault, seen, first, generation)

        generation = vault.get("deployments", "wallet")["metadata"]["generation"]
        git_repo.write("wallet/wallet.yaml", wallet_in_git(vault, "2"))
        second = git_repo.commit_and_push("wallet 2")
        argocd.refresh(app)
        before_second = assert_backed_up_before_the_upgrade(argocd, app, vault, seen, second, generation)

        # generateName: a new request, a new backup, each sync; BeforeHookCreation keeps the first.
        names = {before_first["metadata"]["name"], before_second["metadata"]["name"]}
        assert seen.hooks() == names and len(names) == 2
        kept = vault.get("backuprequests", before_first["metadata"]["name"])
        assert kept["status"]["phase"] == "Succeeded"
        assert kept["status"]["artifact"]["uri"] != before_second["status"]["artifact"]["uri"]
        container = vault.get("deployments", "wallet")["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "WALLET_RELEASE", "value": "2"} in container["env"]
        wait_for(lambda: ready_replicas(vault.cluster, vault.namespace) == vault.replicas, TIMEOUT, "wallet 2 Ready")
