"""BackupSchedule on the real local stack: runs created on time by the operator, retention that
prunes exactly the right BackupRequests and S3 objects over generated history, and one catch-up
run after an operator outage. What happened is read from the API server and from MinIO."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack.operator_process import OperatorProcess
from devstack.pytest_kube import wait_for
from tests.e2e.vaults import Vault, parse_time
from walwarden.api.common import format_timestamp
from walwarden.api.schedule import SCHEDULE_LABEL, SCHEDULED_AT_ANNOTATION
from walwarden.schedule.timing import run_name

TIMEOUT = 300  # per wait: each ends as soon as what it waits for is seen


def backup_spec(vault: Vault, secret: str = "vault-db-admin") -> dict[str, Any]:
    return {"database": {"secretRef": {"name": secret}, "databases": [vault.database]}, "storage": vault.storage()}


def schedule(vault: Vault, name: str, cron: str = "* * * * *", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "walwarden.io/v1alpha1",
        "kind": "BackupSchedule",
        "metadata": {"name": name},
        "spec": {"schedule": cron, "backupTemplate": {"spec": backup_spec(vault)}, **spec},
    }


def runs_of(vault: Vault, name: str) -> list[dict]:
    selector = f"{SCHEDULE_LABEL}={name}"
    items = vault.cluster.kubectl_json(["get", "backuprequests", "-n", vault.namespace, "-l", selector])["items"]
    return sorted(items, key=lambda item: item["metadata"]["annotations"][SCHEDULED_AT_ANNOTATION])


def scheduled_at(request: dict) -> datetime:
    return datetime.fromtimestamp(parse_time(request["metadata"]["annotations"][SCHEDULED_AT_ANNOTATION]), UTC)


def events_of(vault: Vault, name: str, reason: str) -> list[str]:
    selector = f"involvedObject.name={name},involvedObject.kind=BackupSchedule,reason={reason}"
    listing = vault.cluster.kubectl_json(["get", "events", "-n", vault.namespace, "--field-selector", selector])
    return [event["message"] for event in listing["items"]]


def object_keys(vault: Vault, prefix: str) -> set[str]:
    listing = vault.s3.client().list_objects_v2(Bucket=vault.bucket, Prefix=prefix.rstrip("/") + "/")
    return {entry["Key"] for entry in listing.get("Contents", [])}


def artifact_keys(request: dict) -> set[str]:
    """The S3 keys of a backup's dump and manifest, from its status."""
    artifact = request["status"]["artifact"]
    return {uri.split("/", 3)[3] for uri in (artifact["uri"], artifact["manifestUri"])}


def test_a_schedule_every_minute_creates_a_backup_at_each_minute_that_succeeds(vault: Vault):
    vault.apply(schedule(vault, "every-minute"))
    wait_for(lambda: runs_of(vault, "every-minute"), TIMEOUT, "the schedule's first run")
    [first] = runs_of(vault, "every-minute")
    at = scheduled_at(first)
    assert at.second == 0 and first["metadata"]["name"] == run_name("every-minute", at)
    created = datetime.fromtimestamp(parse_time(first["metadata"]["creationTimestamp"]), UTC)
    # Created at its minute, not before it; the timer looks every 10 s (a busy machine: later).
    assert at <= created + timedelta(seconds=1), (at, created)
    template = backup_spec(vault)  # the request's spec is the template's (with the API's defaults)
    assert first["spec"]["database"] == template["database"]
    assert first["spec"]["storage"]["s3"].items() >= template["storage"]["s3"].items()
    done = vault.wait_finished("backuprequests", first["metadata"]["name"])
    assert done["status"]["phase"] == "Succeeded", vault.describe("backuprequests", first["metadata"]["name"])

    def recorded() -> bool:
        status = vault.get("backupschedules", "every-minute").get("status") or {}
        return (
            status.get("lastSuccessfulBackup") == first["metadata"]["name"]
            or (status.get("lastSuccessfulBackup") or "") > first["metadata"]["name"]
        )

    wait_for(recorded, TIMEOUT, "the schedule to record its successful backup")
    status = vault.get("backupschedules", "every-minute")["status"]
    assert parse_time(status["nextScheduleTime"]) > parse_time(status["lastScheduleTime"])
    assert parse_time(status["nextScheduleTime"]) - parse_time(status["lastScheduleTime"]) == 60
    assert [c["status"] for c in status["conditions"] if c["type"] == "Ready"] == ["True"]
    # The next minute brings the next run, with its own name.
    wait_for(lambda: len(runs_of(vault, "every-minute")) >= 2, TIMEOUT, "the second run")
    second = runs_of(vault, "every-minute")[1]
    assert scheduled_at(second) - at == timedelta(minutes=1)
    assert events_of(vault, "every-minute", "BackupCreated")
    # Suspended: no next run in status (not a stale one), and no new request after the next minute.
    vault.apply(schedule(vault, "every-minute", suspend=True))
    wait_for(
        lambda: "nextScheduleTime" not in vault.get("backupschedules", "every-minute")["status"], TIMEOUT, "suspend"
    )
    suspended_at = datetime.now(UTC)
    count = len(runs_of(vault, "every-minute"))
    wait_for(
        lambda: (
            parse_time(vault.get("backupschedules", "every-minute")["status"]["lastScheduleTime"])
            > suspended_at.timestamp() + 60
        ),
        TIMEOUT,
        "a pass more than a minute after suspending",
    )
    assert len(runs_of(vault, "every-minute")) == count


# Generated history: (name, scheduled at, succeeds). Weeks are ISO weeks; 30 Nov 2026 is a Monday.
HISTORY = [
    ("hist-a", datetime(2026, 11, 30, 2, tzinfo=UTC), True),  # week 49: newest, last 1, daily, weekly
    ("hist-b", datetime(2026, 11, 29, 2, tzinfo=UTC), True),  # week 48, Sunday: daily, weekly
    ("hist-c", datetime(2026, 11, 28, 2, tzinfo=UTC), True),  # week 48, Saturday: pruned
    ("hist-d", datetime(2026, 11, 22, 2, tzinfo=UTC), True),  # week 47, Sunday: weekly
    ("hist-e", datetime(2026, 11, 21, 2, tzinfo=UTC), True),  # week 47, Saturday: pruned
    ("hist-f", datetime(2026, 11, 15, 2, tzinfo=UTC), True),  # week 46: beyond 3 weeks, pruned
    ("hist-g", datetime(2026, 11, 20, 2, tzinfo=UTC), False),  # failed: pruned (keepFailedHours 0)
]
KEPT = {"hist-a", "hist-b", "hist-d"}
PRUNED = {"hist-c", "hist-e", "hist-f", "hist-g"}


def test_retention_prunes_exactly_the_requests_and_s3_objects_the_buckets_do_not_keep(vault: Vault):
    vault.admin_secret("stale-admin", password="not-the-password")  # hist-g fails
    for name, at, succeeds in HISTORY:
        vault.apply(
            {
                "apiVersion": "walwarden.io/v1alpha1",
                "kind": "BackupRequest",
                "metadata": {
                    "name": name,
                    "labels": {SCHEDULE_LABEL: "gfs"},
                    "annotations": {SCHEDULED_AT_ANNOTATION: format_timestamp(at)},
                },
                "spec": backup_spec(vault, "vault-db-admin" if succeeds else "stale-admin"),
            }
        )
    finished = {name: vault.wait_finished("backuprequests", name) for name, _, _ in HISTORY}
    assert {n for n, r in finished.items() if r["status"]["phase"] == "Succeeded"} == KEPT | (PRUNED - {"hist-g"})
    artifacts = {n: artifact_keys(r) for n, r in finished.items() if r["status"]["phase"] == "Succeeded"}
    folders = {n: min(keys).rpartition("/")[0] for n, keys in artifacts.items()}
    for name, folder in folders.items():
        assert artifacts[name] <= object_keys(vault, folder), name

    retention = {"keepLast": 1, "keepDaily": 2, "keepWeekly": 3, "keepFailedHours": 0, "dryRun": True}
    vault.apply(schedule(vault, "gfs", suspend=True, retention=retention))  # suspended: no new runs

    def dry_run() -> list[str] | None:
        return ((vault.get("backupschedules", "gfs").get("status") or {}).get("retention") or {}).get("wouldPrune")

    wait_for(dry_run, TIMEOUT, "the dry run's view")
    assert set(dry_run() or []) == PRUNED
    assert {r["metadata"]["name"] for r in runs_of(vault, "gfs")} == KEPT | PRUNED  # nothing deleted

    vault.apply(schedule(vault, "gfs", suspend=True, retention=retention | {"dryRun": False}))
    wait_for(lambda: {r["metadata"]["name"] for r in runs_of(vault, "gfs")} == KEPT, TIMEOUT, "the pruning")
    status = vault.get("backupschedules", "gfs")["status"]
    assert set(status["retention"]["lastPruned"]) == PRUNED and status["retention"]["kept"] == len(KEPT)
    for name, folder in folders.items():
        keys = object_keys(vault, folder)
        if name in KEPT:
            assert artifacts[name] <= keys, name
        else:
            assert keys <= {f"{folder}/audit.log"}, (name, keys)  # the dump and manifest gone; audit log kept
    [pruned] = events_of(vault, "gfs", "Pruned")
    assert all(name in pruned for name in PRUNED) and "kept hist-a (newest/last 1/daily/weekly)" in pruned
    # Restores by backupRef still work for what was kept.
    assert vault.get("backuprequests", "hist-d")["status"]["phase"] == "Succeeded"


def test_after_an_operator_outage_the_missed_runs_start_once_not_in_a_burst(vault: Vault, tmp_path):
    """The clock is driven through what the schedule's last pass recorded: the operator is killed
    (SIGKILL) and the status says its last run was handled 30 minutes ago, as after an outage."""
    vault.apply(schedule(vault, "outage", suspend=True, startingDeadlineSeconds=3600))
    wait_for(
        lambda: (vault.get("backupschedules", "outage").get("status") or {}).get("lastScheduleTime"),
        TIMEOUT,
        "a first pass",
    )
    vault.operator.kill()
    outage_start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    patch = {"status": {"lastScheduleTime": format_timestamp(outage_start), "missedRuns": 0}}
    vault.cluster.kubectl(
        ["patch", "backupschedule", "outage", "-n", vault.namespace, "--subresource=status", "--type=merge"]
        + ["-p", json.dumps(patch)]
    )
    vault.cluster.kubectl(
        ["patch", "backupschedule", "outage", "-n", vault.namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}']
    )
    assert runs_of(vault, "outage") == []
    restarted_at = datetime.now(UTC)
    vault.operator = OperatorProcess(
        vault.cluster, vault.namespace, tmp_path / "operator-after-outage.log", {"WALWARDEN_POLL_SECONDS": "1"}
    ).start()
    wait_for(lambda: runs_of(vault, "outage"), TIMEOUT, "the catch-up run")
    [catch_up, *later] = runs_of(vault, "outage")
    # One run, for the newest missed minute (the one before the restart, or the restart's own).
    assert scheduled_at(catch_up) >= restarted_at.replace(second=0, microsecond=0) - timedelta(minutes=1)
    assert all(scheduled_at(r) > scheduled_at(catch_up) for r in later)
    status = vault.get("backupschedules", "outage")["status"]
    assert status["missedRuns"] >= 28, status
    [missed, *_] = events_of(vault, "outage", "RunsMissed")
    assert f"starting the newest one, of {catch_up['metadata']['annotations'][SCHEDULED_AT_ANNOTATION]}, now" in missed
    assert vault.wait_finished("backuprequests", catch_up["metadata"]["name"])["status"]["phase"] == "Succeeded"


def test_a_schedule_that_cannot_run_is_refused_or_fails_loudly_and_creates_nothing(vault: Vault):
    refused = vault.cluster.kubectl(
        ["apply", "-n", vault.namespace, "-f", "-"], stdin=json.dumps(schedule(vault, "typo", "every day")), check=False
    )
    assert refused.returncode != 0 and "spec.schedule" in refused.stderr, refused.stderr
    vault.apply(schedule(vault, "mars", "61 * * * *"))
    vault.apply(schedule(vault, "atlantis", timeZone="Europe/Atlantis"))

    def failed(name: str) -> str | None:
        status = vault.get("backupschedules", name).get("status") or {}
        return next(
            (c["message"] for c in status.get("conditions", []) if c["type"] == "Failed" and c["status"] == "True"),
            None,
        )

    wait_for(lambda: failed("mars") and failed("atlantis"), TIMEOUT, "both schedules to fail")
    assert "is not a cron expression: five fields" in (failed("mars") or "")
    assert "'Europe/Atlantis' is not an IANA time zone" in (failed("atlantis") or "")
    assert events_of(vault, "atlantis", "ScheduleInvalid")
    assert not runs_of(vault, "mars") and not runs_of(vault, "atlantis")
    table = vault.cluster.kubectl(["get", "backupschedules", "-n", vault.namespace]).stdout
    assert table.split("\n")[0].split() == [
        "NAME",
        "SCHEDULE",
        "SUSPENDED",
        "LAST",
        "BACKUP",
        "LAST",
        "SUCCESS",
        "NEXT",
        "RUN",
        "KEPT",
        "AGE",
    ]


def drills_of(vault: Vault, name: str) -> list[dict]:
    selector = f"{SCHEDULE_LABEL}={name},walwarden.io/drill=true"
    items = vault.cluster.kubectl_json(["get", "restorerequests", "-n", vault.namespace, "-l", selector])["items"]
    return sorted(items, key=lambda item: item["metadata"]["annotations"][SCHEDULED_AT_ANNOTATION])


def drill_failed(vault: Vault, name: str) -> dict | None:
    status = vault.get("backupschedules", name).get("status") or {}
    return next((c for c in status.get("conditions", []) if c["type"] == "DrillFailed"), None)


def test_a_schedule_drills_each_new_backup_records_the_proof_and_a_failing_drill_raises_drill_failed(vault: Vault):
    passing = [{"name": "has-accounts", "sql": "SELECT count(*) > 0 FROM accounts", "expected": "t"}]
    target = {"secretRef": {"name": "vault-db-admin"}}
    drill = {"afterEachBackup": True, "target": target, "checks": passing, "historyLimit": 1}
    vault.apply(schedule(vault, "proven", drill=drill))
    wait_for(lambda: drills_of(vault, "proven"), TIMEOUT, "the first backup's drill")
    [first] = drills_of(vault, "proven")
    backup = first["spec"]["source"]["backupRef"]["name"]
    assert first["metadata"]["name"] == f"{backup}-drill" and first["spec"]["mode"] == "Drill"
    assert vault.get("backuprequests", backup)["status"]["phase"] == "Succeeded"  # only a success is drilled
    done = vault.wait_finished("restorerequests", first["metadata"]["name"])
    assert done["status"]["phase"] == "Succeeded", vault.describe("restorerequests", first["metadata"]["name"])

    def drill_status() -> dict:
        return (vault.get("backupschedules", "proven").get("status") or {}).get("drill") or {}

    wait_for(lambda: drill_status().get("lastResult") == "Succeeded", TIMEOUT, "the schedule to record the drill")
    recorded = drill_status()
    assert recorded["lastSuccessfulDrill"] == first["metadata"]["name"] and recorded["lastDurationSeconds"] > 0
    assert recorded["lastSuccessfulTime"] == done["status"]["completedAt"]
    assert (drill_failed(vault, "proven") or {}).get("status") == "False"
    wide = vault.cluster.kubectl(["get", "backupschedules", "proven", "-n", vault.namespace, "-o", "wide"]).stdout
    assert "LAST DRILL" in wide and "Succeeded" in wide

    # The next backups' drills check what is not so: the newest finished drill fails, and says it.
    failing = [{"name": "no-accounts", "sql": "SELECT count(*) = 0 FROM accounts", "expected": "t"}]
    vault.apply(schedule(vault, "proven", drill={**drill, "checks": failing}))
    wait_for(lambda: (drill_failed(vault, "proven") or {}).get("status") == "True", TIMEOUT, "DrillFailed")
    condition = drill_failed(vault, "proven") or {}
    assert (
        condition["reason"] == "DrillCheckFailed" and "no-accounts: answered 'f', expected 't'" in condition["message"]
    )
    assert any("no-accounts" in message for message in events_of(vault, "proven", "DrillFailed"))
    vault.apply(schedule(vault, "proven", drill={**drill, "checks": failing}, suspend=True))
    # historyLimit 1: only the newest finished drill is kept (the first one, which passed, is gone).
    wait_for(
        lambda: len([d for d in drills_of(vault, "proven") if (d.get("status") or {}).get("completedAt")]) == 1,
        TIMEOUT,
        "the older drills to be deleted",
    )
    assert first["metadata"]["name"] not in [d["metadata"]["name"] for d in drills_of(vault, "proven")]
