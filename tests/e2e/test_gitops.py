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

import pytest
import yaml
from kubernetes import client, watch

from devstack import vaultdb
from devstack.argocd import ArgoCD
from devstack.gitrepo import LocalGitRepo
from devstack.operator_process import OperatorProcess
from devstack.pytest_kube import wait_for
from devstack.vault import ready_replicas
from tests.e2e.vaults import Vault, account_names, parse_time, require_approvals, wallet_deployment

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


def test_a_failing_presync_backup_fails_the_sync_with_its_message_and_the_wallet_is_not_upgraded(
    vault: Vault, argocd: ArgoCD, git_repo: LocalGitRepo
):
    """The backup's admin Secret has a wrong password: the hook ends Failed, the sync with it
    (retry.limit 0, so one attempt), and the wallet's Deployment is the one deployed before."""
    emp_secret(vault)
    vault.admin_secret("vault-db-admin-stale", password="not-the-password")
    git_repo.write("wallet/presync-backup.yaml", presync_backup(vault, admin_secret="vault-db-admin-stale"))
    git_repo.write("wallet/wallet.yaml", wallet_in_git(vault, "1"))
    revision = git_repo.commit_and_push("wallet 1, a backup with a stale password")
    before = vault.get("deployments", "wallet")
    with argocd.synced_application(vault.namespace, git_repo.url, "wallet", vault.namespace, retry_limit=0) as app:
        status = wait_app(argocd, app, sync_finished(revision), f"the sync of {revision} to finish")
        operation = status["operationState"]
        assert operation["phase"] == "Failed", operation
        hook = hook_of(vault, revision)
        assert hook["status"]["phase"] == "Failed", vault.describe("backuprequests", hook["metadata"]["name"])
        assert "check the user and password of the admin connection Secret" in hook["status"]["message"]
        [entry] = [r for r in operation["syncResult"]["resources"] if r["kind"] == "BackupRequest"]
        assert entry["hookPhase"] == "Failed" and hook["status"]["message"] in entry["message"], entry

        # And it stays failed: a reconciliation after the failure syncs nothing more.
        failed_at = parse_time(operation["finishedAt"])
        later = wait_app(
            argocd,
            app,
            lambda s: parse_time(s.get("reconciledAt") or "1970-01-01T00:00:00Z") > failed_at,
            "a reconciliation after the failed sync",
        )
        assert later["operationState"]["startedAt"] == operation["startedAt"], later["operationState"]
        after = vault.get("deployments", "wallet")
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert after["spec"]["template"] == before["spec"]["template"]
        assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas
        assert [h["metadata"]["uid"] for h in hooks_of(vault, revision)] == [hook["metadata"]["uid"]]


def pod_uids(vault: Vault) -> dict[str, str]:
    pods = vault.cluster.kubectl_json(["get", "pods", "-n", vault.namespace, "-l", "app.kubernetes.io/name"])["items"]
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}


@pytest.mark.parametrize(
    "approvals, refusal, says",
    [(True, "TokenReused", "issue a new token"), (False, "RestoreAlreadyRan", "spec.allowRepeat: true")],
    ids=["approvals-required", "approvals-off"],
)
def test_a_restore_from_git_shows_its_steps_runs_once_and_a_pruned_and_re_added_copy_is_refused(
    vault: Vault, argocd: ArgoCD, git_repo: LocalGitRepo, tmp_path: Path, approvals: bool, refusal: str, says: str
):
    """A RestoreRequest committed to git: Argo CD shows it Progressing with its step, then
    Healthy; a manual sync, a hard refresh and automated syncs run nothing again; pruned from git
    and added back it is refused with every service untouched: as a reused token when approvals
    are required, as a repeat of a restore that already ran when they are off (the safe default)."""
    from walwarden.api import RestoreRequestSpec
    from walwarden.failpoints import ANNOUNCEMENT, ENV, RESUME_ENV
    from walwarden.security.tokens import Approval, issue_token

    resume = tmp_path / "resume"  # the operator waits in the stop window until this exists
    held_env = {ENV: "stop-window:check=pause", RESUME_ENV: str(resume)}
    spec: dict[str, Any] = {"safetyBackup": False}
    if approvals:
        key = require_approvals(vault, tmp_path / "operator.log", held_env)
        sha256 = vault.backup()["status"]["artifact"]["sha256"]
        approved = RestoreRequestSpec.model_validate(vault.restore_request("restore-from-git", **spec)["spec"])
        approval = Approval.of_request(vault.namespace, "restore-from-git", approved, sha256)
        spec["approvalToken"] = issue_token(key, approval, ttl_seconds=3600)
    else:
        vault.operator.stop()
        env = {"WALWARDEN_POLL_SECONDS": "1", **held_env}
        vault.operator = OperatorProcess(vault.cluster, vault.namespace, tmp_path / "operator.log", env).start()
        vault.backup()
    request = vault.restore_request("restore-from-git", **spec)
    name = request["metadata"]["name"]
    git_repo.write("restore/restore.yaml", request)
    # Something that stays in the path once the request is pruned: a path that goes missing is a
    # ComparisonError, and an automated sync never prunes an Application down to nothing.
    git_repo.write("restore/keep.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "restores"}})
    git_repo.commit_and_push("restore last night's backup")
    with argocd.synced_application(vault.namespace, git_repo.url, "restore", vault.namespace) as app:
        log = vault.operator.process.log_path
        wait_for(lambda: f"{ANNOUNCEMENT}stop-window:check" in log.read_text(), TIMEOUT, "the restore's stop window")
        step = vault.get("restorerequests", name)["status"]["currentStep"]
        progressing = wait_app(
            argocd,
            app,
            lambda s: (
                resource_health(s, "RestoreRequest")[0] == "Progressing"
                and step in (resource_health(s, "RestoreRequest")[1] or "")
            ),
            f"the RestoreRequest Progressing in step {step}",
        )
        assert resource_health(progressing, "RestoreRequest")[1].startswith(step), progressing["resources"]
        resume.touch()
        healthy = wait_app(argocd, app, lambda s: resource_health(s, "RestoreRequest")[0] == "Healthy", "Healthy")
        done = vault.get("restorerequests", name)
        assert done["status"]["phase"] == "Succeeded", vault.describe("restorerequests", name)
        assert resource_health(healthy, "RestoreRequest")[1] == done["status"]["message"]
        wait_for(lambda: ready_replicas(vault.cluster, vault.namespace) == vault.replicas, TIMEOUT, "services up")

        # Re-sync, hard refresh, automated sync: the finished request is left as it is.
        running = pod_uids(vault)
        argocd.refresh(app, hard=True)
        argocd.sync(app, initiated_by="e2e-resync")
        resynced = wait_app(
            argocd,
            app,
            lambda s: (
                (s.get("operationState") or {}).get("operation", {}).get("initiatedBy", {}).get("username")
                == "e2e-resync"
                and s["operationState"].get("phase") in FINISHED
            ),
            "the manual sync",
        )
        assert resynced["operationState"]["phase"] == "Succeeded", resynced["operationState"]
        synced_at = parse_time(resynced["operationState"]["finishedAt"])
        wait_app(
            argocd,
            app,
            lambda s: parse_time(s.get("reconciledAt") or "1970-01-01T00:00:00Z") > synced_at,
            "a reconciliation after it",
        )
        again = vault.get("restorerequests", name)
        assert again["metadata"]["uid"] == done["metadata"]["uid"] and again["status"] == done["status"]
        assert pod_uids(vault) == running

        # Pruned from git, then added back: a new object with the same, used token.
        git_repo.remove("restore/restore.yaml")
        git_repo.commit_and_push("restore done")
        argocd.refresh(app)
        wait_for(
            lambda: not vault.cluster.kubectl_json(["get", "restorerequests", "-n", vault.namespace])["items"],
            TIMEOUT,
            "the prune",
        )
        vaultdb.mutate_accounts(vault.postgres.dsn(vault.database))  # written after the restore
        written = account_names(vault.postgres.dsn(vault.database))
        git_repo.write("restore/restore.yaml", request)
        git_repo.commit_and_push("restore last night's backup (again, by mistake)")
        argocd.refresh(app)
        degraded = wait_app(argocd, app, lambda s: resource_health(s, "RestoreRequest")[0] == "Degraded", "Degraded")
        refused = vault.get("restorerequests", name)
        assert refused["metadata"]["uid"] != done["metadata"]["uid"]
        assert refused["status"]["phase"] == "Failed", vault.describe("restorerequests", name)
        assert [c["reason"] for c in refused["status"]["conditions"] if c["type"] == "Failed"] == [refusal]
        assert resource_health(degraded, "RestoreRequest")[1] == refused["status"]["message"]
        assert says in refused["status"]["message"]
        assert pod_uids(vault) == running
        assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas
        assert account_names(vault.postgres.dsn(vault.database)) == written


def test_a_backup_schedule_in_git_is_healthy_and_degraded_once_its_last_backup_failed(
    vault: Vault, argocd: ArgoCD, git_repo: LocalGitRepo
):
    """Walwarden's BackupSchedule health check in the real Argo CD: Healthy with the next run,
    Degraded (naming the failed backup) once a run's backup failed."""
    vault.admin_secret("vault-db-admin-stale", password="not-the-password")
    spec = {"database": {"secretRef": {"name": "vault-db-admin-stale"}, "databases": [vault.database]}}
    scheduled = {
        "apiVersion": "walwarden.io/v1alpha1",
        "kind": "BackupSchedule",
        "metadata": {"name": "every-minute"},
        "spec": {"schedule": "* * * * *", "backupTemplate": {"spec": spec | {"storage": vault.storage()}}},
    }
    git_repo.write("schedules/every-minute.yaml", scheduled)
    git_repo.commit_and_push("a backup every minute")
    with argocd.synced_application(vault.namespace, git_repo.url, "schedules", vault.namespace) as app:
        healthy = wait_app(
            argocd, app, lambda s: resource_health(s, "BackupSchedule")[0] == "Healthy", "the schedule Healthy"
        )
        assert "next run at" in (resource_health(healthy, "BackupSchedule")[1] or "")
        degraded = wait_app(
            argocd, app, lambda s: resource_health(s, "BackupSchedule")[0] == "Degraded", "the schedule Degraded"
        )
        status = vault.get("backupschedules", "every-minute")["status"]
        assert status["lastBackupPhase"] == "Failed", status
        message = resource_health(degraded, "BackupSchedule")[1] or ""
        assert message.startswith(f"the last scheduled backup {status['lastBackup']} failed"), message
        assert "no successful backup yet" in message
