"""VerifyArtifact (backup/steps.py): an object at the manifest's key larger than any manifest a
backup Job writes is refused by its own reason, with its size and the limit, and not read."""

from __future__ import annotations

import pytest

from tests.unit.fakes import BUCKET
from walwarden.backup.steps import verify_artifact
from walwarden.workflow.engine import StepFailed

PREFIX = "prod/vault/backup-1-b0b0b0b0"
KEY_SECRET = "backup-1-walwarden-b0b0b0b0"


def test_a_2_mib_manifest_is_refused_as_too_large(vault):
    vault.kube.add_secret(KEY_SECRET, {"key": "the-requests-key"})
    vault.s3.put(BUCKET, f"{PREFIX}/manifest.json", b"{" + b" " * (2 * 2**20))
    run = vault.backup_run()
    with pytest.raises(StepFailed) as failed:
        verify_artifact(run)
    assert failed.value.reason == "ManifestTooLarge"
    assert f"s3://{BUCKET}/{PREFIX}/manifest.json is 2.0 MiB (2097153 bytes), over the 1.0 MiB limit" in (
        failed.value.message
    )
    assert run.status.artifact is None
