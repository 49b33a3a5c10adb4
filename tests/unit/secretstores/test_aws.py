"""AWS Secrets Manager (secretstores/aws.py), with botocore's Stubber: the merge, and how errors are
reported without secret values."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ParamValidationError
from botocore.stub import Stubber

from walwarden.secretstores.aws import AwsSecretsManager, make_aws_client
from walwarden.secretstores.base import DbInfoBackend, DbInfoError

PASSWORD = "s3cr3t-Pa55word!"
CURRENT = {
    "DB_HOST": "old-db.internal",
    "DB_PORT": 5432,
    "DB_USER": "wallet",
    "DB_PASSWORD": PASSWORD,
    "DB_NAME": "vault",
    "EXTRA": {"a": 1},
}


# -- AWS Secrets Manager, with botocore's Stubber (a real client, no network) ----------------------


@pytest.fixture
def aws():
    client = boto3.session.Session().client(
        "secretsmanager", region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    with Stubber(client) as stubber:
        yield AwsSecretsManager(client), stubber


def _value(document) -> dict:
    return {"Name": "n", "SecretString": json.dumps(document)}


def test_aws_backend_is_a_db_info_backend(aws):
    assert isinstance(aws[0], DbInfoBackend)


def test_aws_update_merges_and_puts_the_whole_document(aws):
    backend, stubber = aws
    stubber.add_response("get_secret_value", _value(CURRENT), {"SecretId": "n"})
    stubber.add_response(
        "put_secret_value", {"Name": "n"}, {"SecretId": "n", "SecretString": json.dumps({**CURRENT, "DB_HOST": "new"})}
    )
    backend.update("n", {"DB_HOST": "new"})
    stubber.assert_no_pending_responses()


def test_aws_update_writes_nothing_when_the_values_are_there(aws):
    backend, stubber = aws
    stubber.add_response("get_secret_value", _value(CURRENT), {"SecretId": "n"})
    backend.update("n", {"DB_HOST": "old-db.internal", "DB_PORT": "5432"})  # no put stubbed: none may happen
    stubber.assert_no_pending_responses()


def test_aws_read_of_a_missing_secret_is_none_and_update_is_an_error(aws):
    backend, stubber = aws
    stubber.add_client_error("get_secret_value", "ResourceNotFoundException", "not found", 400)
    assert backend.read("n") is None
    stubber.add_client_error("get_secret_value", "ResourceNotFoundException", "not found", 400)
    with pytest.raises(DbInfoError) as missing:
        backend.update("n", {"DB_HOST": "new"})
    assert missing.value.reason == "SecretNotFound" and "eu-west-1" in missing.value.message


@pytest.mark.parametrize(
    "code,status,reason,retryable",
    [
        ("AccessDeniedException", 400, "AccessDenied", False),
        ("UnrecognizedClientException", 400, "InvalidCredentials", False),
        ("DecryptionFailure", 400, "KmsError", False),
        ("ThrottlingException", 400, "Throttled", True),
        ("InternalServiceError", 500, "AwsServiceError", True),
        ("SomethingNew", 400, "AwsServiceError", False),
        ("403", 403, "AccessDenied", False),  # moto's XML error body for a JSON-protocol call
    ],
)
def test_aws_errors_are_classified(aws, code, status, reason, retryable):
    backend, stubber = aws
    message = (
        "<ErrorResponse><Error><Code>AccessDenied</Code><Message>User: x is not authorized</Message>"
        "</Error></ErrorResponse>"
        if code == "403"
        else "the server says no"
    )
    stubber.add_client_error("get_secret_value", code, message, status)
    with pytest.raises(DbInfoError) as failed:
        backend.read("prod.ns.wallet.db-info")
    assert (failed.value.reason, failed.value.retryable) == (reason, retryable)
    assert "prod.ns.wallet.db-info" in failed.value.message
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
    if code == "403":
        assert "User: x is not authorized" in failed.value.message and "<" not in failed.value.message


def test_aws_error_text_from_the_server_is_scrubbed_of_the_values(aws):
    backend, stubber = aws
    stubber.add_response("get_secret_value", _value(CURRENT), {"SecretId": "n"})
    stubber.add_client_error(
        "put_secret_value",
        "InvalidParameterException",
        f"bad SecretString containing {PASSWORD} and new-host.example",
        400,
    )
    with pytest.raises(DbInfoError) as failed:
        backend.update("n", {"DB_HOST": "new-host.example"})
    assert failed.value.reason == "InvalidRequest"
    assert PASSWORD not in str(failed.value) and "new-host.example" not in str(failed.value)
    assert "***" in str(failed.value)


class _Raising:
    meta = SimpleNamespace(region_name="eu-west-1")

    def __init__(self, error):
        self.error = error

    def get_secret_value(self, **_):
        raise self.error


@pytest.mark.parametrize(
    "error,reason,retryable",
    [
        (NoCredentialsError(), "NoCredentials", False),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "Unreachable", True),
        (ParamValidationError(report=f"Invalid value {PASSWORD}"), "AwsClientError", False),
    ],
)
def test_botocore_errors(error, reason, retryable):
    with pytest.raises(DbInfoError) as failed:
        AwsSecretsManager(_Raising(error)).read("n")
    assert (failed.value.reason, failed.value.retryable) == (reason, retryable)
    assert PASSWORD not in str(failed.value)


def test_make_aws_client_uses_region_endpoint_and_keys():
    client = make_aws_client("eu-central-1", "http://127.0.0.1:4566", "AKIAEXAMPLE", "secret")
    assert client.meta.region_name == "eu-central-1"
    assert client.meta.endpoint_url == "http://127.0.0.1:4566"
    assert client.meta.service_model.service_name == "secretsmanager"
    assert client._request_signer._credentials.access_key == "AKIAEXAMPLE"


def test_make_aws_client_without_a_region_is_a_clear_error(monkeypatch):
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance metadata service
    with pytest.raises(DbInfoError) as failed:
        make_aws_client(None, None, "k", "s")
    assert failed.value.reason == "NoRegion"
