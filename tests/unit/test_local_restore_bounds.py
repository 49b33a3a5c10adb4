"""`walwarden restore` (cli/restore.py) refuses an object at the manifest's key larger than any
manifest, as an invalid manifest, without reading it."""

from __future__ import annotations

import pytest

from tests.unit.fakes import FakeS3
from walwarden.cli.restore import ManifestInvalid, read_dump_entry


def test_a_2_mib_manifest_is_invalid():
    s3 = FakeS3()
    s3.put("b", "p/manifest.json", b"{" + b" " * (2 * 2**20))
    with pytest.raises(ManifestInvalid) as refused:
        read_dump_entry(s3, "b", "p/vault.dump")
    assert "s3://b/p/manifest.json is 2.0 MiB (2097153 bytes), over the 1.0 MiB limit" in str(refused.value)
