"""RestoreRequest end to end on the real local stack: operator, runner Jobs and a stand-in wallet
run for real (local pod executor), PostgreSQL and MinIO. Order is observed from the API server."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import threading
import time

import pytest

from devstack import vaultdb
from devstack.admission import AdmissionHook
from devstack.observe import PodObserver, assert_tiers_in_order
from devstack.operator_process import OperatorProcess
from devstack.pytest_kube import wait_for
from devstack.vault import ready_replicas
from tests.e2e.vaults import (
    DB_SERVICES,
    ENVIRONMENT,
    STOP_TIERS,
    STOP_TIMEOUT_SECONDS,
    Vault,
    account_names,
    assert_switched,
    audit_verify,
    flip_a_byte_of_the_dump,
    parse_time,
    require_approvals,
    restore_killing_at,
    server_databases,
    status_updates,
)
from walwarden.api import RestoreRequestSpec
from walwarden.security.tokens import Approval, issue_token
from walwarden.storage.audit import verify_chain


def test_in_place_overwrite_restore_brings_the_backed_up_accounts_back(vault):
    vault.backup()
    original = account_names(vault.postgres.dsn(vault.database))
    vaultdb.mutate_accounts(vault.postgres.dsn(vault.database))
    assert account_names(vault.postgres.dsn(vault.database)) != original
    with PodObserver(vault.cluster, vault.namespace) as observer:
        vault.apply(vault.restore_request("in-place", strategy="Overwrite"))
        restore = vault.wait_finished("restorerequests", "in-place")
    status = restore["status"]
    assert status["phase"] == "Succeeded", vault.describe("restorerequests", "in-place")
    assert account_names(vault.postgres.dsn(vault.database)) == original
    assert [a["name"] for a in vault.wallet_accounts()] == original[: len(vault.wallet_accounts())]
    assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas
    # Order, from the API server: stops tier by tier, starts in reverse, tiers never overlapping.
    assert_tiers_in_order(observer, "deleted", STOP_TIERS)
    assert_tiers_in_order(observer, "ready", list(reversed(STOP_TIERS)))
    assert max(observer.times("deleted", sum(STOP_TIERS, []))) < min(observer.times("ready", sum(STOP_TIERS, [])))
    steps = {s["name"]: s["state"] for s in status["steps"]}
    assert steps["SafetyBackup"] == "Succeeded" and "Reconfigure" not in steps and "Switch" not in steps
    assert steps["Rollback"] == "Skipped" and status["strategy"] == "Overwrite"
    assert status["downtimeSeconds"] > 0 and status["dataLossWindow"]["seconds"] >= 0
    assert status["originalReplicas"] == {k: v for k, v in vault.replicas.items() if k != "orchestrator"}
    restore_jobs = vault.cluster.kubectl_json(["get", "jobs", "-n", vault.namespace, "-l", "walwarden.io/role=restore"])
    assert len(restore_jobs["items"]) == 1
    # Staged: the restore Job was there before the first service stopped, and pg_restore ran on the go.
    job_created = restore_jobs["items"][0]["metadata"]["creationTimestamp"]
    assert parse_time(job_created) <= parse_time(status["scaledDownAt"])
    assert status["restoreGoAt"] and status["databaseModified"] is True
    # The audit chain beside the artifact holds the backup's and the restore's transitions, unbroken.
    manifest_uri = vault.get("backuprequests", "nightly")["status"]["artifact"]["manifestUri"]
    bucket, key = manifest_uri.removeprefix("s3://").split("/", 1)
    text = (
        vault.s3.client().get_object(Bucket=bucket, Key=key.rpartition("/")[0] + "/audit.log")["Body"].read().decode()
    )
    verify_chain(text)
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["reason"] for r in records if r["name"] == "in-place"][-1] == "Succeeded"
    assert {"DumpSucceeded", "ScaleDownStarted", "RestoreSucceeded", "ScaleUpSucceeded", "VerifySucceeded"} <= {
        r["reason"] for r in records
    }
    assert vault.postgres.password not in text
    # Each request anchors the log in its status; `walwarden audit verify` checks the log still holds
    # those heads, so a log cut short (a valid chain, just shorter) is caught.
    log_uri = status["audit"]["log"]
    assert log_uri == f"s3://{bucket}/{key.rpartition('/')[0]}/audit.log"
    heads = [status["audit"]["chainHead"], vault.get("backuprequests", "nightly")["status"]["audit"]["chainHead"]]
    assert audit_verify(vault, log_uri, heads).returncode == 0
    s3 = vault.s3.client()
    s3.put_object(
        Bucket=bucket,
        Key=key.rpartition("/")[0] + "/audit.log",
        Body=("\n".join(text.splitlines()[:-1]) + "\n").encode(),
    )
    cut = audit_verify(vault, log_uri, heads)
    assert cut.returncode == 1 and "cut short or rewritten" in cut.stderr, cut.stderr


def test_redirected_restore_repoints_every_secret_and_leaves_the_original_alone(vault):
    vault.backup()
    vaultdb.mutate_accounts(vault.postgres.dsn(vault.database))
    mutated = account_names(vault.postgres.dsn(vault.database))
    new_database = f"{vault.database}_redirected"
    vault.admin_secret("new-db-admin")
    with PodObserver(vault.cluster, vault.namespace) as observer:
        vault.apply(vault.redirected_request("redirected", new_database))
        served_while_building, building_at = watch_the_build(vault, "redirected")
        restore = vault.wait_finished("restorerequests", "redirected")
    assert restore["status"]["phase"] == "Succeeded", vault.describe("restorerequests", "redirected")
    # pg_restore ran into the new database while every service was Ready and the wallet served.
    assert served_while_building, "the Build step was never seen running"
    for replicas, served in served_while_building:
        assert replicas == vault.replicas and served == mutated[: len(served)]
    assert building_at is not None and min(observer.times("deleted", sum(STOP_TIERS, []))) > building_at
    assert restore["status"]["plan"]["stopWindow"] == ["ScaleDown", "Reconfigure", "ScaleUp"]
    import base64

    for service in DB_SERVICES:
        assert base64.b64decode(vault.db_info(service)["DB_NAME"]).decode() == new_database
    restored = account_names(vault.postgres.dsn(new_database))
    assert not any(name.startswith("MUTATED") for name in restored)
    assert [a["name"] for a in vault.wallet_accounts()] == restored[: len(vault.wallet_accounts())]
    assert account_names(vault.postgres.dsn(vault.database)) == mutated  # the original is untouched
    assert restore["status"]["plan"]["secrets"] == [
        f"{ENVIRONMENT}.{vault.namespace}.{service}.db-info" for service in DB_SERVICES
    ]
    orchestrator = vault.get("deployments", "orchestrator")
    assert "kubectl.kubernetes.io/restartedAt" in orchestrator["spec"]["template"]["metadata"].get("annotations", {})
    vault.postgres.drop_database(new_database)


def test_corrupted_artifact_fails_in_preflight_with_every_service_untouched(vault):
    flip_a_byte_of_the_dump(vault, vault.backup())
    with PodObserver(vault.cluster, vault.namespace) as observer:
        vault.apply(vault.restore_request("corrupt", safetyBackup=False))
        restore = vault.wait_finished("restorerequests", "corrupt")
    status = restore["status"]
    assert status["phase"] == "Failed", vault.describe("restorerequests", "corrupt")
    assert status["currentStep"] == "Preflight"
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Failed"] == ["ChecksumMismatch"]
    assert "every service is still running" in status["message"]
    assert not observer.times("deleted", sum(STOP_TIERS, []))
    assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas


def test_truncated_artifact_fails_in_preflight(vault):
    backup = vault.backup()
    bucket, key = backup["status"]["artifact"]["uri"].removeprefix("s3://").split("/", 1)
    s3 = vault.s3.client()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=body[: len(body) // 2])
    vault.apply(vault.restore_request("truncated", safetyBackup=False))
    status = vault.wait_finished("restorerequests", "truncated")["status"]
    assert status["phase"] == "Failed" and status["currentStep"] == "Preflight"
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Failed"] == ["SizeMismatch"]


@pytest.mark.parametrize("key_secret_kept, reason", [(True, "ManifestNotSigned"), (False, "ManifestChanged")])
def test_an_artifact_replaced_together_with_its_manifest_is_refused(vault, key_secret_kept, reason):
    """Someone with write access to the bucket swaps the dump and writes a manifest that matches it:
    the checksum checks agree with that manifest, so it must be caught against the BackupRequest."""
    import hashlib

    from walwarden.backup.job import result_key_secret_name

    backup = vault.backup()
    bucket, key = backup["status"]["artifact"]["uri"].removeprefix("s3://").split("/", 1)
    _, manifest_key = backup["status"]["artifact"]["manifestUri"].removeprefix("s3://").split("/", 1)
    s3 = vault.s3.client()
    forged = s3.get_object(Bucket=bucket, Key=key)["Body"].read() + b"\0"
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    manifest["databases"][0].update(sha256=hashlib.sha256(forged).hexdigest(), sizeBytes=len(forged))
    s3.put_object(Bucket=bucket, Key=key, Body=forged)
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    if not key_secret_kept:
        vault.cluster.kubectl(
            ["delete", "secret", "-n", vault.namespace, result_key_secret_name("nightly", backup["metadata"]["uid"])]
        )
    vault.apply(vault.restore_request("forged", safetyBackup=False))
    status = vault.wait_finished("restorerequests", "forged")["status"]
    assert status["phase"] == "Failed" and status["currentStep"] == "Validate", json.dumps(status, indent=1)
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Failed"] == [reason]
    assert "Nothing was touched" in status["message"]
    assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas


def test_emp_mismatch_is_refused_before_anything_is_touched(vault):
    vault.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "emp"},
            "stringData": {"password": "the-backup-environment-emp"},
        }
    )
    vault.backup(encryptorSecrets=[{"name": "emp"}])
    vault.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "other-emp"},
            "stringData": {"password": "a-different-emp"},
        }
    )
    vault.apply(vault.restore_request("emp", encryptorSecrets=[{"name": "other-emp"}], safetyBackup=False))
    status = vault.wait_finished("restorerequests", "emp")["status"]
    assert status["phase"] == "Failed", vault.describe("restorerequests", "emp")
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Failed"] in (["EncryptorMismatch"],)
    assert "irrecoverable" in status["message"]
    assert "a-different-emp" not in json.dumps(status) and "the-backup-environment-emp" not in json.dumps(status)
    assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas


def test_pg_restore_failure_rolls_back_to_the_original_world(vault):
    vault.backup()
    dsn = vault.postgres.dsn(vault.database)
    vaultdb.mutate_accounts(dsn)
    before = account_names(dsn)
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        # Not in the backup, so pg_restore --clean cannot drop the table it depends on: a real failure.
        connection.execute("CREATE VIEW blocker AS SELECT id FROM accounts")
    vault.apply(vault.restore_request("fails", strategy="Overwrite"))
    restore = vault.wait_finished("restorerequests", "fails", timeout=300)
    status = restore["status"]
    assert status["phase"] == "RolledBack", vault.describe("restorerequests", "fails")
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Failed"] == ["RestoreFailed"]
    assert "cannot drop" in status["message"] or "depend" in status["message"]
    assert account_names(dsn) == before  # the safety backup put the database back
    wait_for(lambda: ready_replicas(vault.cluster, vault.namespace) == vault.replicas, 60, "services back")
    assert [a["name"] for a in vault.wallet_accounts()] == before[: len(vault.wallet_accounts())]


def test_a_failure_while_stopping_calls_the_staged_restore_off_before_it_touches_the_database(vault):
    import psycopg

    vault.backup()
    dsn = vault.postgres.dsn(vault.database)
    vaultdb.mutate_accounts(dsn)
    before = account_names(dsn)
    # A client that stays connected fails ScaleDown (policy Fail), after the restore Job was staged.
    with psycopg.connect(dsn, application_name="straggler") as straggler:
        vault.apply(
            vault.restore_request(
                "called-off", strategy="Overwrite", safetyBackup=False, sessionPolicy={"onRemaining": "Fail"}
            )
        )
        status = vault.wait_finished("restorerequests", "called-off")["status"]
        straggler.execute("SELECT 1")  # never terminated
    assert status["phase"] == "RolledBack", vault.describe("restorerequests", "called-off")
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Failed"] == ["SessionsRemain"]
    assert "straggler" in status["message"] and "called off" in status["message"]
    assert not status.get("databaseModified") and not status.get("restoreGoAt")
    assert account_names(dsn) == before  # pg_restore never ran
    job = f"{status['restoreJob']}"
    wait_for(lambda: vault.get("jobs", job).get("status", {}).get("failed") == 1, 60, "the staged Job to end")
    pods = vault.cluster.kubectl_json(["get", "pods", "-n", vault.namespace, "-l", f"job-name={job}"])["items"]
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert "RestoreCalledOff" in terminated["message"], terminated
    wait_for(lambda: ready_replicas(vault.cluster, vault.namespace) == vault.replicas, 60, "services back")


# Where the resume test kills the operator (SIGKILL) in the steps of a restore. A step's work and
# its record are apart: the operator acts on the world, then writes the step's new state.
BEFORE_ITS_RECORD = "after its work, before its record"  # the write saying it succeeded is on its way
WHILE_IT_WAITS = "while it waits"  # recorded Running, waiting on the world (a Job, pods)


class OperatorCrashes:
    """Kills the vault's operator with SIGKILL at chosen points and starts a new one at once;
    each point (step, moment) once. Called from the test's watch and from the admission hook's
    thread, hence the lock."""

    def __init__(self, vault: Vault, logs):
        self.vault, self.logs = vault, logs
        self.points: list[tuple[str, str]] = []  # where a kill landed, in order
        self.misses: list[tuple[str, str]] = []  # kills that came too late to count (the step was over)
        self._lock = threading.Lock()

    def crash(self, step: str, moment: str, landed=lambda: True) -> bool:
        """Kill at (step, moment) unless done before; `landed()` (asked once the operator is dead)
        says whether the kill really fell there. Returns whether a kill happened."""
        with self._lock:
            if (step, moment) in self.points + self.misses:
                return False
            operator = self.vault.operator
            operator.kill()
            assert operator.process.popen.returncode == -signal.SIGKILL, operator.process.popen.returncode
            (self.points if landed() else self.misses).append((step, moment))
            self.vault.operator = OperatorProcess(
                self.vault.cluster,
                self.vault.namespace,
                self.logs / f"operator-{len(self.points + self.misses)}.log",
                {"WALWARDEN_POLL_SECONDS": "1"},
            ).start()
            return True

    def before_a_record(self, request: dict) -> str | None:
        """Admission of a status write: the first step this write would record as Succeeded, if
        not crashed there yet, gets its kill now — the write is refused, its writer is dead."""
        old = {s["name"]: s["state"] for s in ((request.get("oldObject") or {}).get("status") or {}).get("steps", [])}
        for entry in (request["object"].get("status") or {}).get("steps", []):
            newly_succeeded = entry["state"] == "Succeeded" and old.get(entry["name"]) != "Succeeded"
            if newly_succeeded and self.crash(entry["name"], BEFORE_ITS_RECORD):
                return f"refused: the operator was killed (SIGKILL) before it recorded {entry['name']} Succeeded"
        return None


def step_state(status: dict, name: str) -> str | None:
    return next((s["state"] for s in status.get("steps", []) if s["name"] == name), None)


# Two runs, since one restore cannot have both in every step: the kills before a record delay the
# next step's Running record until its Job may already be done, so it would never be seen waiting.
@pytest.mark.parametrize("strategy", ["Switch", "Overwrite"])
@pytest.mark.parametrize("moment", [BEFORE_ITS_RECORD, WHILE_IT_WAITS], ids=["before-each-record", "while-each-waits"])
def test_restarted_operator_resumes_every_step_without_repeating_one(vault, tmp_path, moment, strategy):
    """A crash (SIGKILL: nothing finishes, nothing is flushed) in every step of one restore, and a
    new operator started after each kill, which has to resume from the world without repeating
    anything. before-each-record: each step did its work and the status write recording it is on
    its way; an admission hook kills the operator and refuses the write. while-each-waits: each
    step that waits is seen Running by a watch, and the operator is killed then."""
    vault.backup()
    original = account_names(vault.postgres.dsn(vault.database))
    vaultdb.mutate_accounts(vault.postgres.dsn(vault.database))
    mutated = account_names(vault.postgres.dsn(vault.database))
    crashes = OperatorCrashes(vault, tmp_path)
    label = {"walwarden.test/crashes": "resumed"}
    request = vault.restore_request("resumed", strategy=strategy)
    request["metadata"]["labels"] = label
    hook = contextlib.nullcontext()
    if moment == BEFORE_ITS_RECORD:
        status_writes = [
            {
                "apiGroups": ["walwarden.io"],
                "apiVersions": ["v1alpha1"],
                "operations": ["UPDATE"],
                "resources": ["restorerequests/status"],
                "scope": "Namespaced",
            }
        ]
        hook = AdmissionHook(vault.cluster, tmp_path, vault.namespace, status_writes, label, crashes.before_a_record)
    waited = []  # the steps the API server showed Running, in order
    try:
        with hook:
            vault.apply(request)
            # Every status the operator writes, from a watch (polling could miss a step that lasts
            # a fraction of a second); a step that waits writes its Running state at once.
            for status in status_updates(vault, "restorerequests", "resumed", timeout=720):
                if status.get("phase") in ("Succeeded", "Failed", "RolledBack"):
                    break
                step = status.get("currentStep")
                if step and step_state(status, step) == "Running" and step not in waited:
                    waited.append(step)
                    if moment == WHILE_IT_WAITS:
                        crashes.crash(
                            step,
                            WHILE_IT_WAITS,
                            landed=lambda step=step: (
                                step_state(vault.get("restorerequests", "resumed")["status"], step) == "Running"
                            ),
                        )
    finally:
        vault.operator.stop()
    status = vault.get("restorerequests", "resumed").get("status") or {}
    record = f"kills: {crashes.points}; too late: {crashes.misses}\n" + json.dumps(status, indent=1)
    assert status.get("phase") == "Succeeded", record
    states = {s["name"]: s["state"] for s in status["steps"]}
    not_run = {"Rollback": "Skipped"}  # nothing failed
    if strategy == "Switch":
        not_run |= {"SafetyBackup": "Skipped", "DropPrevious": "Skipped"}  # no dump needed; the previous kept
    assert {name: state for name, state in states.items() if state != "Succeeded"} == not_run, record
    # Killed in each step it ran (before-each-record) or in each step that waited (while-each-waits).
    ran = [name for name, state in states.items() if state == "Succeeded"]
    expected = ran if moment == BEFORE_ITS_RECORD else waited
    assert set(crashes.points) == {(name, moment) for name in expected} and not crashes.misses, record
    if moment == WHILE_IT_WAITS:
        waiting = (
            {"Preflight", "Build", "ScaleDown", "ScaleUp"} if strategy == "Switch" else {"SafetyBackup", "Restore"}
        )
        assert waiting | {"Preflight", "ScaleDown", "ScaleUp"} <= set(waited), record
    # Nothing repeated: one verify Job and one restore Job (one pod each, no retry), one safety
    # backup; the backup's accounts are back and every service runs with its replica count.
    for role in ("restore", "verify"):
        jobs = vault.cluster.kubectl_json(["get", "jobs", "-n", vault.namespace, "-l", f"walwarden.io/role={role}"])
        assert len(jobs["items"]) == 1 and jobs["items"][0]["status"].get("succeeded") == 1, record
        assert not jobs["items"][0]["status"].get("failed"), record
        job = jobs["items"][0]["metadata"]["name"]
        pods = vault.cluster.kubectl_json(["get", "pods", "-n", vault.namespace, "-l", f"job-name={job}"])["items"]
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    backups = vault.cluster.kubectl_json(["get", "backuprequests", "-n", vault.namespace])["items"]
    safety = [b for b in backups if "safety" in b["metadata"]["name"]]
    if strategy == "Overwrite":
        assert len(safety) == 1 and safety[0]["status"]["phase"] == "Succeeded", record
    else:
        assert not safety, record
        assert_switched(vault, status, mutated)
    assert account_names(vault.postgres.dsn(vault.database)) == original
    assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas


def test_dry_run_publishes_the_plan_and_changes_nothing(vault):
    vault.backup()
    with PodObserver(vault.cluster, vault.namespace) as observer:
        vault.apply(vault.restore_request("dry", dryRun=True))
        status = vault.wait_finished("restorerequests", "dry")["status"]
    assert status["phase"] == "Succeeded" and "dry run" in status["message"]
    plan = status["plan"]
    assert [s["name"] for s in plan["services"]] == sum(STOP_TIERS, [])
    assert {s["name"]: s["replicas"] for s in plan["services"]}["nats"] == 3
    assert plan["dataLossWindow"]["backupTime"]
    # The default strategy, Switch: what runs before the stop, what inside, what the downtime is made of.
    assert plan["strategy"] == "Switch" and plan["beforeStop"][-1] == "Build"
    assert plan["stopWindow"] == ["ScaleDown", "Switch", "ScaleUp"] and len(plan["downtime"]) == 3
    assert plan["previousDatabase"].startswith(f"{vault.database}_pre_restore_")
    assert plan["dataLossWindow"]["keptIn"] == f"the previous database {plan['previousDatabase']}"
    assert plan["spaceBytes"] > 0
    assert not observer.events
    assert not vault.cluster.kubectl_json(["get", "jobs", "-n", vault.namespace, "-l", "walwarden.io/role=verify"])[
        "items"
    ]
    assert server_databases(vault) == {vault.database: True}  # nothing was built


@pytest.fixture
def approvals(vault, tmp_path) -> bytes:
    key = require_approvals(vault, tmp_path / "operator-approvals.log")
    yield key
    vault.operator.stop()


def approved(key: bytes, request: dict, vault, sha256: str, ttl: int = 600) -> dict:
    """`request` with a token approving it as written (walwarden token issue --request)."""
    spec = RestoreRequestSpec.model_validate(request["spec"])
    name = request["metadata"]["name"]
    token = issue_token(key, Approval.of_request(vault.namespace, name, spec, sha256), ttl_seconds=ttl)
    return request | {"spec": request["spec"] | {"approvalToken": token}}


def failure_reason(status: dict) -> list[str]:
    return [c["reason"] for c in status["conditions"] if c["type"] == "Failed"]


def test_approval_tokens_are_required_single_use_and_expire(vault, approvals):
    backup = vault.backup()
    sha256 = backup["status"]["artifact"]["sha256"]
    vault.apply(vault.restore_request("no-token", safetyBackup=False))
    assert failure_reason(vault.wait_finished("restorerequests", "no-token")["status"]) == ["ApprovalRequired"]

    expired = approved(approvals, vault.restore_request("expired", safetyBackup=False), vault, sha256, ttl=1)
    time.sleep(2)
    vault.apply(expired)
    assert failure_reason(vault.wait_finished("restorerequests", "expired")["status"]) == ["TokenExpired"]

    # Front-run: a token approving one request, put on another (another name, or the same name
    # with another spec), approves nothing.
    approved_one = approved(approvals, vault.restore_request("approved", safetyBackup=False), vault, sha256)
    token = approved_one["spec"]["approvalToken"]
    vault.apply(vault.restore_request("mismatch", safetyBackup=False, approvalToken=token))
    assert failure_reason(vault.wait_finished("restorerequests", "mismatch")["status"]) == ["TokenMismatch"]

    vault.apply(approved_one)
    assert vault.wait_finished("restorerequests", "approved")["status"]["phase"] == "Succeeded"
    # Deleted and applied again under its name (a GitOps prune and re-add): spent, whatever the
    # requester deleted in its own namespace.
    vault.cluster.kubectl(["delete", "restorerequest", "approved", "-n", vault.namespace])
    vault.cluster.kubectl(["delete", "configmap", "walwarden-approvals", "-n", vault.namespace], check=False)
    vault.apply(approved_one | {"metadata": {"name": "approved"}})
    assert failure_reason(vault.wait_finished("restorerequests", "approved")["status"]) == ["TokenReused"]


def test_two_restores_in_one_namespace_are_serialized(vault):
    vault.backup()
    vault.apply(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                # The same restore twice, on purpose: either may run first.
                vault.restore_request("first", safetyBackup=False, allowRepeat=True),
                vault.restore_request("second", safetyBackup=False, allowRepeat=True),
            ],
        }
    )
    first, second = (vault.wait_finished("restorerequests", name) for name in ("first", "second"))
    assert first["status"]["phase"] == second["status"]["phase"] == "Succeeded", vault.describe(
        "restorerequests", "second"
    )

    def lock_window(restore):
        steps = {s["name"]: s for s in restore["status"]["steps"]}
        return steps["AcquireLock"]["finishedAt"], steps["ReleaseLock"]["finishedAt"]

    (_, first_end), (second_start, _) = sorted([lock_window(first), lock_window(second)])
    assert first_end <= second_start, "two restores held the namespace lock at once"


def test_redirected_restore_with_aws_secrets_manager_repoints_the_source_of_truth(vault, secrets_manager, tmp_path):
    vault.backup()
    names = [f"{ENVIRONMENT}.{vault.namespace}.{service}.db-info" for service in DB_SERVICES]
    for name in names:  # the source of truth; the Kubernetes Secrets of the same name are its synced copies
        secrets_manager.create_secret(
            name,
            {
                "DB_HOST": "127.0.0.1",
                "DB_PORT": str(vault.postgres.port),
                "DB_USER": vault.postgres.superuser,
                "DB_PASSWORD": vault.postgres.password,
                "DB_NAME": vault.database,
            },
        )
    vault.operator.stop()
    vault.operator = OperatorProcess(
        vault.cluster,
        vault.namespace,
        tmp_path / "operator-aws.log",
        {
            "WALWARDEN_POLL_SECONDS": "1",
            "AWS_ACCESS_KEY_ID": secrets_manager.access_key,
            "AWS_SECRET_ACCESS_KEY": secrets_manager.secret_key,
            "AWS_EC2_METADATA_DISABLED": "true",
        },
    ).start()
    new_database = f"{vault.database}_aws"
    vault.admin_secret("new-db-admin")
    vault.apply(
        vault.restore_request(
            "redirected-aws",
            mode="Redirected",
            target={"secretRef": {"name": "new-db-admin"}, "database": new_database},
            redirect={
                "dbHost": "127.0.0.1",
                "dbName": new_database,
                "environment": ENVIRONMENT,
                "secretBackend": "AWSSecretsManager",
                "aws": {"region": secrets_manager.region, "endpoint": secrets_manager.endpoint},
            },
        )
    )
    restore = vault.wait_finished("restorerequests", "redirected-aws")
    vault.operator.stop()
    assert restore["status"]["phase"] == "Succeeded", vault.describe("restorerequests", "redirected-aws")
    import base64

    client = secrets_manager.client()
    for name in names:
        stored = json.loads(client.get_secret_value(SecretId=name)["SecretString"])
        assert stored["DB_NAME"] == new_database and stored["DB_USER"] == vault.postgres.superuser
        copy = vault.cluster.kubectl_json(["get", "secret", name, "-n", vault.namespace])["data"]
        assert base64.b64decode(copy["DB_NAME"]).decode() == new_database
    assert [a["name"] for a in vault.wallet_accounts()] == account_names(vault.postgres.dsn(new_database))[
        : len(vault.wallet_accounts())
    ]
    vault.postgres.drop_database(new_database)


def test_deleting_a_restore_mid_flight_starts_the_services_again(vault):
    import psycopg

    vault.backup()
    # A client that stays connected holds the restore in ScaleDown, services stopped: mid-flight.
    with psycopg.connect(vault.postgres.dsn(vault.database), application_name="straggler") as straggler:
        vault.apply(
            vault.restore_request(
                "abandoned",
                strategy="Overwrite",
                safetyBackup=False,
                sessionPolicy={"onRemaining": "Wait", "waitSeconds": 300},
            )
        )
        wait_for(
            lambda: (
                "straggler" in ((vault.get("restorerequests", "abandoned").get("status") or {}).get("message") or "")
            ),
            120,
            "the restore to report the straggler",
        )
        assert ready_replicas(vault.cluster, vault.namespace)["wallet"] == 0
        vault.cluster.kubectl(["delete", "restorerequest", "abandoned", "-n", vault.namespace, "--timeout=120s"])
        straggler.execute("SELECT 1")
    wait_for(lambda: ready_replicas(vault.cluster, vault.namespace) == vault.replicas, 60, "services back")
    assert vault.cluster.kubectl(["get", "lease", "walwarden-lock", "-n", vault.namespace], check=False).returncode
    events = vault.cluster.kubectl_json(
        ["get", "events", "-n", vault.namespace, "--field-selector", "involvedObject.name=abandoned"]
    )["items"]
    [deleted] = [e for e in events if e["reason"] == "DeletedMidFlight"]
    assert "staged restore Job was called off" in deleted["message"] and "started again" in deleted["message"]


def test_deleting_a_redirected_restore_after_reconfigure_puts_the_secrets_back(vault):
    import base64

    vault.backup()
    original = {service: vault.db_info(service) for service in DB_SERVICES}
    new_database = f"{vault.database}_abandoned"
    vault.admin_secret("new-db-admin")
    # Verify never passes (nothing listens there), so the request sits in Verify, secrets repointed.
    vault.apply(
        vault.redirected_request(
            "redirected-abandoned",
            new_database,
            safetyBackup=False,
            verify={"healthUrl": "http://127.0.0.1:9/health", "timeoutSeconds": 600},
        )
    )
    wait_for(
        lambda: (
            (vault.get("restorerequests", "redirected-abandoned").get("status") or {}).get("currentStep") == "Verify"
        ),
        180,
        "the restore to reach Verify",
    )
    assert base64.b64decode(vault.db_info("wallet")["DB_NAME"]).decode() == new_database
    vault.cluster.kubectl(["delete", "restorerequest", "redirected-abandoned", "-n", vault.namespace, "--timeout=120s"])
    assert {service: vault.db_info(service) for service in DB_SERVICES} == original
    events = vault.cluster.kubectl_json(
        ["get", "events", "-n", vault.namespace, "--field-selector", "involvedObject.name=redirected-abandoned"]
    )["items"]
    [deleted] = [e for e in events if e["reason"] == "DeletedMidFlight"]
    assert "db-info secrets restored from the snapshot" in deleted["message"]
    # The services ScaleUp had started on the new database were stopped before the secrets went
    # back and started again on the original; the orchestrator, kept running, was rolled.
    assert "services it had stopped were started again" in deleted["message"]
    orchestrator = vault.get("deployments", "orchestrator")["spec"]["template"]["metadata"]
    assert (
        orchestrator.get("annotations", {})
        .get("kubectl.kubernetes.io/restartedAt", "")
        .startswith("walwarden-rollback-")
    )
    wait_for(lambda: ready_replicas(vault.cluster, vault.namespace) == vault.replicas, 120, "services back")
    vault.postgres.drop_database(new_database)


def test_the_operators_default_topology_applies_to_requests_without_one(vault, tmp_path):
    vault.backup()
    vault.operator.stop()
    vault.operator = OperatorProcess(
        vault.cluster,
        vault.namespace,
        tmp_path / "operator-profile.log",
        {
            "WALWARDEN_POLL_SECONDS": "1",
            "WALWARDEN_DEFAULT_TOPOLOGY": json.dumps({"stopTiers": [["wallet"], ["nats"]]}),
        },
    ).start()
    vault.apply(vault.restore_request("profile", dryRun=True))
    status = vault.wait_finished("restorerequests", "profile")["status"]
    vault.operator.stop()
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    assert [(s["name"], s["tier"]) for s in status["plan"]["services"]] == [("wallet", 1), ("nats", 2)]


def test_a_pod_that_never_goes_away_fails_scale_down_and_the_services_start_again(vault, tmp_path):
    vault.backup()
    vault.operator.stop()
    vault.operator = OperatorProcess(
        vault.cluster,
        vault.namespace,
        tmp_path / "operator-stuck.log",
        {"WALWARDEN_POLL_SECONDS": "1", "WALWARDEN_STOP_TIMEOUT_SECONDS": str(STOP_TIMEOUT_SECONDS)},
    ).start()
    # A finalizer nobody removes keeps a policy node's pod Terminating: tier 2 never goes away.
    [pod] = vault.cluster.kubectl_json(
        ["get", "pods", "-n", vault.namespace, "-l", "app.kubernetes.io/name=policy-node1"]
    )["items"]
    patch = json.dumps({"metadata": {"finalizers": ["walwarden.test/never"]}})
    vault.cluster.kubectl(["patch", "pod", pod["metadata"]["name"], "-n", vault.namespace, "--type=merge", "-p", patch])
    try:
        vault.apply(vault.restore_request("stuck", safetyBackup=False))
        status = vault.wait_finished("restorerequests", "stuck")["status"]
    finally:
        vault.cluster.kubectl(
            [
                "patch",
                "pod",
                pod["metadata"]["name"],
                "-n",
                vault.namespace,
                "--type=merge",
                "-p",
                json.dumps({"metadata": {"finalizers": None}}),
            ],
            check=False,
        )
    assert status["phase"] == "RolledBack", json.dumps(status, indent=1)
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Failed"] == ["ServicesStuckStopping"]
    assert pod["metadata"]["name"] in status["message"] and f"more than {STOP_TIMEOUT_SECONDS}s" in status["message"]
    assert not status.get("databaseModified")
    wait_for(lambda: ready_replicas(vault.cluster, vault.namespace) == vault.replicas, 60, "services back")


def test_services_that_do_not_become_ready_raise_a_loud_condition_until_they_are(vault, tmp_path):
    vault.backup()
    vault.operator.stop()
    vault.operator = OperatorProcess(
        vault.cluster,
        vault.namespace,
        tmp_path / "operator-slow.log",
        {"WALWARDEN_POLL_SECONDS": "1", "WALWARDEN_STOP_TIMEOUT_SECONDS": str(STOP_TIMEOUT_SECONDS)},
    ).start()

    def readiness_path(path: str) -> None:
        patch = [
            {"op": "replace", "path": "/spec/template/spec/containers/0/readinessProbe/httpGet/path", "value": path}
        ]
        vault.cluster.kubectl(
            ["patch", "deployment", "wallet", "-n", vault.namespace, "--type=json", "-p", json.dumps(patch)]
        )

    readiness_path("/never-ready")  # the wallet started by ScaleUp will not become Ready
    vault.apply(vault.restore_request("slow-start", safetyBackup=False))

    def not_ready_condition() -> dict:
        status = vault.get("restorerequests", "slow-start").get("status") or {}
        return next((c for c in status.get("conditions", []) if c["type"] == "ServicesNotReady"), {})

    wait_for(lambda: not_ready_condition().get("status") == "True", 300, "the ServicesNotReady condition")
    status = vault.get("restorerequests", "slow-start")["status"]
    assert status["phase"] == "Running" and status["currentStep"] == "ScaleUp"
    message = not_ready_condition()["message"]
    assert "wallet 0/1" in message and f"more than {STOP_TIMEOUT_SECONDS}s" in message
    readiness_path("/health")
    status = vault.wait_finished("restorerequests", "slow-start")["status"]
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    assert (not_ready_condition()["status"], not_ready_condition()["reason"]) == ("False", "ServicesReady")
    events = vault.cluster.kubectl_json(
        ["get", "events", "-n", vault.namespace, "--field-selector", "involvedObject.name=slow-start"]
    )["items"]
    assert [e["type"] for e in events if e["reason"] == "ServicesNotReady"] == ["Warning"]


@pytest.mark.parametrize("mode", ["Switch", "Redirected"])
def test_a_wallet_that_does_not_come_up_on_the_restored_data_is_rolled_back_after_the_ready_deadline(vault, mode):
    """A failure Preflight cannot see: the backup holds a row that makes the stand-in wallet fail
    readiness (devstack/wallet.py), the live database does not. The vault is not left down: after
    spec.verify.readyTimeoutSeconds the restore rolls back and the wallet serves the original."""
    import base64

    import psycopg

    with psycopg.connect(vault.postgres.dsn(vault.database), autocommit=True) as connection:
        connection.execute("CREATE TABLE wallet_health_blocks (why text)")
        connection.execute("INSERT INTO wallet_health_blocks VALUES ('only in the backup')")
        vault.backup()
        connection.execute("DELETE FROM wallet_health_blocks")
    original = account_names(vault.postgres.dsn(vault.database))
    name, ready_deadline = f"late-{mode.lower()}", {"readyTimeoutSeconds": 20}
    if mode == "Switch":
        request = vault.restore_request(name, strategy="Switch")
    else:
        vault.admin_secret("new-db-admin")
        request = vault.redirected_request(name, f"{vault.database}_late")
    request["spec"]["verify"].update(ready_deadline)
    vault.apply(request)
    status = vault.wait_finished("restorerequests", name, timeout=400)["status"]
    assert status["phase"] == "RolledBack", vault.describe("restorerequests", name)
    assert failure_reason(status) == ["ServicesNotReady"]
    scale_up = next(s for s in status["steps"] if s["name"] == "ScaleUp")
    assert scale_up["message"].startswith("wallet did not become Ready within 20s of being started (pod wallet-")
    assert "readiness probe failing" in scale_up["message"], scale_up
    wait_for(lambda: ready_replicas(vault.cluster, vault.namespace) == vault.replicas, 120, "services back")
    assert [a["name"] for a in vault.wallet_accounts()] == original[: len(vault.wallet_accounts())]
    if mode == "Switch":
        assert server_databases(vault) == {vault.database: True}  # renamed back, the restored copy dropped
    else:
        for service in DB_SERVICES:
            assert base64.b64decode(vault.db_info(service)["DB_NAME"]).decode() == vault.database
        assert f"{vault.database}_late" not in server_databases(vault)


# --- strategy Switch: built while the vault runs, renamed into place inside the stop window ------


def watch_the_build(vault: Vault, name: str) -> tuple[list, float | None]:
    """Until Build is over: what the vault served while pg_restore was running — each service's
    Ready replicas and the wallet's accounts, sampled, and counted only when the restore Job's pod
    had still not finished after the sample (the operator stops nothing before it has) — and the
    last moment (time.monotonic(), as PodObserver's) the Job's pod was seen still running."""
    served, running_at = [], None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = vault.get("restorerequests", name).get("status") or {}
        if step_state(status, "Build") in ("Succeeded", "Failed", "Skipped"):
            break
        if step_state(status, "Build") != "Running" or not status.get("restoreJob"):
            continue
        try:
            sample = (ready_replicas(vault.cluster, vault.namespace), [a["name"] for a in vault.wallet_accounts()])
        except OSError as error:
            sample = (ready_replicas(vault.cluster, vault.namespace), repr(error))
        selector = f"job-name={status['restoreJob']}"
        pods = vault.cluster.kubectl_json(["get", "pods", "-n", vault.namespace, "-l", selector])["items"]
        if not any(p["status"].get("phase") == "Succeeded" for p in pods):
            served.append(sample)
            running_at = time.monotonic()
    return served, running_at


def set_database_properties(vault: Vault) -> dict:
    """Database-level properties pg_dump keeps only for --create, set on the vault's database."""
    import psycopg
    from psycopg import sql

    role = f"auditor_{vault.namespace.replace('-', '_')}"[:60]
    db = sql.Identifier(vault.database)
    with psycopg.connect(vault.postgres.dsn(), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        for statement in (
            sql.SQL("COMMENT ON DATABASE {} IS 'the vault of record'").format(db),
            sql.SQL("ALTER DATABASE {} SET statement_timeout = '17s'").format(db),
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET work_mem = '7MB'").format(sql.Identifier(role), db),
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, sql.Identifier(role)),
            sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 90").format(db),
        ):
            connection.execute(statement)
    return database_properties(vault, vault.database)


def database_properties(vault: Vault, name: str) -> dict:
    import psycopg

    with psycopg.connect(vault.postgres.dsn()) as connection:
        row = connection.execute(
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype, datconnlimit, "
            "shobj_description(oid, 'pg_database'), "
            "(SELECT array_agg(a::text ORDER BY a::text) FROM unnest(datacl) a), "
            "(SELECT array_agg(coalesce(pg_get_userbyid(setrole), '-') || ':' || array_to_string(setconfig, ',') "
            "ORDER BY setrole) FROM pg_db_role_setting WHERE setdatabase = d.oid) "
            "FROM pg_database d WHERE datname = %s",
            (name,),
        ).fetchone()
    keys = ("owner", "encoding", "collate", "ctype", "connlimit", "comment", "acl", "settings")
    return dict(zip(keys, row, strict=True))


def test_in_place_switch_restore_builds_while_the_vault_serves_and_keeps_the_previous_database(vault):
    properties = set_database_properties(vault)
    vault.backup()
    original = account_names(vault.postgres.dsn(vault.database))
    vaultdb.mutate_accounts(vault.postgres.dsn(vault.database))
    mutated = account_names(vault.postgres.dsn(vault.database))
    with PodObserver(vault.cluster, vault.namespace) as observer:
        vault.apply(vault.restore_request("switch"))
        served_while_building, building_at = watch_the_build(vault, "switch")
        status = vault.wait_finished("restorerequests", "switch")["status"]
    assert status["phase"] == "Succeeded", vault.describe("restorerequests", "switch")
    assert status["strategy"] == "Switch" and status["plan"]["stopWindow"] == ["ScaleDown", "Switch", "ScaleUp"]
    steps = {s["name"]: s["state"] for s in status["steps"]}
    assert steps["Build"] == steps["Switch"] == "Succeeded" and steps["SafetyBackup"] == "Skipped"
    assert served_while_building, "the Build step was never seen running"
    for replicas, served in served_while_building:
        assert replicas == vault.replicas and served == mutated[: len(served)]
    assert building_at is not None and min(observer.times("deleted", sum(STOP_TIERS, []))) > building_at
    assert account_names(vault.postgres.dsn(vault.database)) == original
    assert [a["name"] for a in vault.wallet_accounts()] == original[: len(vault.wallet_accounts())]
    assert database_properties(vault, vault.database) == properties  # carried to the restored database
    assert_switched(vault, status, mutated)
    backups = vault.cluster.kubectl_json(["get", "backuprequests", "-n", vault.namespace])["items"]
    assert [b["metadata"]["name"] for b in backups] == ["nightly"]  # no safety dump


def test_a_verify_failure_after_the_switch_renames_back_with_every_write_up_to_the_stop(vault):
    vault.backup()
    vaultdb.mutate_accounts(vault.postgres.dsn(vault.database))  # written after the backup
    mutated = account_names(vault.postgres.dsn(vault.database))
    request = vault.restore_request("unhealthy")
    request["spec"]["verify"] = {"healthUrl": f"{vault.wallet_url}/no-such-endpoint", "timeoutSeconds": 5}
    vault.apply(request)
    status = vault.wait_finished("restorerequests", "unhealthy", timeout=300)["status"]
    assert status["phase"] == "RolledBack", vault.describe("restorerequests", "unhealthy")
    assert failure_reason(status) == ["VerifyFailed"]
    rollback = next(s for s in status["steps"] if s["name"] == "Rollback")
    assert "switched back in seconds" in rollback["message"] and "was dropped" in rollback["message"]
    assert server_databases(vault) == {vault.database: True}  # the restored copy is gone
    assert account_names(vault.postgres.dsn(vault.database)) == mutated
    wait_for(lambda: ready_replicas(vault.cluster, vault.namespace) == vault.replicas, 60, "services back")
    assert [a["name"] for a in vault.wallet_accounts()] == mutated[: len(vault.wallet_accounts())]
    assert not [
        j
        for j in vault.cluster.kubectl_json(["get", "jobs", "-n", vault.namespace])["items"]
        if "rollback" in j["metadata"]["name"]
    ]  # no pg_restore to roll back


SWITCH_POINTS = [
    "build:created",
    "build:closed",
    "switch:refuse-current",
    "switch:rename-current-aside",
    "switch:rename-restored-in",
    "switch:allow-restored",
]
SWITCH_BACK_POINTS = [
    "switch-back:refuse-restored",
    "switch-back:rename-restored-back",
    "switch-back:rename-previous-in",
    "switch-back:allow-previous",
]


@pytest.mark.parametrize("direction", ["switch", "switch-back"])
def test_the_operator_killed_between_any_two_statements_of_the_switch_resumes_from_the_server(
    vault, tmp_path, direction
):
    """SIGKILL (a failpoint: the operator kills itself there) after every statement of the switch,
    or of the switch back after a failed Verify; a new operator each time, with the points not
    reached yet. Neither database is ever lost, none is made twice."""
    vault.backup()
    original = account_names(vault.postgres.dsn(vault.database))
    vaultdb.mutate_accounts(vault.postgres.dsn(vault.database))
    mutated = account_names(vault.postgres.dsn(vault.database))
    points = SWITCH_POINTS if direction == "switch" else SWITCH_BACK_POINTS
    request = vault.restore_request("killed")
    if direction == "switch-back":
        request["spec"]["verify"] = {"healthUrl": f"{vault.wallet_url}/no-such-endpoint", "timeoutSeconds": 5}

    def data_is_kept() -> None:
        # Whatever the moment: the vault's data is on the server, under one of the three names.
        assert vault.database in server_databases(vault) or len(server_databases(vault)) == 2

    hit = restore_killing_at(vault, tmp_path, points, request, between=data_is_kept)
    status = vault.get("restorerequests", "killed")["status"]
    record = f"hit {hit}\n" + json.dumps(status, indent=1)
    assert hit == points, record
    if direction == "switch":
        assert status["phase"] == "Succeeded", record
        assert account_names(vault.postgres.dsn(vault.database)) == original
        assert_switched(vault, status, mutated)
    else:
        assert status["phase"] == "RolledBack" and failure_reason(status) == ["VerifyFailed"], record
        assert server_databases(vault) == {vault.database: True}, record
        assert account_names(vault.postgres.dsn(vault.database)) == mutated
    wait_for(lambda: ready_replicas(vault.cluster, vault.namespace) == vault.replicas, 60, "services back")


def test_a_restore_user_without_createdb_is_refused_before_any_service_stops(vault):
    import secrets as random_secrets

    vault.backup()
    user, password = f"restorer_{random.randint(0, 10**6)}", random_secrets.token_hex(16)
    vault.postgres.create_role(user, password)  # LOGIN, no CREATEDB, owns nothing
    vault.admin_secret("restorer-admin", password=password, user=user)
    with PodObserver(vault.cluster, vault.namespace) as observer:
        vault.apply(vault.restore_request("no-createdb", target={"secretRef": {"name": "restorer-admin"}}))
        status = vault.wait_finished("restorerequests", "no-createdb")["status"]
    assert status["phase"] == "Failed" and status["currentStep"] == "Preflight", json.dumps(status, indent=1)
    assert failure_reason(status) == ["SwitchNotPermitted"]
    assert f"ALTER ROLE {user} CREATEDB" in status["message"] and "spec.strategy: Overwrite" in status["message"]
    assert password not in json.dumps(status)
    assert not observer.times("deleted", sum(STOP_TIERS, []))
    assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas
    assert server_databases(vault) == {vault.database: True}


def test_stop_services_first_stops_the_vault_before_pg_restore_starts(vault):
    vault.backup()
    vault.apply(vault.restore_request("stop-first", stopServicesFirst=True))
    status = vault.wait_finished("restorerequests", "stop-first")["status"]
    assert status["phase"] == "Succeeded", vault.describe("restorerequests", "stop-first")
    assert status["plan"]["stopWindow"] == ["ScaleDown", "Build", "Switch", "ScaleUp"]
    [job] = vault.cluster.kubectl_json(["get", "jobs", "-n", vault.namespace, "-l", "walwarden.io/role=restore"])[
        "items"
    ]
    assert parse_time(job["metadata"]["creationTimestamp"]) >= parse_time(status["scaledDownAt"])


def test_a_redirected_target_that_already_holds_data_is_refused_before_any_service_stops(vault):
    import psycopg

    vault.backup()
    occupied = f"{vault.database}_occupied"
    vault.postgres.create_database(occupied)
    with psycopg.connect(vault.postgres.dsn(occupied), autocommit=True) as connection:
        connection.execute("CREATE TABLE ledger (id int)")
    vault.admin_secret("new-db-admin")
    with PodObserver(vault.cluster, vault.namespace) as observer:
        vault.apply(vault.redirected_request("occupied", occupied))
        status = vault.wait_finished("restorerequests", "occupied")["status"]
    assert status["phase"] == "Failed" and status["currentStep"] == "Preflight", json.dumps(status, indent=1)
    assert failure_reason(status) == ["TargetNotEmpty"] and "public.ledger" in status["message"]
    assert not observer.times("deleted", sum(STOP_TIERS, []))
    assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas
    with psycopg.connect(vault.postgres.dsn(occupied)) as connection:  # left exactly as it was
        assert connection.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 1


def test_a_restore_deleted_and_applied_again_is_refused_as_a_repeat_with_every_service_untouched(vault):
    """What a GitOps prune and re-sync does to a finished RestoreRequest: the same YAML becomes a
    new object. It must not stop the vault and restore the same backup over every write since."""
    vault.backup()
    request = vault.restore_request("from-git", safetyBackup=False)
    vault.apply(request)
    assert vault.wait_finished("restorerequests", "from-git")["status"]["phase"] == "Succeeded"
    vaultdb.mutate_accounts(vault.postgres.dsn(vault.database))  # written after the restore
    written = account_names(vault.postgres.dsn(vault.database))
    vault.cluster.kubectl(["delete", "restorerequest", "from-git", "-n", vault.namespace, "--timeout=120s"])
    vault.apply(request)  # synced back from git
    status = vault.wait_finished("restorerequests", "from-git")["status"]
    assert status["phase"] == "Failed" and failure_reason(status) == ["RestoreAlreadyRan"], status
    assert "spec.allowRepeat: true" in status["message"]
    assert not status.get("originalReplicas")
    assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas
    assert account_names(vault.postgres.dsn(vault.database)) == written  # nothing restored over them


def test_a_service_scaled_back_up_in_the_stop_window_stops_the_switch_and_rolls_back(vault, tmp_path):
    """Something scales a stopped service up again (here a person with kubectl; Argo CD self-heal
    or an autoscaler do the same) after ScaleDown: the switch must not run under it. The operator
    is held (a failpoint pause) where the stop window is checked, the wallet scaled, then let go."""
    from walwarden.failpoints import ANNOUNCEMENT, ENV, RESUME_ENV

    vault.backup()
    vaultdb.mutate_accounts(vault.postgres.dsn(vault.database))
    live = account_names(vault.postgres.dsn(vault.database))
    resume = tmp_path / "resume"
    vault.operator.stop()
    env = {"WALWARDEN_POLL_SECONDS": "1", ENV: "stop-window:check=pause", RESUME_ENV: str(resume)}
    vault.operator = OperatorProcess(vault.cluster, vault.namespace, tmp_path / "operator-held.log", env).start()
    vault.apply(vault.restore_request("scaled-up", strategy="Switch"))
    held = f"{ANNOUNCEMENT}stop-window:check"
    wait_for(lambda: held in vault.operator.process.log_path.read_text(), 300, "the operator to reach the stop window")
    assert ready_replicas(vault.cluster, vault.namespace)["wallet"] == 0
    vault.cluster.kubectl(["scale", "deployment", "wallet", "--replicas=1", "-n", vault.namespace])
    resume.touch()
    status = vault.wait_finished("restorerequests", "scaled-up", timeout=300)["status"]
    assert status["phase"] == "RolledBack", vault.describe("restorerequests", "scaled-up")
    assert failure_reason(status) == ["ServicesScaledUp"]
    switch = next(s for s in status["steps"] if s["name"] == "Switch")
    assert "wallet (1 replica(s) set by kubectl" in switch["message"], switch
    wait_for(lambda: ready_replicas(vault.cluster, vault.namespace) == vault.replicas, 120, "services back")
    assert server_databases(vault) == {vault.database: True}  # never switched; the restored copy dropped
    assert [a["name"] for a in vault.wallet_accounts()] == live[: len(vault.wallet_accounts())]
