"""The hash-chained audit log written beside an artifact (DESIGN §4).

One JSON line per state transition of every request that touched the artifact — labels and
timestamps only, never data or secret values. Each line carries the sha256 of the line before
it, so removing or editing a line breaks the chain, which `verify_chain` detects.

The chain alone cannot tell a log cut short, or rewritten whole, by someone who can write to the
bucket. So each request also records in its status the chain's head after its last append
(`status.audit.chainHead`): `verify_chain(text, expect_heads=…)` (`walwarden audit verify`) checks
that every recorded head is still a line of the log.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from typing import Any

from botocore.exceptions import ClientError

from walwarden.storage import bounded
from walwarden.storage.s3 import error_code, s3_uri

AUDIT_NAME = "audit.log"
GENESIS = "0" * 64
# The log is read whole and written back on every transition of every request that touches the
# backup, and a restore's requester picks which log that is. A line is about 300 bytes: 16 MiB is
# some 50,000 transitions, far more than one backup's history, and still little memory to read.
MAX_AUDIT_LOG_BYTES = 16 * 2**20
# Appends are conditional on the log being unchanged since it was read (S3 conditional writes);
# another writer's append in between means read again and append again, a few times at most.
MAX_APPEND_ATTEMPTS = 5
RETRY_PAUSE_SECONDS = 0.2
# S3 answers 412 when the condition does not hold, 409 when a concurrent conditional write won,
# and NoSuchKey when the log read was deleted since: each time, read again.
LOST_RACE_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey"})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404"})


class AuditChainBroken(Exception):
    pass


class AuditLogTooLarge(bounded.TooLarge):
    """The log is larger than the operator reads, or would be after this append: nothing written."""


class AuditLogContended(Exception):
    """Other writers changed the log between every read and write of this append: nothing written."""


def audit_key(prefix: str) -> str:
    return f"{prefix.strip('/')}/{AUDIT_NAME}"


def _line(previous_hash: str, record: dict[str, Any]) -> tuple[str, str]:
    body = json.dumps({**record, "prev": previous_hash}, sort_keys=True, separators=(",", ":"))
    return body, hashlib.sha256(body.encode()).hexdigest()


def verify_chain(text: str, expect_heads: tuple[str, ...] | list[str] = ()) -> str:
    """Check every line links to the one before, and that every head a request recorded is still
    one of the lines; return the last line's hash."""
    previous, seen = GENESIS, set()
    for number, line in enumerate(text.splitlines(), start=1):
        record = json.loads(line)
        if record.get("prev") != previous:
            raise AuditChainBroken(f"line {number} does not follow line {number - 1}")
        previous = hashlib.sha256(line.encode()).hexdigest()
        seen.add(previous)
    missing = [head for head in expect_heads if head not in seen]
    if missing:
        raise AuditChainBroken(
            f"the log no longer holds the line {missing[0]} a request recorded as its last: "
            "it was cut short or rewritten"
        )
    return previous


def append(client, bucket: str, key: str, records: list[dict[str, Any]]) -> str:
    """Append records to the log (read, check the chain, extend, write back only if the log is
    still the one read; else again); returns the new head."""
    for attempt in range(1, MAX_APPEND_ATTEMPTS + 1):
        text, etag = _read(client, bucket, key)
        body, head = _extended(text, records, s3_uri(bucket, key))
        try:
            client.put_object(
                Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson", **_unchanged_since(etag)
            )
            return head
        except ClientError as error:
            if error_code(error) not in LOST_RACE_CODES:
                raise
        if attempt < MAX_APPEND_ATTEMPTS:
            time.sleep(random.uniform(0, RETRY_PAUSE_SECONDS))  # spreads writers that collided
    raise AuditLogContended(
        f"{s3_uri(bucket, key)} changed between reading and writing it {MAX_APPEND_ATTEMPTS} times in a row "
        "(other requests appending to it): these records were not written"
    )


def _read(client, bucket: str, key: str) -> tuple[str, str | None]:
    """The log's text and ETag; ("", None) when there is no log yet."""
    where = f"the audit log {s3_uri(bucket, key)}"
    try:
        body, etag = bounded.read_object(client, bucket, key, MAX_AUDIT_LOG_BYTES, where, too_large=AuditLogTooLarge)
    except ClientError as error:
        if error_code(error) not in NOT_FOUND_CODES:
            raise
        return "", None
    return body.decode(), etag


def _extended(text: str, records: list[dict[str, Any]], uri: str) -> tuple[bytes, str]:
    """The log with the records appended, and its new head; refused if it would outgrow what the
    operator reads, since it could never be appended to again."""
    previous = verify_chain(text)
    lines = text.splitlines()
    for record in records:
        line, previous = _line(previous, record)
        lines.append(line)
    body = ("\n".join(lines) + "\n").encode()
    if len(body) > MAX_AUDIT_LOG_BYTES:
        raise AuditLogTooLarge(f"the audit log {uri} with these records", MAX_AUDIT_LOG_BYTES, len(body))
    return body, previous


def _unchanged_since(etag: str | None) -> dict[str, str]:
    """The write's condition: the object is still the version read, or still absent."""
    return {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
