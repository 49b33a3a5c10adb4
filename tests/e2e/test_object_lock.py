"""S3 Object Lock against the real MinIO: a backup written locked cannot be deleted or replaced
before its date, by any credential the operator or its Jobs hold, and retention waits for it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from devstack.pytest_kube import wait_for
from tests.e2e.test_schedule import SCHEDULE_LABEL, SCHEDULED_AT_ANNOTATION, TIMEOUT, artifact_keys, schedule
from tests.e2e.vaults import Vault, parse_time
from walwarden.storage import s3 as storage

LOCK = {"mode": "Governance", "retainDays": 1}


def locked_storage(vault: Vault, bucket: str) -> dict:
    s3 = vault.storage()["s3"] | {"bucket": bucket, "objectLock": LOCK}
    return {"s3": s3}


def test_a_locked_backup_cannot_be_deleted_or_replaced_before_its_date_and_retention_waits(vault: Vault):
    bucket = vault.s3.create_bucket(f"{vault.bucket}-locked", object_lock=True)
    for name, at in (("locked-old", "2026-11-01T02:00:00Z"), ("locked-new", "2026-11-02T02:00:00Z")):
        vault.apply(
            {
                "apiVersion": "walwarden.io/v1alpha1",
                "kind": "BackupRequest",
                "metadata": {
                    "name": name,
                    "labels": {SCHEDULE_LABEL: "locked"},
                    "annotations": {SCHEDULED_AT_ANNOTATION: at},
                },
                "spec": {
                    "database": {"secretRef": {"name": "vault-db-admin"}, "databases": [vault.database]},
                    "storage": locked_storage(vault, bucket),
                },
            }
        )
    old = vault.wait_finished("backuprequests", "locked-old")
    assert old["status"]["phase"] == "Succeeded", vault.describe("backuprequests", "locked-old")
    assert vault.wait_finished("backuprequests", "locked-new")["status"]["phase"] == "Succeeded"

    client = vault.s3.client()  # the same credentials the operator and the backup Job use
    created = parse_time(old["metadata"]["creationTimestamp"])
    for key in artifact_keys(old):
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE"
        until = head["ObjectLockRetainUntilDate"].timestamp()
        assert abs(until - (created + timedelta(days=1).total_seconds())) < 2, (key, head)
        [version] = client.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
        with pytest.raises(ClientError) as refused:
            client.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
        # AWS answers AccessDenied; MinIO InvalidRequest "Object is WORM protected and cannot be overwritten".
        assert storage.error_code(refused.value) in {"AccessDenied", "InvalidRequest"}, refused.value.response
        assert client.head_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])["ContentLength"] > 0
        # An overwrite is a new version: the locked bytes stay, readable by their version.
        original = client.get_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])["Body"].read()
        client.put_object(Bucket=bucket, Key=key, Body=b"tampered")
        kept = client.get_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])["Body"].read()
        assert kept == original and len(original) > len(b"tampered")

    # Retention keeps only the newest, but the older one is locked for a day: kept, and said why.
    vault.apply(schedule(vault, "locked", suspend=True, retention={"keepLast": 1}))

    def blocked() -> list[str]:
        status = vault.get("backupschedules", "locked").get("status") or {}
        return (status.get("retention") or {}).get("blocked") or []

    wait_for(blocked, TIMEOUT, "the retention's pass")
    [why] = blocked()
    assert why.startswith("locked-old: under S3 Object Lock until "), why
    assert vault.get("backuprequests", "locked-old")["status"]["phase"] == "Succeeded"
    assert {v["Key"] for v in client.list_object_versions(Bucket=bucket)["Versions"]} >= artifact_keys(old)


def test_object_lock_on_a_bucket_without_it_is_refused_before_the_dump(vault: Vault):
    vault.apply(
        {
            "apiVersion": "walwarden.io/v1alpha1",
            "kind": "BackupRequest",
            "metadata": {"name": "not-lockable"},
            "spec": {
                "database": {"secretRef": {"name": "vault-db-admin"}, "databases": [vault.database]},
                "storage": locked_storage(vault, vault.bucket),
            },
        }
    )
    status = vault.wait_finished("backuprequests", "not-lockable")["status"]
    assert status["phase"] == "Failed"
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Failed"] == ["ObjectLockNotEnabled"]
    assert f"bucket {vault.bucket} was not created with S3 Object Lock" in status["message"]
    assert not status.get("jobName")  # refused in Validate: no Job, nothing written
