"""The hash-chained audit log written beside an artifact (DESIGN §4).

One JSON line per state transition of every request that touched the artifact — labels and
timestamps only, never data or secret values. Each line carries the sha256 of the line before
it, so removing or editing a line breaks the chain, which `verify_chain` detects.
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


def verify_chain(text: str) -> str:
    """Check every line links to the one before; return the last line's hash."""
    previous = GENESIS
    for number, line in enumerate(text.splitlines(), start=1):
        record = json.loads(line)
        if record.get("prev") != previous:
            raise AuditChainBroken(f"line {number} does not follow line {number - 1}")
        previous = hashlib.sha256(line.encode()).hexdigest()
    return previous


def append(client, bucket: str, key: str, records: list[dict[str, Any]]) -> None:
    """Append records to the log (read, check the chain, extend, write back)."""
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
    client.put_object(Bucket=bucket, Key=key, Body=("\n".join(lines) + "\n").encode(),
                      ContentType="application/x-ndjson")
