from __future__ import annotations

import pytest

from walwarden.storage.s3 import parse_s3_uri, s3_uri


def test_round_trip():
    assert parse_s3_uri("s3://vault-backups/backups/vault/nightly/vault.dump") == (
        "vault-backups",
        "backups/vault/nightly/vault.dump",
    )
    assert parse_s3_uri(s3_uri("b", "k/manifest.json")) == ("b", "k/manifest.json")


@pytest.mark.parametrize("uri", ["https://b/k", "s3://", "s3://bucket", "s3://bucket/", "s3:///key"])
def test_not_an_object_uri(uri):
    with pytest.raises(ValueError):
        parse_s3_uri(uri)
