"""Full reads over streams that read short, the checksum on the way, and the progress lines."""

from __future__ import annotations

import hashlib
import os
import threading
import time

from walwarden.runner.streams import ChecksumReader, FullReader, Progress

DATA = bytes(range(256)) * 1000  # 256,000 bytes


class ShortReads:
    """A stream that hands out at most the next of `sizes` bytes per read, like a pipe does."""

    def __init__(self, data: bytes, sizes: list[int]):
        self.data, self.sizes, self.position, self.calls = data, sizes, 0, 0

    def readinto(self, buffer) -> int:
        size = min(len(buffer), self.sizes[self.calls % len(self.sizes)], len(self.data) - self.position)
        buffer[:size] = self.data[self.position : self.position + size]
        self.position += size
        self.calls += 1
        return size


def test_full_reader_fills_every_read_although_the_stream_reads_short():
    stream = ShortReads(DATA, [1, 7, 1000, 3])
    reader = FullReader(stream)
    chunks = []
    while chunk := reader.read(10_000):
        chunks.append(chunk)
    assert [len(c) for c in chunks] == [10_000] * 25 + [6_000]  # short only at the end
    assert b"".join(chunks) == DATA
    assert stream.calls > 26  # it did have to read short


def test_read_part_returns_whole_parts_then_the_rest_then_none():
    reader = FullReader(ShortReads(DATA, [4096, 100]))
    parts = []
    while (part := reader.read_part(100_000)) is not None:
        parts.append(part)
    assert [len(p) for p in parts] == [100_000, 100_000, 56_000]
    assert b"".join(parts) == DATA


def test_read_all_and_an_empty_stream():
    assert FullReader(ShortReads(DATA, [999])).read() == DATA
    assert FullReader(ShortReads(b"", [10])).read(10) == b""
    assert FullReader(ShortReads(b"", [10])).read_part(10) is None


def test_checksum_and_size_cover_exactly_the_bytes_read():
    checksum = ChecksumReader(ShortReads(DATA, [3, 5000]))
    parts = FullReader(checksum)
    total = b""
    while (part := parts.read_part(65_536)) is not None:
        total += part
    assert total == DATA
    assert (checksum.size, checksum.sha256) == (len(DATA), hashlib.sha256(DATA).hexdigest())


def test_a_real_pipe_written_in_small_pieces():
    read_end, write_end = os.pipe()

    def write_slowly():
        with os.fdopen(write_end, "wb", buffering=0) as pipe:
            for start in range(0, len(DATA), 10_007):
                pipe.write(DATA[start : start + 10_007])
                time.sleep(0.001)

    writer = threading.Thread(target=write_slowly)
    writer.start()
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        checksum = ChecksumReader(pipe)
        parts = list(iter(lambda: FullReader(checksum).read_part(64_000), None))
    writer.join()
    assert [len(p) for p in parts] == [64_000] * 4
    assert checksum.sha256 == hashlib.sha256(DATA).hexdigest()


def test_progress_prints_at_most_every_interval_and_at_the_end():
    now = [100.0]
    lines = []
    progress = Progress("vault", interval=5, say=lines.append, clock=lambda: now[0])
    for seconds, size in ((1, 2**20), (5, 10 * 2**20), (6, 12 * 2**20), (10, 20 * 2**20)):
        now[0] = 100.0 + seconds
        progress.update(size)
    progress.done(21 * 2**20)
    assert lines == [
        "vault: 10.0 MiB in 5s, 2.0 MiB/s",
        "vault: 20.0 MiB in 10s, 2.0 MiB/s",
        "vault: 21.0 MiB in 10s, 2.1 MiB/s (done)",
    ]
