"""Appending a pass's transitions to the hash-chained audit log beside the artifact (DESIGN §4)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from walwarden.api import AuditAnchor, format_timestamp, utcnow
from walwarden.storage import audit
from walwarden.storage.s3 import s3_uri
from walwarden.workflow.engine import Run

AuditLocation = tuple[Any, str, str]  # (S3 client, bucket, key)


def write_audit(
    run: Run[Any, Any],
    location: Callable[[Any], AuditLocation | None],
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """Labels and timestamps, never data. A log that cannot be written is reported loudly but
    does not stop a restore half-way."""
    if not run.events:
        return
    now = format_timestamp(utcnow())
    records = [
        {
            "time": now,
            "kind": run.kind,
            "namespace": run.namespace,
            "name": run.name,
            "uid": run.uid,
            "reason": event.reason,
            "type": "Warning" if event.warning else "Normal",
        }
        for event in run.events
    ]
    try:
        where = location(run)
        if where is not None:
            head = audit.append(*where, records)
            _, bucket, key = where
            # Anchors the log: `walwarden audit verify --expect-head` finds it cut short or rewritten.
            run.status.audit = AuditAnchor(log=s3_uri(bucket, key), chain_head=head)
    except Exception as error:
        logger.warning("audit log not written: %s", type(error).__name__)
        run.event(
            "AuditLogUnavailable",
            f"the audit log beside the artifact could not be written "
            f"({_why(error)}); Events and status still record this request",
            warning=True,
        )


def _why(error: Exception) -> str:
    """The error's name, and for the log's own refusals their message (a URI and sizes: labels);
    other errors' messages may quote what a server said, so they are left out."""
    if isinstance(error, audit.AuditLogTooLarge | audit.AuditLogContended):
        return f"{type(error).__name__}: {error}"
    return type(error).__name__
