"""Which reason a failed connection, object-store request or version check is."""

from __future__ import annotations

import psycopg
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from walwarden.runner.backup import _major, connection_error, storage_error

SERVER = 'connection failed: connection to server at "10.0.0.5", port 5432 failed: '


@pytest.mark.parametrize("message, reason", [
    (SERVER + 'FATAL:  password authentication failed for user "postgres"', "AuthenticationFailed"),
    (SERVER + "fe_sendauth: no password supplied", "AuthenticationFailed"),
    (SERVER + 'FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "postgres", database "vault", no encryption',
     "AuthenticationFailed"),
    (SERVER + 'FATAL:  role "ghost" does not exist', "AuthenticationFailed"),
    (SERVER + 'FATAL:  database "vault" does not exist', "DatabaseNotFound"),
    (SERVER + "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
     "DatabaseUnreachable"),
    (SERVER + "timeout expired", "DatabaseUnreachable"),
    ("failed to resolve host 'db.invalid': [Errno -2] Name or service not known", "DatabaseUnreachable"),
])
def test_connection_failures(message, reason):
    error = connection_error("vault", psycopg.OperationalError(message))
    assert error.reason == reason
    assert "\n" not in error.message


def client_error(code: str, operation: str = "HeadBucket") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "..."}}, operation)


@pytest.mark.parametrize("error, reason", [
    (client_error("404"), "BucketNotFound"),
    (client_error("NoSuchBucket", "CreateMultipartUpload"), "BucketNotFound"),
    (client_error("403"), "StorageAccessDenied"),
    (client_error("SignatureDoesNotMatch", "UploadPart"), "StorageAccessDenied"),
    (client_error("InvalidAccessKeyId", "UploadPart"), "StorageAccessDenied"),
    (NoCredentialsError(), "StorageAccessDenied"),
    (client_error("InternalError", "UploadPart"), "UploadFailed"),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "UploadFailed"),
])
def test_storage_failures(error, reason):
    assert storage_error(error, "uploading s3://b/k", "b").reason == reason


def test_major_versions_compare_across_the_old_numbering():
    assert _major("15.18") == (15,) and _major("16beta2") == (16,)
    assert _major("9.6.24") == (9, 6)
    assert _major("15.18 (Debian 15.18-0+deb12u1)") == (15,)
    assert _major("9.6.24") < _major("10.1") < _major("15.2") <= _major("15.18")
