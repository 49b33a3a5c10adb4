"""One pass over a BackupSchedule against fake API objects, the clock passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.unit.fakes import NAMESPACE, FakeKube
from walwarden.api.backup import artifact_prefix
from walwarden.api.common import format_timestamp
from walwarden.api.schedule import SCHEDULE_LABEL, SCHEDULED_AT_ANNOTATION, BackupSchedule
from walwarden.schedule import reconcile as reconciling

CREATED = datetime(2026, 12, 1, 1, 0, 10, tzinfo=UTC)
TEMPLATE = {
    "database": {"secretRef": {"name": "vault-db-admin"}, "databases": ["vault"]},
    "storage": {"s3": {"bucket": "vault-backups", "prefix": "prod"}},
}


def schedule(status: dict | None = None, **spec: Any) -> BackupSchedule:
    body = {
        "apiVersion": "walwarden.io/v1alpha1",
        "kind": "BackupSchedule",
        "metadata": {"name": "nightly", "namespace": NAMESPACE, "creationTimestamp": format_timestamp(CREATED)},
        "spec": {"schedule": "30 2 * * *", "backupTemplate": {"spec": TEMPLATE}, **spec},
        "status": status,
    }
    return BackupSchedule.model_validate(body)


def at(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def requests(kube: FakeKube) -> dict[str, dict]:
    return {name: body for (_, plural, name), body in kube.custom_objects.items() if plural == "backuprequests"}


def add_request(kube: FakeKube, name: str, scheduled: datetime, phase: str | None, **extra: Any) -> None:
    body = {
        "metadata": {
            "name": name,
            "labels": {SCHEDULE_LABEL: "nightly"},
            "annotations": {SCHEDULED_AT_ANNOTATION: format_timestamp(scheduled)},
            "creationTimestamp": format_timestamp(scheduled),
        },
        "spec": TEMPLATE,
        "status": {"phase": phase, "completedAt": format_timestamp(scheduled + timedelta(minutes=5))} if phase else {},
    }
    kube.add_custom("backuprequests", body | extra)


def test_before_the_first_cron_time_nothing_runs_and_the_next_run_is_named():
    kube = FakeKube()
    done = reconciling.reconcile(kube, schedule(), at(1, 5))
    assert not requests(kube) and done.created is None
    assert done.status.next_schedule_time == "2026-12-01T02:30:00Z"
    assert [(c.type, c.status) for c in done.status.conditions] == [("Failed", "False"), ("Ready", "True")]


def test_at_its_time_a_run_creates_one_backup_request_from_the_template_and_only_one():
    kube = FakeKube()
    first = reconciling.reconcile(kube, schedule(), at(2, 30))
    [(name, body)] = requests(kube).items()
    assert name == first.created == "nightly-20261201-0230"
    assert body["metadata"]["labels"] == {SCHEDULE_LABEL: "nightly"}
    assert body["metadata"]["annotations"] == {SCHEDULED_AT_ANNOTATION: "2026-12-01T02:30:00Z"}
    assert "ownerReferences" not in body["metadata"]  # deleting the schedule keeps its backups
    assert body["spec"]["database"] == TEMPLATE["database"]
    assert [e.reason for e in first.events] == ["BackupCreated"]
    again = reconciling.reconcile(kube, schedule(first.status.to_dict()), at(2, 30) + timedelta(seconds=10))
    assert again.created is None and len(requests(kube)) == 1
    # Its status lost (a crash before the patch): the same name is found, not a second backup.
    lost = reconciling.reconcile(kube, schedule(), at(2, 31))
    assert lost.created == "nightly-20261201-0230" and len(requests(kube)) == 1 and not lost.events


def test_forbid_skips_a_run_while_the_previous_one_runs_and_allow_starts_it():
    kube = FakeKube()
    add_request(kube, "nightly-20261130-0230", datetime(2026, 11, 30, 2, 30, tzinfo=UTC), None)
    status = {"lastScheduleTime": "2026-11-30T02:30:00Z"}
    skipped = reconciling.reconcile(kube, schedule(status), at(2, 31))
    assert skipped.created is None and skipped.status.missed_runs == 1
    assert [(e.reason, e.warning) for e in skipped.events] == [("RunSkipped", True)]
    assert "nightly-20261130-0230 is still running" in skipped.status.message
    allowed = reconciling.reconcile(kube, schedule(status, concurrencyPolicy="Allow"), at(2, 31))
    assert allowed.created == "nightly-20261201-0230"


def test_a_suspended_schedule_starts_nothing_and_resuming_does_not_catch_up_the_suspended_window():
    kube = FakeKube()
    suspended = reconciling.reconcile(kube, schedule(suspend=True), at(2, 31))
    assert not requests(kube) and suspended.status.next_schedule_time is None
    resumed = reconciling.reconcile(kube, schedule(suspended.status.to_dict()), at(2, 32))
    assert not requests(kube) and resumed.status.next_schedule_time == "2026-12-02T02:30:00Z"
    assert resumed.status.message == "next run at 2026-12-02T02:30:00Z"


def test_a_bad_time_zone_fails_the_schedule_once_with_what_to_write():
    kube = FakeKube()
    bad = reconciling.reconcile(kube, schedule(timeZone="Mars/Olympus"), at(2, 30))
    assert not requests(kube)
    failed = [c for c in bad.status.conditions if c.type == "Failed"]
    assert failed[0].status == "True" and "IANA time zone" in failed[0].message
    assert [e.reason for e in bad.events] == ["ScheduleInvalid"]
    assert not reconciling.reconcile(kube, schedule(bad.status.to_dict(), timeZone="Mars/Olympus"), at(2, 31)).events
    fixed = reconciling.reconcile(kube, schedule(bad.status.to_dict()), at(2, 32))
    assert "IANA" not in fixed.status.message and "next run at 2026-12-02T02:30:00Z" in fixed.status.message


def test_a_schedule_that_never_fires_fails_once_with_what_to_write():
    kube = FakeKube()
    dead = reconciling.reconcile(kube, schedule(schedule="0 0 30 2 *"), at(2, 30))
    assert not requests(kube)
    failed = [c for c in dead.status.conditions if c.type == "Failed"]
    assert failed[0].status == "True" and failed[0].reason == "ScheduleInvalid" and "never fires" in failed[0].message
    assert [e.reason for e in dead.events] == ["ScheduleInvalid"]


class VersionedS3:
    """list_object_versions (paginated) and delete_objects over (key, version) pairs."""

    def __init__(self, keys: list[str]):
        self.versions = {(key, "v1") for key in keys}

    def get_paginator(self, name: str):
        assert name == "list_object_versions"
        return self

    def paginate(self, Bucket: str, Prefix: str):
        yield {"Versions": [{"Key": k, "VersionId": v} for k, v in sorted(self.versions) if k.startswith(Prefix)]}

    def delete_objects(self, Bucket: str, Delete: dict) -> dict:
        for entry in Delete["Objects"]:
            self.versions.discard((entry["Key"], entry["VersionId"]))
        return {}


def test_retention_prunes_requests_and_objects_but_not_one_a_restore_still_needs(monkeypatch: pytest.MonkeyPatch):
    kube = FakeKube()
    for day in (27, 28, 29, 30):
        add_request(kube, f"nightly-202611{day}-0230", datetime(2026, 11, day, 2, 30, tzinfo=UTC), "Succeeded")
    restore = {
        "metadata": {"name": "incident-7"},
        "spec": {"source": {"backupRef": {"name": "nightly-20261127-0230"}}},
        "status": {"phase": "Running"},
    }
    kube.add_custom("restorerequests", restore)
    folder = artifact_prefix("prod", NAMESPACE, "nightly-20261128-0230", "uid-nightly-20261128-0230")
    s3 = VersionedS3([f"{folder}/vault.dump", f"{folder}/manifest.json", f"{folder}/audit.log"])
    monkeypatch.setattr(reconciling, "namespace_s3_client", lambda *_: s3)
    policy = {"keepLast": 2}
    status = {"lastScheduleTime": "2026-12-01T02:30:00Z"}
    dry = reconciling.reconcile(kube, schedule(status, retention=policy | {"dryRun": True}), at(3))
    assert dry.status.retention.would_prune == ["nightly-20261128-0230"] and len(requests(kube)) == 4
    assert dry.status.retention.blocked == ["nightly-20261127-0230: needed by RestoreRequest incident-7"]

    done = reconciling.reconcile(kube, schedule(status, retention=policy), at(3))
    assert done.pruned == ["nightly-20261128-0230"]
    assert set(requests(kube)) == {"nightly-20261127-0230", "nightly-20261129-0230", "nightly-20261130-0230"}
    assert s3.versions == {(f"{folder}/audit.log", "v1")}  # the audit log stays
    [pruned] = [e for e in done.events if e.reason == "Pruned"]
    assert "nightly-20261128-0230" in pruned.message and "kept nightly-20261130-0230 (newest/last 2)" in pruned.message
    assert done.status.retention.kept == 2
