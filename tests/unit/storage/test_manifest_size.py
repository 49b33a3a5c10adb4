"""read_manifest refuses an object larger than any manifest Walwarden writes (MAX_MANIFEST_BYTES),
reading at most one byte past the limit whatever its ContentLength says."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tests.unit.fakes import FakeS3
from tests.unit.storage.test_manifest import make_manifest
from walwarden.storage.manifest import MAX_MANIFEST_BYTES, ManifestTooLarge, read_manifest, write_manifest


class CountingBody(io.BytesIO):
    def __init__(self, content: bytes) -> None:
        super().__init__(content)
        self.read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None and size >= 0, "an unbounded read of the manifest"
        chunk = super().read(size)
        self.read_bytes += len(chunk)
        return chunk


class LyingS3:
    """An object store (or a proxy) whose ContentLength is not the body's length."""

    def __init__(self, body: bytes, content_length: int) -> None:
        self.body = CountingBody(body)
        self.content_length = content_length

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": self.body, "ContentLength": self.content_length, "ETag": '"x"'}


def padded_manifest(size: int) -> bytes:
    """A manifest's JSON made `size` bytes long with whitespace: valid JSON, if it were read."""
    content = json.dumps(make_manifest().to_json()).encode()
    return content + b" " * (size - len(content))


def test_a_real_manifest_is_read():
    s3 = FakeS3()
    write_manifest(s3, "b", "p/manifest.json", make_manifest())
    assert read_manifest(s3, "b", "p/manifest.json") == make_manifest()


def test_a_2_mib_manifest_is_refused_with_its_size_and_the_limit():
    s3 = FakeS3()
    s3.put("b", "p/manifest.json", padded_manifest(2 * 2**20))
    with pytest.raises(ManifestTooLarge) as refused:
        read_manifest(s3, "b", "p/manifest.json")
    assert str(refused.value) == (
        "the manifest s3://b/p/manifest.json is 2.0 MiB (2097152 bytes), over the 1.0 MiB limit"
    )


def test_a_body_that_lies_about_its_length_is_read_no_further_than_the_limit():
    s3 = LyingS3(padded_manifest(2 * 2**20), content_length=4096)
    with pytest.raises(ManifestTooLarge):
        read_manifest(s3, "b", "p/manifest.json")
    assert s3.body.read_bytes == MAX_MANIFEST_BYTES + 1


def test_a_manifest_at_the_limit_is_still_read():
    s3 = FakeS3()
    s3.put("b", "p/manifest.json", padded_manifest(MAX_MANIFEST_BYTES))
    assert read_manifest(s3, "b", "p/manifest.json") == make_manifest()
