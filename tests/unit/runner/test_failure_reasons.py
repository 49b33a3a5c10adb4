"""Which reason a failed connection or object-store request of the runner is."""

from __future__ import annotations

import psycopg
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from walwarden.runner.backup import _check_pg_dump_version, connection_error, storage_error
from walwarden.runner.errors import PgDumpTooOld

SERVER = 'connection failed: connection to server at "10.0.0.5", port 5432 failed: '


@pytest.mark.parametrize(
    "message, reason",
    [
        (SERVER + 'FATAL:  password authentication failed for user "postgres"', "AuthenticationFailed"),
        (SERVER + "fe_sendauth: no password supplied", "AuthenticationFailed"),
        (
            SERVER
            + 'FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "postgres", database "vault", no encryption',
            "AuthenticationFailed",
        ),
        (SERVER + 'FATAL:  role "ghost" does not exist', "AuthenticationFailed"),
        (SERVER + 'FATAL:  database "vault" does not exist', "DatabaseNotFound"),
        (
            SERVER + "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
            "DatabaseUnreachable",
        ),
        (SERVER + "timeout expired", "DatabaseUnreachable"),
        ("failed to resolve host 'db.invalid': [Errno -2] Name or service not known", "DatabaseUnreachable"),
    ],
)
def test_connection_failures(message, reason):
    error = connection_error("vault", psycopg.OperationalError(message))
    assert error.reason == reason
    assert "\n" not in error.message


def client_error(code: str, operation: str = "HeadBucket") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "..."}}, operation)


@pytest.mark.parametrize(
    "error, reason",
    [
        (client_error("404"), "BucketNotFound"),
        (client_error("NoSuchBucket", "CreateMultipartUpload"), "BucketNotFound"),
        (client_error("403"), "StorageAccessDenied"),
        (client_error("SignatureDoesNotMatch", "UploadPart"), "StorageAccessDenied"),
        (client_error("InvalidAccessKeyId", "UploadPart"), "StorageAccessDenied"),
        (NoCredentialsError(), "StorageAccessDenied"),
        (client_error("InternalError", "UploadPart"), "UploadFailed"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "UploadFailed"),
    ],
)
def test_storage_failures(error, reason):
    assert storage_error(error, "uploading s3://b/k", "b").reason == reason


@pytest.mark.parametrize(
    "error, reason",
    [
        (client_error("NoSuchUpload", "UploadPart"), "UploadFailed"),  # an aborted upload: no missing bucket
        (client_error("ExpiredToken", "PutObject"), "StorageAccessDenied"),
    ],
)
def test_storage_failures_that_name_neither_a_bucket_nor_a_key(error, reason):
    assert storage_error(error, "writing s3://b/k", "b").reason == reason


@pytest.mark.parametrize(
    "dump, server",
    [("15.18", "15.2"), ("16.1", "15.18"), ("10.23", "9.6.24"), ("9.6.24", "9.6.2"), ("16.4", "unreadable")],
)
def test_a_pg_dump_of_the_same_or_a_newer_major_version_may_dump(dump, server):
    _check_pg_dump_version(dump, server)


@pytest.mark.parametrize(
    "dump, server, needed", [("15.18", "16.4", "16"), ("9.5.25", "9.6.24", "9.6"), ("9.6.24", "10.1", "10")]
)
def test_an_older_pg_dump_is_refused_before_anything_is_written(dump, server, needed):
    with pytest.raises(PgDumpTooOld, match=f"major version {needed} or newer"):
        _check_pg_dump_version(dump, server)
