"""audit.log and the manifest against the real S3 (MinIO): appends are conditional writes (If-Match
on the ETag read, If-None-Match: * for a new log), so a writer that appended between another's
read and write keeps its line; and an object too large to be a manifest is refused by its length."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from walwarden.storage import audit
from walwarden.storage import manifest as manifests
from walwarden.storage.s3 import error_code

pytestmark = pytest.mark.integration

KEY = "backups/vault/nightly/audit.log"


class Interleaved:
    """A real client whose first put_object is preceded by another writer's append (the other
    writer read nothing of ours: it is exactly the race an unconditional write loses)."""

    def __init__(self, client: Any, other: Any, bucket: str) -> None:
        self.client, self.other, self.bucket, self.puts = client, other, bucket, 0

    def get_object(self, **arguments: Any) -> dict[str, Any]:
        return self.client.get_object(**arguments)

    def put_object(self, **arguments: Any) -> dict[str, Any]:
        self.puts += 1
        if self.puts == 1:
            audit.append(self.other, self.bucket, KEY, [{"reason": "Theirs"}])
        return self.client.put_object(**arguments)


def reasons(client: Any, bucket: str) -> list[str]:
    text = client.get_object(Bucket=bucket, Key=KEY)["Body"].read().decode()
    audit.verify_chain(text)
    return [line.split('"reason":"')[1].split('"')[0] for line in text.splitlines()]


def test_the_server_honours_if_match_and_if_none_match_on_put(s3_server, s3_bucket):
    client = s3_server.client()
    etag = client.put_object(Bucket=s3_bucket, Key=KEY, Body=b"one\n")["ETag"]
    client.put_object(Bucket=s3_bucket, Key=KEY, Body=b"two\n", IfMatch=etag)
    for condition in ({"IfMatch": etag}, {"IfNoneMatch": "*"}):
        with pytest.raises(ClientError) as refused:
            client.put_object(Bucket=s3_bucket, Key=KEY, Body=b"lost\n", **condition)
        assert error_code(refused.value) in audit.LOST_RACE_CODES
    assert client.get_object(Bucket=s3_bucket, Key=KEY)["Body"].read() == b"two\n"


def test_a_writer_appending_between_our_read_and_write_keeps_its_line(s3_server, s3_bucket):
    audit.append(s3_server.client(), s3_bucket, KEY, [{"reason": "Before"}])
    racing = Interleaved(s3_server.client(), s3_server.client(), s3_bucket)
    audit.append(racing, s3_bucket, KEY, [{"reason": "Ours"}])
    assert racing.puts == 2  # the first write was refused, the second made after reading again
    assert reasons(s3_server.client(), s3_bucket) == ["Before", "Theirs", "Ours"]


def test_two_writers_creating_the_log_at_once_both_keep_their_lines(s3_server, s3_bucket):
    racing = Interleaved(s3_server.client(), s3_server.client(), s3_bucket)
    audit.append(racing, s3_bucket, KEY, [{"reason": "Ours"}])
    assert reasons(s3_server.client(), s3_bucket) == ["Theirs", "Ours"]


class DeletedBetween(Interleaved):
    """A real client whose first put_object is preceded by someone deleting the log."""

    def put_object(self, **arguments: Any) -> dict[str, Any]:
        self.puts += 1
        if self.puts == 1:
            self.other.delete_object(Bucket=self.bucket, Key=KEY)
        return self.client.put_object(**arguments)


def test_a_log_deleted_between_our_read_and_write_is_started_again(s3_server, s3_bucket):
    audit.append(s3_server.client(), s3_bucket, KEY, [{"reason": "Before"}])
    deleting = DeletedBetween(s3_server.client(), s3_server.client(), s3_bucket)
    audit.append(deleting, s3_bucket, KEY, [{"reason": "Ours"}])
    assert deleting.puts == 2  # If-Match on a deleted object: NoSuchKey, then read again
    assert reasons(s3_server.client(), s3_bucket) == ["Ours"]


def test_concurrent_writers_lose_no_line(s3_server, s3_bucket, monkeypatch):
    monkeypatch.setattr(audit, "MAX_APPEND_ATTEMPTS", 50)  # here: no append given up, all counted
    written: list[str] = []

    def writer(name: str) -> None:
        client = s3_server.client()
        for number in range(8):
            audit.append(client, s3_bucket, KEY, [{"reason": f"{name}{number}"}])
            written.append(f"{name}{number}")

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("A", "B", "C")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(reasons(s3_server.client(), s3_bucket)) == sorted(written) and len(written) == 24


def test_a_2_mib_object_at_the_manifests_key_is_refused_by_its_length(s3_server, s3_bucket):
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="p/manifest.json", Body=b"{" + b" " * (2 * 2**20))
    with pytest.raises(manifests.ManifestTooLarge) as refused:
        manifests.read_manifest(client, s3_bucket, "p/manifest.json")
    assert refused.value.size == 2 * 2**20 + 1
