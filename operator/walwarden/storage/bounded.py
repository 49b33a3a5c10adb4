"""Bounded reads: the operator reads what a requester can influence (a manifest, the audit log, an
HTTP answer) only up to a size fixed in advance, so an object or an answer too large for it fails
the request with a clear reason instead of taking the operator's memory.

A declared length (S3's ContentLength) is checked first, to refuse without reading, but never
trusted: at most limit + 1 bytes are ever read, whatever the stream says about itself.
"""

from __future__ import annotations

from typing import Any, Protocol

from walwarden.api.common import human_size


class Readable(Protocol):
    def read(self, amt: int, /) -> bytes: ...


class TooLarge(Exception):
    """What was read is larger than the operator reads; nothing was done with it."""

    def __init__(self, what: str, limit: int, size: int | None = None):
        self.what, self.limit, self.size = what, limit, size
        measured = f" {human_size(size)} ({size} bytes)," if size is not None else ""
        super().__init__(f"{what} is{measured} over the {human_size(limit)} limit")


def read_at_most(stream: Readable, limit: int, what: str, *, too_large: type[TooLarge] = TooLarge) -> bytes:
    """The stream's content if it holds at most `limit` bytes; `too_large` otherwise, after reading
    no more than limit + 1 bytes (a read may return fewer bytes than asked: it is repeated)."""
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = stream.read(limit + 1 - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise too_large(what, limit)
    return b"".join(chunks)


def read_object(
    client: Any, bucket: str, key: str, limit: int, what: str, *, too_large: type[TooLarge] = TooLarge
) -> tuple[bytes, str | None]:
    """An S3 object's bytes and its ETag, if it holds at most `limit` bytes; `too_large` otherwise.
    ClientError (no such key, access denied) passes through."""
    response = client.get_object(Bucket=bucket, Key=key)
    body = response["Body"]
    try:
        declared = response.get("ContentLength")
        if isinstance(declared, int) and declared > limit:
            raise too_large(what, limit, declared)
        return read_at_most(body, limit, what, too_large=too_large), response.get("ETag")
    finally:
        body.close()  # an unread rest is dropped with its connection, not downloaded
