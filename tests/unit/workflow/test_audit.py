"""Writing a pass's transitions to audit.log (workflow/audit.py): a log the operator refuses to
read, or cannot get a turn to write, is said in the AuditLogUnavailable Event with why."""

from __future__ import annotations

import logging

from tests.unit.fakes import BUCKET, FakeS3
from walwarden.storage import audit
from walwarden.workflow.audit import write_audit

KEY = "prod/audit.log"
LOGGER = logging.getLogger("test")


def test_the_transitions_are_appended_and_the_head_anchored(vault):
    run = vault.restore_run()
    run.event("Started", "the restore started")
    write_audit(run, lambda _: (vault.s3, BUCKET, KEY), LOGGER)
    assert run.status.audit.chain_head == audit.verify_chain(vault.s3.objects[(BUCKET, KEY)].decode())


def test_a_log_too_large_to_read_is_reported_with_its_size_and_the_limit(vault):
    s3 = FakeS3()
    s3.put(BUCKET, KEY, b"x" * (audit.MAX_AUDIT_LOG_BYTES + 1))
    run = vault.restore_run()
    run.event("Started", "the restore started")
    write_audit(run, lambda _: (s3, BUCKET, KEY), LOGGER)
    unavailable = run.events[-1]
    assert unavailable.reason == "AuditLogUnavailable" and unavailable.warning
    assert f"AuditLogTooLarge: the audit log s3://{BUCKET}/{KEY} is 16 MiB" in unavailable.message
    assert "over the 16 MiB limit" in unavailable.message
    assert run.status.audit is None
