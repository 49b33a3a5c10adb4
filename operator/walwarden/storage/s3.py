"""S3 access: clients, s3:// URIs, and a multipart upload with bounded memory for streamed dumps."""

from __future__ import annotations

import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

MiB = 2**20
GiB = 2**30
MAX_PARTS = 10_000  # S3's limit on the parts of one object
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * GiB  # S3's maximum part size
DEFAULT_PART_SIZE = 8 * MiB  # our smallest: fewer requests, still little memory
# The expected size fills at most PLANNED_PARTS parts at the base part size. An expected size is
# only a hint (pg_database_size, or what the caller said): if the dump turns out bigger, the part
# size doubles every GROWTH_STEP parts after that, so the 10,000-part limit is never what ends a
# backup (see part_size and capacity).
PLANNED_PARTS = 5_000
GROWTH_STEP = 1_000


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/some/key' -> ('bucket', 'some/key')."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"an s3:// URI needs a bucket and a key: {uri!r}")
    return bucket, key


def make_client(
    *,
    region: str,
    endpoint: str | None = None,
    force_path_style: bool = False,
    access_key: str | None = None,
    secret_key: str | None = None,
):
    """An S3 client signing with SigV4. Without keys, boto3's ambient identity (environment, IRSA,
    instance profile). Path-style addressing for S3-compatible servers that need it."""
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if force_path_style else "auto"},
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=120,
    )
    return boto3.client(
        "s3",
        region_name=region,
        endpoint_url=endpoint or None,
        config=config,
        aws_access_key_id=access_key or None,
        aws_secret_access_key=secret_key or None,
    )


def error_code(error: ClientError) -> str:
    """The S3 error code; for HEAD requests (no body) the HTTP status, e.g. '404'."""
    return str(error.response.get("Error", {}).get("Code", ""))


# What S3 and S3-compatible servers answer when the key or the bucket does not exist. A HEAD
# request gets no body, so botocore gives its bare HTTP status ('404') and cannot tell which.
# NoSuchUpload (an aborted multipart upload) is left out: that is no missing object or bucket.
NOT_FOUND_CODES = frozenset({"404", "NotFound", "NoSuchKey", "NoSuchBucket"})
BUCKET_NOT_FOUND_CODES = frozenset({"NoSuchBucket"})
# Refused for the caller's identity or rights; a HEAD request's refusals all read '403'.
ACCESS_DENIED_CODES = frozenset(
    {
        "403",
        "AccessDenied",
        "Forbidden",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "InvalidToken",
        "ExpiredToken",
        "AllAccessDisabled",
        "AccountProblem",
    }
)


def is_not_found(error: BaseException) -> bool:
    """The request's key, or its bucket, does not exist (is_bucket_not_found tells the bucket
    apart where S3 can: not on HEAD requests)."""
    return isinstance(error, ClientError) and error_code(error) in NOT_FOUND_CODES


def is_bucket_not_found(error: BaseException) -> bool:
    """S3 said the bucket does not exist (requests with a body only; HEAD says just '404')."""
    return isinstance(error, ClientError) and error_code(error) in BUCKET_NOT_FOUND_CODES


def is_access_denied(error: BaseException) -> bool:
    """S3 refused the caller: missing rights, or keys it does not accept. Without s3:ListBucket,
    S3 answers a missing key with this too (403, not 404)."""
    return isinstance(error, ClientError) and error_code(error) in ACCESS_DENIED_CODES


def object_size(client: BaseClient, bucket: str, key: str) -> int | None:
    """The object's size in bytes, or None when there is no such object."""
    try:
        return client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    except ClientError as error:
        if is_not_found(error):
            return None
        raise


@dataclass(frozen=True)
class Lock:
    """S3 Object Lock retention for an object written: mode GOVERNANCE or COMPLIANCE, until when."""

    mode: str
    until: datetime


def lock_arguments(lock: Lock | None) -> dict[str, Any]:
    """The PutObject/CreateMultipartUpload arguments that write an object under `lock`."""
    if lock is None:
        return {}
    return {"ObjectLockMode": lock.mode, "ObjectLockRetainUntilDate": lock.until}


def object_lock_enabled(client: BaseClient, bucket: str) -> bool:
    """Whether the bucket was created with S3 Object Lock (only then can objects be locked)."""
    try:
        configuration = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    except ClientError as error:
        if error_code(error) in {"ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound"}:
            return False
        raise
    return configuration.get("ObjectLockEnabled") == "Enabled"


class DeleteRefused(Exception):
    """S3 kept objects it was asked to delete (Object Lock, missing rights): key -> its answer."""

    def __init__(self, refused: dict[str, str]):
        self.refused = refused
        super().__init__("; ".join(f"{key}: {why}" for key, why in sorted(refused.items())))


def delete_prefix(client: BaseClient, bucket: str, prefix: str, keep: frozenset[str] = frozenset()) -> list[str]:
    """Delete every object under `prefix/` but the keys in `keep`: every version of each, so in a
    versioned bucket (S3 Object Lock needs one) the data goes, not only behind a delete marker, and
    a locked version is refused instead of hidden. Returns the keys deleted; raises DeleteRefused
    naming what S3 kept."""
    folder = prefix.strip("/") + "/"
    versions: list[dict[str, str]] = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=folder):
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            if entry["Key"] not in keep:
                versions.append({"Key": entry["Key"], "VersionId": entry["VersionId"]})
    refused: dict[str, str] = {}
    for start in range(0, len(versions), 1000):  # DeleteObjects takes at most 1,000 keys
        answer = client.delete_objects(Bucket=bucket, Delete={"Objects": versions[start : start + 1000], "Quiet": True})
        for error in answer.get("Errors", []):
            refused[error["Key"]] = f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ")
    if refused:
        raise DeleteRefused(refused)
    return sorted({v["Key"] for v in versions})


# --- part sizes ------------------------------------------------------------------------------


def base_part_size(expected_bytes: int | None) -> int:
    """The part size for a dump of about expected_bytes: whole MiB, at least DEFAULT_PART_SIZE."""
    planned = math.ceil(max(expected_bytes or 0, 0) / PLANNED_PARTS)
    return min(max(DEFAULT_PART_SIZE, math.ceil(planned / MiB) * MiB), MAX_PART_SIZE)


def part_size(part_number: int, base: int) -> int:
    """The size of part `part_number` (1-based): base for the planned parts, then doubling."""
    if part_number <= PLANNED_PARTS:
        return base
    doublings = (part_number - PLANNED_PARTS - 1) // GROWTH_STEP + 1
    return min(base << doublings, MAX_PART_SIZE)


def capacity(base: int) -> int:
    """The largest object 10,000 parts of part_size(n, base) can hold."""
    return sum(part_size(n, base) for n in range(1, MAX_PARTS + 1))


# --- multipart upload ------------------------------------------------------------------------


class MultipartUpload:
    """One object uploaded in parts by a small thread pool, with at most `workers + queued` parts
    waiting or in flight: add_part() blocks beyond that, which bounds memory whatever the size.

    Use as a context manager and call complete() inside it: leaving the block without completing
    (an exception, a failed part) aborts the upload, so S3 keeps no dangling parts — storage that
    is billed yet invisible in a bucket listing.
    """

    def __init__(
        self,
        client,
        bucket: str,
        key: str,
        *,
        workers: int = 2,
        queued: int = 1,
        content_type: str = "application/octet-stream",
        lock: Lock | None = None,
    ):
        self.client, self.bucket, self.key = client, bucket, key
        self.content_type = content_type
        self.lock = lock
        self.upload_id: str | None = None
        self._workers = workers
        self._slots = threading.BoundedSemaphore(workers + queued)
        self._pool: ThreadPoolExecutor | None = None
        self._parts: list[Future] = []
        self._failure: BaseException | None = None
        self._completed = False

    def __enter__(self) -> Self:
        self.upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=self.key, ContentType=self.content_type, **lock_arguments(self.lock)
        )["UploadId"]
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="upload-part")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._completed:
            return
        try:
            self.abort()
        except Exception as abort_error:
            if exc is None:
                raise
            # The failure that stopped the upload is the one to report; S3's lifecycle rule
            # (AbortIncompleteMultipartUpload) is the safety net for the parts left behind.
            exc.add_note(
                f"(aborting the multipart upload of {self.key} failed too, so its parts wait for the "
                f"bucket's AbortIncompleteMultipartUpload rule: {abort_error})"
            )

    @property
    def part_count(self) -> int:
        return len(self._parts)

    def add_part(self, data: bytes | bytearray) -> None:
        """Queue the next part; blocks while the pool is full; raises a failed part's error."""
        self._raise_failure()
        if len(self._parts) >= MAX_PARTS:
            raise ValueError(f"an S3 object has at most {MAX_PARTS} parts")
        self._slots.acquire()
        self._raise_failure()  # a part may have failed while we waited for a slot
        assert self._pool is not None, "add_part before the upload started"
        future = self._pool.submit(self._upload_part, len(self._parts) + 1, data)
        future.add_done_callback(self._part_done)
        self._parts.append(future)

    def complete(self) -> None:
        parts = [future.result() for future in self._parts]  # waits; raises the first failure
        if not parts:
            raise ValueError("a multipart upload needs at least one part")
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
        )
        self._completed = True
        if self._pool is not None:
            self._pool.shutdown()

    def abort(self) -> None:
        """Stop uploading and delete the parts sent so far (waits for the parts in flight first,
        since a part that lands after the abort would be kept)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self.upload_id is not None:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            self.upload_id = None

    def _upload_part(self, part_number: int, data: bytes | bytearray) -> dict[str, Any]:
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=part_number, Body=data
        )
        return {"PartNumber": part_number, "ETag": response["ETag"]}

    def _part_done(self, future: Future) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None and self._failure is None:
            self._failure = future.exception()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
