"""db-info backends: the merge logic, and how errors are reported without secret values."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ParamValidationError
from botocore.stub import Stubber
from kubernetes.client.rest import ApiException

from walwarden.secretstores import (
    AwsSecretsManager,
    DbInfoBackend,
    DbInfoError,
    KubernetesSecrets,
    as_strings,
    changed_keys,
    make_aws_client,
    merge_values,
    parse_secret_string,
    refresh_synced_copy,
    scrub,
)

PASSWORD = "s3cr3t-Pa55word!"
CURRENT = {
    "DB_HOST": "old-db.internal",
    "DB_PORT": 5432,
    "DB_USER": "wallet",
    "DB_PASSWORD": PASSWORD,
    "DB_NAME": "vault",
    "EXTRA": {"a": 1},
}


# -- pure logic ------------------------------------------------------------------------------------


def test_merge_sets_the_given_keys_and_keeps_the_others_with_their_types():
    merged = merge_values(CURRENT, {"DB_HOST": "new-db.internal", "DB_NAME": "restored"})
    assert merged == {**CURRENT, "DB_HOST": "new-db.internal", "DB_NAME": "restored"}
    assert merged["DB_PORT"] == 5432 and merged["EXTRA"] == {"a": 1}
    assert list(merged) == list(CURRENT)  # order kept
    assert CURRENT["DB_HOST"] == "old-db.internal"  # the input is not changed


def test_merge_adds_a_missing_key():
    assert merge_values({"DB_HOST": "a"}, {"DB_PORT": "5433"}) == {"DB_HOST": "a", "DB_PORT": "5433"}


def test_merge_refuses_non_string_values_without_naming_them():
    with pytest.raises(TypeError) as refused:
        merge_values({}, {"DB_PASSWORD": 12345678})
    assert "12345678" not in str(refused.value) and "DB_PASSWORD" in str(refused.value)


def test_changed_keys_compares_as_strings():
    assert changed_keys(CURRENT, {"DB_PORT": "5432", "DB_HOST": "old-db.internal"}) == []
    assert changed_keys(CURRENT, {"DB_PORT": "5433", "DB_HOST": "old-db.internal"}) == ["DB_PORT"]
    assert changed_keys(CURRENT, {"NEW": "x"}) == ["NEW"]
    assert changed_keys(None, {"DB_HOST": "a"}) == ["DB_HOST"]


def test_as_strings_renders_json_values_as_a_syncer_would():
    assert as_strings({"s": "x", "i": 5432, "f": 1.5, "t": True, "n": None, "o": {"b": 2, "a": 1}}) == {
        "s": "x",
        "i": "5432",
        "f": "1.5",
        "t": "true",
        "n": "",
        "o": '{"a":1,"b":2}',
    }


def test_parse_secret_string():
    assert parse_secret_string("n", json.dumps(CURRENT)) == CURRENT


@pytest.mark.parametrize("text", [PASSWORD, json.dumps([PASSWORD]), json.dumps(PASSWORD), "{" + PASSWORD, None])
def test_a_secret_string_that_is_not_a_json_object_is_refused_without_quoting_it(text):
    with pytest.raises(DbInfoError) as refused:
        parse_secret_string("prod.ns.wallet.db-info", text)
    assert refused.value.reason == "SecretNotJson"
    assert "prod.ns.wallet.db-info" in str(refused.value)
    assert PASSWORD not in str(refused.value) and refused.value.__cause__ is None


def test_scrub_replaces_values_and_withholds_text_with_short_ones():
    assert scrub(f"bad value {PASSWORD} here", [PASSWORD, "x"]) == "bad value *** here"
    assert scrub("port 54 refused", ["54"]) == "(server message withheld: it may contain a secret value)"
    assert scrub("nothing secret", ["ab", PASSWORD, ""]) == "nothing secret"
    # Longer values first, so one value inside another leaves nothing behind.
    assert scrub("abcdefgh", ["abcd", "abcdefgh"]) == "***"


# -- AWS Secrets Manager, with botocore's Stubber (a real client, no network) ------------------------


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


# -- Kubernetes Secrets, with a stand-in CoreV1Api -------------------------------------------------


class FakeCore:
    def __init__(self, secrets: dict[str, dict[str, str]], deny: bool = False):
        self.secrets = secrets
        self.patches: list[tuple[str, dict]] = []
        self.deny = deny

    def read_namespaced_secret(self, name, namespace):
        if self.deny:
            raise ApiException(status=403, reason="Forbidden")
        if name not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data={k: base64.b64encode(v.encode()).decode() for k, v in self.secrets[name].items()})

    def patch_namespaced_secret(self, name, namespace, body):
        self.patches.append((name, body))
        self.secrets[name].update(body["stringData"])


def test_kubernetes_read_decodes_and_missing_is_none():
    backend = KubernetesSecrets(FakeCore({"s": {"DB_HOST": "a", "DB_PASSWORD": PASSWORD}}), "ns")
    assert isinstance(backend, DbInfoBackend)
    assert backend.read("s") == {"DB_HOST": "a", "DB_PASSWORD": PASSWORD}
    assert backend.read("other") is None


def test_kubernetes_update_patches_only_the_given_keys_once():
    core = FakeCore({"s": {"DB_HOST": "a", "DB_PASSWORD": PASSWORD}})
    backend = KubernetesSecrets(core, "ns")
    backend.update("s", {"DB_HOST": "b"})
    backend.update("s", {"DB_HOST": "b"})
    assert core.patches == [("s", {"stringData": {"DB_HOST": "b"}})]
    assert core.secrets["s"] == {"DB_HOST": "b", "DB_PASSWORD": PASSWORD}


def test_kubernetes_errors():
    with pytest.raises(DbInfoError) as missing:
        KubernetesSecrets(FakeCore({}), "ns").update("s", {"DB_HOST": "b"})
    assert missing.value.reason == "SecretNotFound" and "ns/s" in missing.value.message
    with pytest.raises(DbInfoError) as denied:
        KubernetesSecrets(FakeCore({}, deny=True), "ns").read("s")
    assert denied.value.reason == "AccessDenied"


def test_refresh_synced_copy_only_writes_an_existing_copy():
    core = FakeCore({"s": {"DB_HOST": "a", "DB_USER": "u"}})
    kube = KubernetesSecrets(core, "ns")
    assert refresh_synced_copy(kube, "s", {"DB_HOST": "b"}) is True
    assert core.secrets["s"] == {"DB_HOST": "b", "DB_USER": "u"}
    assert refresh_synced_copy(kube, "missing", {"DB_HOST": "b"}) is False
    assert "missing" not in core.secrets
