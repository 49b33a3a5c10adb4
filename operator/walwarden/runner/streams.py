"""Reading a dump as it streams out of pg_dump: full reads, a checksum on the way, progress lines.

A pipe hands out whatever is in it, so a read can come back short long before the end. Code
that takes a short read for the end of the stream loses data; s3transfer, given a non-seekable
stream that reads short, reads the whole rest into memory and sends one PUT. `FullReader` only
returns less than asked at the end of the stream.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

MiB = 2**20


class ChecksumReader:
    """Passes reads through, computing the SHA-256 and the byte count of everything read."""

    def __init__(self, stream: BinaryIO):
        self._stream: Any = stream  # a pipe or file: readinto() is there
        self._sha256 = hashlib.sha256()
        self.size = 0

    def readinto(self, buffer: bytearray | memoryview) -> int:
        with memoryview(buffer) as view:  # released on return: the caller may resize its buffer
            count = self._stream.readinto(view) or 0
            # Hashed per pipe read rather than per part, so pg_dump never waits on a long hash.
            self._sha256.update(view[:count])
        self.size += count
        return count

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()


class FullReader:
    """read(n)/readinto() return exactly what was asked for, or less only at the end of the stream."""

    def __init__(self, stream: BinaryIO | ChecksumReader):
        self._stream: Any = stream  # anything with readinto()

    def readinto(self, buffer: bytearray | memoryview) -> int:
        filled = 0
        with memoryview(buffer) as view:  # released on return: read_part shrinks the buffer after
            while filled < len(view):
                count = self._stream.readinto(view[filled:])
                if not count:  # a blocking stream reads 0 bytes only at its end
                    break
                filled += count
        return filled

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunks = []
            while chunk := self.read(MiB):
                chunks.append(chunk)
            return b"".join(chunks)
        buffer = bytearray(size)
        filled = self.readinto(buffer)
        del buffer[filled:]
        return bytes(buffer)

    def read_part(self, size: int) -> bytearray | None:
        """The next `size` bytes (fewer only for the last part), or None at the end: one buffer per
        part, which the uploader keeps until its part is sent."""
        buffer = bytearray(size)
        filled = self.readinto(buffer)
        if filled == 0:
            return None
        del buffer[filled:]  # shrinks in place: no second copy of the part
        return buffer


class ProgressReporter(Protocol):
    """What a pass over a stream tells as it goes: the bytes so far, and once at the end."""

    def update(self, size: int) -> None: ...

    def done(self, size: int) -> None: ...


class Progress:
    """Prints '<label>: <MiB> MiB, <rate> MiB/s' at most every `interval` seconds, and once at the end."""

    def __init__(
        self,
        label: str,
        interval: float = 5.0,
        say: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.label = label
        self.interval = interval
        self._say = say
        self._clock = clock
        self._started = clock()
        self._last = self._started

    def update(self, size: int) -> None:
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            self._say(self._line(size, now))

    def done(self, size: int) -> None:
        self._say(self._line(size, self._clock()) + " (done)")

    def _line(self, size: int, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        return f"{self.label}: {size / MiB:,.1f} MiB in {elapsed:,.0f}s, {size / MiB / elapsed:,.1f} MiB/s"
