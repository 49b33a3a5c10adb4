"""Appending to audit.log (storage/audit.py append): the read is bounded, and the write is
conditional on the log being the one read, so two writers appending at once both keep their lines."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.unit.fakes import FakeS3
from walwarden.storage import audit
from walwarden.storage.audit import (
    MAX_APPEND_ATTEMPTS,
    MAX_AUDIT_LOG_BYTES,
    AuditLogContended,
    AuditLogTooLarge,
    append,
    verify_chain,
)

BUCKET, KEY = "b", "p/audit.log"


@pytest.fixture(autouse=True)
def no_pause(monkeypatch):
    monkeypatch.setattr(audit, "RETRY_PAUSE_SECONDS", 0)


def reasons(s3: FakeS3) -> list[str]:
    text = s3.objects[(BUCKET, KEY)].decode()
    verify_chain(text)
    return [line.split('"reason":"')[1].split('"')[0] for line in text.splitlines()]


class Interleaved(FakeS3):
    """Another writer appends `others` between this writer's read and its first writes."""

    def __init__(self, others: list[str], times: int = 1) -> None:
        super().__init__()
        self.others, self.times, self.attempts = others, times, 0

    def put_object(self, **arguments: Any) -> dict[str, Any]:
        self.attempts += 1
        if self.attempts <= self.times:
            append(other_writer(self), BUCKET, KEY, [{"reason": reason} for reason in self.others])
        return super().put_object(**arguments)


def other_writer(s3: FakeS3) -> FakeS3:
    """Another client of the same bucket."""
    other = FakeS3()
    other.objects = s3.objects
    return other


def test_appends_extend_the_chain_and_return_its_head():
    s3 = FakeS3()
    first = append(s3, BUCKET, KEY, [{"reason": "A"}])
    head = append(s3, BUCKET, KEY, [{"reason": "B"}, {"reason": "C"}])
    assert reasons(s3) == ["A", "B", "C"]
    assert verify_chain(s3.objects[(BUCKET, KEY)].decode(), expect_heads=[first, head]) == head


def test_a_writer_that_appended_between_our_read_and_write_keeps_its_line():
    s3 = Interleaved(["theirs"])
    append(other_writer(s3), BUCKET, KEY, [{"reason": "before"}])
    head = append(s3, BUCKET, KEY, [{"reason": "ours"}])
    assert reasons(s3) == ["before", "theirs", "ours"]
    assert verify_chain(s3.objects[(BUCKET, KEY)].decode()) == head


def test_two_writers_creating_the_log_at_once_both_keep_their_lines():
    s3 = Interleaved(["theirs"])
    append(s3, BUCKET, KEY, [{"reason": "ours"}])
    assert reasons(s3) == ["theirs", "ours"]


def test_a_log_deleted_between_our_read_and_write_is_started_again():
    class Deleting(FakeS3):
        def put_object(self, **arguments: Any) -> dict[str, Any]:
            if self.puts == [(BUCKET, KEY)]:  # after the first append: someone deletes the log
                del self.objects[(BUCKET, KEY)]
                self.puts.append(("deleted", KEY))
            return super().put_object(**arguments)

    s3 = Deleting()
    append(s3, BUCKET, KEY, [{"reason": "before"}])
    append(s3, BUCKET, KEY, [{"reason": "ours"}])
    assert reasons(s3) == ["ours"]  # a new chain: the heads recorded before show what was lost


def test_a_log_that_changes_under_every_attempt_fails_clearly_and_ours_is_not_written():
    s3 = Interleaved(["theirs"], times=MAX_APPEND_ATTEMPTS)
    with pytest.raises(AuditLogContended) as contended:
        append(s3, BUCKET, KEY, [{"reason": "ours"}])
    assert f"s3://{BUCKET}/{KEY} changed between reading and writing it {MAX_APPEND_ATTEMPTS} times" in str(
        contended.value
    )
    assert reasons(s3) == ["theirs"] * MAX_APPEND_ATTEMPTS


def test_other_refusals_are_not_retried():
    s3 = FakeS3()
    s3.fail_puts = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")
    with pytest.raises(ClientError):
        append(s3, BUCKET, KEY, [{"reason": "A"}])


def test_a_log_over_the_limit_is_not_read_nor_written():
    s3 = FakeS3()
    huge = b"x" * (MAX_AUDIT_LOG_BYTES + 1)
    s3.put(BUCKET, KEY, huge)
    with pytest.raises(AuditLogTooLarge) as refused:
        append(s3, BUCKET, KEY, [{"reason": "A"}])
    assert f"the audit log s3://{BUCKET}/{KEY} is 16 MiB ({len(huge)} bytes), over the 16 MiB limit" in str(
        refused.value
    )
    assert s3.objects[(BUCKET, KEY)] is huge and s3.puts == []


def test_an_append_that_would_outgrow_the_limit_is_refused(monkeypatch):
    s3 = FakeS3()
    append(s3, BUCKET, KEY, [{"reason": "A"}])
    written = s3.objects[(BUCKET, KEY)]
    monkeypatch.setattr(audit, "MAX_AUDIT_LOG_BYTES", len(written) + 10)
    with pytest.raises(AuditLogTooLarge):
        append(s3, BUCKET, KEY, [{"reason": "B"}])
    assert s3.objects[(BUCKET, KEY)] == written
