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
from typing import Any

from botocore.exceptions import ClientError

AUDIT_NAME = "audit.log"
GENESIS = "0" * 64


class AuditChainBroken(Exception):
    pass


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
    """Append records to the log (read, check the chain, extend, write back); returns the new head."""
    try:
        text = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
            raise
        text = ""
    previous = verify_chain(text)
    lines = text.splitlines()
    for record in records:
        line, previous = _line(previous, record)
        lines.append(line)
    client.put_object(
        Bucket=bucket, Key=key, Body=("\n".join(lines) + "\n").encode(), ContentType="application/x-ndjson"
    )
    return previous
