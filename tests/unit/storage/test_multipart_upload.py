"""MultipartUpload's promises, against an in-memory stand-in for the S3 client (the real MinIO is
in tests/integration/test_backup_runner.py): bounded parts in memory, parts in order, no upload
left behind on failure."""

from __future__ import annotations

import threading
import time

import pytest

from walwarden.storage.s3 import MultipartUpload


class FakeS3:
    """meet: parts 1..meet each wait until all of them are in flight at once (a barrier, so
    overlap is shown without relying on how fast threads get scheduled)."""

    def __init__(self, delay: float = 0.0, fail_part: int | None = None, meet: int = 0):
        self.delay, self.fail_part = delay, fail_part
        self.meeting = threading.Barrier(meet, timeout=60) if meet else None
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.parts: dict[int, bytes] = {}
        self.completed: list[dict] | None = None
        self.aborted = False

    def create_multipart_upload(self, **kwargs):
        return {"UploadId": "u1"}

    def upload_part(self, *, PartNumber, Body, **kwargs):
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.meeting is not None and PartNumber <= self.meeting.parties:
            self.meeting.wait()  # broken (the test fails) if they never run at the same time
        time.sleep(self.delay)
        with self.lock:
            self.in_flight -= 1
        if PartNumber == self.fail_part:
            raise ConnectionError(f"part {PartNumber} lost")
        self.parts[PartNumber] = bytes(Body)
        return {"ETag": f'"etag{PartNumber}"'}

    def complete_multipart_upload(self, *, MultipartUpload, **kwargs):
        self.completed = MultipartUpload["Parts"]

    def abort_multipart_upload(self, **kwargs):
        self.aborted = True


def test_parts_are_completed_in_order():
    s3 = FakeS3(delay=0.01)
    with MultipartUpload(s3, "b", "k") as upload:
        for n in range(1, 8):
            upload.add_part(bytes([n]) * 10)
        upload.complete()
    assert s3.completed == [{"PartNumber": n, "ETag": f'"etag{n}"'} for n in range(1, 8)]
    assert b"".join(s3.parts[n] for n in sorted(s3.parts)) == b"".join(bytes([n]) * 10 for n in range(1, 8))
    assert not s3.aborted


def test_add_part_blocks_while_workers_plus_queued_parts_are_pending():
    s3 = FakeS3(delay=0.05, meet=2)  # both workers upload at once
    pending = []
    with MultipartUpload(s3, "b", "k", workers=2, queued=1) as upload:
        for _ in range(10):
            upload.add_part(b"x")
            pending.append(sum(not f.done() for f in upload._parts))
        upload.complete()
    assert max(pending) <= 3
    assert s3.most_in_flight == 2


def test_a_failed_part_stops_the_upload_and_aborts_it():
    s3 = FakeS3(fail_part=2)
    with pytest.raises(ConnectionError, match="part 2 lost"), MultipartUpload(s3, "b", "k") as upload:
        for _ in range(100):
            upload.add_part(b"x")
            time.sleep(0.001)
        upload.complete()
    assert s3.aborted and s3.completed is None


def test_leaving_without_completing_aborts():
    s3 = FakeS3()
    with pytest.raises(RuntimeError), MultipartUpload(s3, "b", "k") as upload:
        upload.add_part(b"x")
        raise RuntimeError("pg_dump failed")
    assert s3.aborted and s3.completed is None


def test_an_upload_without_parts_is_not_completed():
    s3 = FakeS3()
    with pytest.raises(ValueError), MultipartUpload(s3, "b", "k") as upload:
        upload.complete()
    assert s3.aborted
