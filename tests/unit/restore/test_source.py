"""The backup being restored (restore/source.py): a manifest too large to be one is refused by
its own reason, with its size and the limit, and one forging its scrypt parameters is refused as
unreadable, both before anything is touched."""

from __future__ import annotations

import json

import pytest

from tests.unit.fakes import ADMIN_SECRET, BUCKET
from walwarden.restore.steps.validate import validate
from walwarden.storage import manifest as manifests
from walwarden.workflow.engine import StepFailed


def refused(run) -> StepFailed:
    with pytest.raises(StepFailed) as failed:
        validate(run)
    return failed.value


def by_artifact_uri(vault) -> dict:
    return vault.restore_spec(
        source={"backupRef": None, "artifact": vault.backup.manifest.databases[0].uri},
        storage={"s3": {"bucket": BUCKET}},
        target={"secretRef": {"name": ADMIN_SECRET}},
    )


@pytest.mark.parametrize("source", ["backupRef", "artifact"])
def test_a_2_mib_manifest_is_refused_as_too_large_and_nothing_is_touched(vault, source):
    key = manifests.manifest_key(vault.backup.prefix)
    vault.s3.put(BUCKET, key, b"{" + b" " * (2 * 2**20))
    run = vault.restore_run(vault.restore_spec() if source == "backupRef" else by_artifact_uri(vault))
    failure = refused(run)
    assert failure.reason == "ManifestTooLarge"
    assert f"s3://{BUCKET}/{key} is 2.0 MiB (2097153 bytes), over the 1.0 MiB limit" in failure.message
    assert "nothing was touched" in failure.message
    assert vault.kube.writes == [] and vault.s3.puts == []


@pytest.mark.parametrize("n", [2, 2**30])
def test_a_manifest_forging_the_emp_fingerprints_scrypt_cost_is_refused_before_anything(vault, n):
    key = manifests.manifest_key(vault.backup.prefix)
    forged = json.loads(vault.s3.objects[(BUCKET, key)])
    forged["encryptorFingerprints"][0]["n"] = n  # n=2: brute-forceable; 2**30: a terabyte of memory
    vault.s3.put(BUCKET, key, json.dumps(forged).encode())
    run = vault.restore_run(by_artifact_uri(vault))  # trusted as it is: no BackupRequest to compare with
    assert refused(run).reason in {"ManifestInvalid", "ManifestMissing"}  # unreadable as a manifest
    assert vault.kube.writes == [] and vault.s3.puts == []
