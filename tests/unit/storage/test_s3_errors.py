"""Which S3 answers mean "not found" and "access denied", for every caller alike."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from walwarden.storage import s3


def client_error(code: str, operation: str = "GetObject") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "..."}}, operation)


@pytest.mark.parametrize("code", ["404", "NotFound", "NoSuchKey", "NoSuchBucket"])
def test_not_found(code):
    assert s3.is_not_found(client_error(code)) and not s3.is_access_denied(client_error(code))


@pytest.mark.parametrize(
    "code",
    [
        "403",
        "AccessDenied",
        "Forbidden",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "InvalidToken",
        "ExpiredToken",
        "AllAccessDisabled",
        "AccountProblem",
    ],
)
def test_access_denied(code):
    assert s3.is_access_denied(client_error(code)) and not s3.is_not_found(client_error(code))


def test_only_a_body_tells_a_missing_bucket_apart():
    assert s3.is_bucket_not_found(client_error("NoSuchBucket"))
    assert not s3.is_bucket_not_found(client_error("404", "HeadObject"))  # HEAD: key or bucket, S3 won't say
    assert not s3.is_bucket_not_found(client_error("NoSuchKey"))


@pytest.mark.parametrize(
    "error",
    [
        client_error("NoSuchUpload", "UploadPart"),
        client_error("InternalError"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ValueError("x"),
    ],
)
def test_other_failures_are_neither(error):
    assert not s3.is_not_found(error) and not s3.is_access_denied(error) and not s3.is_bucket_not_found(error)


class HeadOnly:
    def __init__(self, answer: int | Exception):
        self.answer = answer

    def head_object(self, Bucket: str, Key: str) -> dict[str, int]:  # boto3's own argument names
        if isinstance(self.answer, Exception):
            raise self.answer
        return {"ContentLength": self.answer}


def test_object_size():
    assert s3.object_size(HeadOnly(42), "b", "k") == 42
    assert s3.object_size(HeadOnly(client_error("404", "HeadObject")), "b", "k") is None
    with pytest.raises(ClientError):
        s3.object_size(HeadOnly(client_error("403", "HeadObject")), "b", "k")
