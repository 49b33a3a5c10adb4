"""BackupRequest end to end on the real local stack: the operator, its runner Job (run for real by
the local pod executor), PostgreSQL and MinIO. Nothing is mocked."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

import pytest

from devstack import vaultdb
from devstack.observe import PodObserver, assert_tiers_in_order
from devstack.pytest_kube import wait_for
from devstack.vault import ready_replicas
from tests.integration.conftest import deploy_stand_in_vault, describe

pytestmark = pytest.mark.integration

STOP_TIERS = [["wallet"], ["policy-node0", "policy-node1", "policy-node2"], ["nats"]]


def test_backup_lands_in_s3_with_a_manifest_that_matches_its_bytes(stack, vault_db, empty_db):
    stack.apply(stack.backup_request("nightly", [vault_db.name]))
    backup = stack.wait_finished("nightly")
    status = backup["status"]
    assert status["phase"] == "Succeeded", describe(stack, "nightly")
    artifact = status["artifact"]

    s3 = stack.s3.client()
    bucket, key = artifact["uri"].removeprefix("s3://").split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    manifest_bucket, manifest_key = artifact["manifestUri"].removeprefix("s3://").split("/", 1)
    manifest = json.loads(s3.get_object(Bucket=manifest_bucket, Key=manifest_key)["Body"].read())
    [entry] = manifest["databases"]
    assert hashlib.sha256(body).hexdigest() == entry["sha256"] == artifact["sha256"]
    assert len(body) == entry["sizeBytes"] == artifact["sizeBytes"]
    assert artifact["databases"] == [vault_db.name]
    assert artifact["pgServerVersion"] and artifact["pgDumpVersion"]

    # The artifact is a plain pg_dump archive: pg_restore alone brings back the same rows.
    restore = subprocess.run(
        [str(stack.postgres.bindir / "pg_restore"), "--exit-on-error", "-d", empty_db],
        input=body,
        capture_output=True,
        env=stack.postgres.client_env(empty_db),
    )
    assert restore.returncode == 0, restore.stderr.decode()
    restored = vaultdb.row_counts(stack.postgres.dsn(empty_db))
    assert restored == vault_db.row_counts
    assert {k.split(".")[-1]: v for k, v in entry["rowCounts"].items()} == vault_db.row_counts

    steps = [(s["name"], s["state"]) for s in status["steps"]]
    assert steps == [
        ("Validate", "Succeeded"),
        ("AcquireLock", "Succeeded"),
        ("Quiesce", "Skipped"),
        ("Dump", "Succeeded"),
        ("VerifyArtifact", "Succeeded"),
        ("Resume", "Skipped"),
        ("ReleaseLock", "Succeeded"),
    ]
    ready = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"
    reasons = {
        e["reason"]
        for e in stack.cluster.kubectl_json(
            ["get", "events", "-n", stack.namespace, "--field-selector", "involvedObject.name=nightly"]
        )["items"]
    }
    assert {"Accepted", "DumpStarted", "DumpSucceeded", "VerifyArtifactSucceeded", "Succeeded"} <= reasons
    assert "QuiesceStarted" not in reasons  # skipped: no Event says it started
    table = stack.cluster.kubectl(["get", "bkreq", "nightly", "-n", stack.namespace]).stdout.splitlines()
    column = table[0].index("SIZE")
    assert re.fullmatch(r"[0-9.]+ (B|KiB|MiB)", status["artifact"]["size"])
    assert table[1][column:].startswith(status["artifact"]["size"] + " "), table
    # The Job carried no secret value: credentials only by reference.
    job = stack.cluster.kubectl_json(["get", "job", status["jobName"], "-n", stack.namespace])
    assert stack.postgres.password not in json.dumps(job)
    assert stack.s3.secret_key not in json.dumps(job)


def test_quiesce_stops_in_order_and_restarts_in_reverse_with_original_replicas(stack, vault_db):
    original = deploy_stand_in_vault(stack)
    with PodObserver(stack.cluster, stack.namespace) as observer:
        stack.apply(stack.backup_request("quiesced", [vault_db.name], quiesce=True))
        backup = stack.wait_finished("quiesced")
        wait_for(lambda: ready_replicas(stack.cluster, stack.namespace) == original, 120, "replicas back")
    assert backup["status"]["phase"] == "Succeeded", describe(stack, "quiesced")
    assert_tiers_in_order(observer, "deleted", STOP_TIERS)
    assert_tiers_in_order(observer, "ready", list(reversed(STOP_TIERS)))
    # The dump happened while the services were down: every stop before, every start after.
    assert max(observer.times("deleted", sum(STOP_TIERS, []))) < min(observer.times("ready", sum(STOP_TIERS, [])))
    assert backup["status"]["originalReplicas"] == {k: v for k, v in original.items() if k != "orchestrator"}
    assert not observer.times("deleted", ["orchestrator"])  # never stopped
    annotations = stack.cluster.kubectl_json(["get", "deployment", "wallet", "-n", stack.namespace])["metadata"].get(
        "annotations", {}
    )
    assert "walwarden.io/original-replicas" not in annotations


def test_wrong_password_fails_naming_the_cause_with_services_running(stack, vault_db):
    original = deploy_stand_in_vault(stack)
    stack.create_admin_secret(password="not-the-password")
    stack.apply(stack.backup_request("wrong-password", [vault_db.name], quiesce=True))
    backup = stack.wait_finished("wrong-password")
    status = backup["status"]
    assert status["phase"] == "Failed"
    [failed] = [c for c in status["conditions"] if c["type"] == "Failed"]
    assert failed["reason"] == "AuthenticationFailed", describe(stack, "wrong-password")
    assert "password" in status["message"].lower()
    assert "not-the-password" not in json.dumps(status)
    wait_for(lambda: ready_replicas(stack.cluster, stack.namespace) == original, 120, "services running")
    assert [s["state"] for s in status["steps"] if s["name"] == "Resume"] == ["Succeeded"]
    # Nothing that looks like a finished artifact was written.
    listed = stack.s3.client().list_objects_v2(Bucket=stack.bucket).get("Contents", [])
    assert not [o["Key"] for o in listed if o["Key"].endswith("manifest.json")]


def test_missing_secret_fails_in_validate_and_touches_nothing(stack):
    original = deploy_stand_in_vault(stack)
    request = stack.backup_request("no-secret", ["vault"], quiesce=True)
    request["spec"]["database"]["secretRef"]["name"] = "does-not-exist"
    stack.apply(request)
    status = stack.wait_finished("no-secret")["status"]
    assert status["phase"] == "Failed"
    assert "does-not-exist" in status["message"] and "does not exist" in status["message"]
    assert [s["state"] for s in status["steps"]][:2] == ["Failed", "Skipped"]
    assert ready_replicas(stack.cluster, stack.namespace) == original


def test_invalid_backup_request_is_refused(stack):
    request = stack.backup_request("invalid", ["vault"])
    del request["spec"]["storage"]
    result = stack.cluster.kubectl(["apply", "-n", stack.namespace, "-f", "-"], stdin=json.dumps(request), check=False)
    assert result.returncode != 0 and "spec.storage: Required value" in result.stderr


def test_two_backups_in_one_namespace_run_one_after_the_other(stack, vault_db):
    stack.apply(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [stack.backup_request("first", [vault_db.name]), stack.backup_request("second", [vault_db.name])],
        }
    )
    first, second = stack.wait_finished("first"), stack.wait_finished("second")
    assert first["status"]["phase"] == second["status"]["phase"] == "Succeeded"

    def window(backup):
        steps = {s["name"]: s for s in backup["status"]["steps"]}
        return steps["AcquireLock"]["finishedAt"], steps["ReleaseLock"]["finishedAt"]

    (a_start, a_end), (b_start, b_end) = sorted([window(first), window(second)])
    assert a_end <= b_start, "the two backups held the lock at the same time"
    waited = [
        b
        for b in (first, second)
        if any(c["type"] == "Waiting" and c["reason"] == "LockAcquired" for c in b["status"]["conditions"])
        and any(s["name"] == "AcquireLock" and s["startedAt"] < s["finishedAt"] for s in b["status"]["steps"])
    ]
    assert waited, "one of them should have waited for the lock"
