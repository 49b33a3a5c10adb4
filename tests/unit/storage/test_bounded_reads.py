"""Bounded reads (storage/bounded.py): at most limit + 1 bytes are ever read, whatever the stream
or its declared length says; a larger one is refused with what it was, its size and the limit."""

from __future__ import annotations

import io
from typing import Any

import pytest

from walwarden.storage.bounded import TooLarge, read_at_most, read_object


class EndlessStream:
    """A body that never ends (a server sending gigabytes): counts what was read from it."""

    def __init__(self, short_reads: bool = False) -> None:
        self.read_bytes = 0
        self.short_reads = short_reads  # answer each read with at most 1,000 bytes, as sockets may
        self.closed = False

    def read(self, amt: int) -> bytes:
        assert amt is not None and amt >= 0, "an unbounded read"
        given = min(amt, 1000) if self.short_reads else amt
        self.read_bytes += given
        return b"x" * given

    def close(self) -> None:
        self.closed = True


class OneObject:
    """get_object of one object, answering with a stream and a ContentLength of our choosing."""

    def __init__(self, body: Any, content_length: int | None) -> None:
        self.body, self.content_length = body, content_length

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        response = {"Body": self.body, "ETag": '"e1"'}
        if self.content_length is not None:
            response["ContentLength"] = self.content_length
        return response


def test_a_stream_within_the_limit_is_read_whole():
    assert read_at_most(io.BytesIO(b"a" * 100), 100, "it") == b"a" * 100
    assert read_at_most(io.BytesIO(b""), 100, "it") == b""


@pytest.mark.parametrize("short_reads", [False, True])
def test_an_endless_stream_is_read_no_further_than_one_byte_past_the_limit(short_reads):
    stream = EndlessStream(short_reads)
    with pytest.raises(TooLarge) as refused:
        read_at_most(stream, 4096, "the answer of http://wallet/")
    assert stream.read_bytes == 4097
    assert str(refused.value) == "the answer of http://wallet/ is over the 4.0 KiB limit"


def test_an_object_whose_declared_length_is_too_large_is_refused_without_reading():
    body = EndlessStream()
    with pytest.raises(TooLarge) as refused:
        read_object(OneObject(body, 5 * 2**20), "b", "k", 2**20, "s3://b/k")
    assert body.read_bytes == 0 and body.closed
    assert (refused.value.size, refused.value.limit) == (5 * 2**20, 2**20)
    assert str(refused.value) == "s3://b/k is 5.0 MiB (5242880 bytes), over the 1.0 MiB limit"


@pytest.mark.parametrize("declared", [10, None])
def test_an_object_that_lies_about_its_length_is_still_bounded(declared):
    body = EndlessStream()
    with pytest.raises(TooLarge):
        read_object(OneObject(body, declared), "b", "k", 2**20, "s3://b/k")
    assert body.read_bytes == 2**20 + 1 and body.closed


def test_an_object_within_the_limit_is_read_with_its_etag():
    assert read_object(OneObject(io.BytesIO(b"{}"), 2), "b", "k", 10, "s3://b/k") == (b"{}", '"e1"')


def test_the_caller_chooses_the_exception():
    class Mine(TooLarge):
        pass

    with pytest.raises(Mine):
        read_object(OneObject(io.BytesIO(b"abc"), 3), "b", "k", 2, "s3://b/k", too_large=Mine)
