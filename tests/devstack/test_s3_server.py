"""The S3 fixture is a real S3 server: it enforces signatures and presigned-URL expiry."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.integration


def test_put_get_and_presigned_get(s3_server, s3_bucket):
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="a/b.bin", Body=b"payload")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "a/b.bin"}, ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read() == b"payload"


def test_expired_presigned_url_is_refused(s3_server, s3_bucket):
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "k"}, ExpiresIn=1)
    time.sleep(2.5)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 403


def test_tampered_signature_is_refused(s3_server, s3_bucket):
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "k"}, ExpiresIn=60)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), timeout=5)
    assert refused.value.code == 403


def test_wrong_credentials_are_refused(s3_server, s3_bucket):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as refused:
        s3_server.client(secret_key="not-the-key").list_objects_v2(Bucket=s3_bucket)
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
