"""Where the services' db-info secrets live, and how to change a few of their keys.

Every database user of the vault reads its connection from a "db-info" secret named
`<environment>.<namespace>.<service>.db-info` (keys DB_HOST, DB_PORT, DB_USER, DB_PASSWORD,
DB_NAME; DESIGN §1). A Redirected restore repoints them at the new database. They live in one of
two places:

- `KubernetesSecrets`: Kubernetes Secrets in the vault's namespace.
- `AwsSecretsManager`: AWS Secrets Manager secrets whose SecretString is a JSON object with those
  keys. An external syncer (External Secrets Operator, the Secrets Store CSI driver...) copies
  each into a Kubernetes Secret of the same name on its own schedule. After changing Secrets
  Manager, `refresh_synced_copy` writes the same keys into that Kubernetes copy at once — what the
  syncer would do on its next refresh — so the consumers restarted right after read the new
  values instead of the stale copy. The syncer's next refresh writes the same values again, so
  the two never disagree.

Both backends only change the keys they are given (the password and user stay as they are), never
create a secret, and skip the write when the secret already holds the values, so doing an update
twice (a resumed operator) changes nothing the second time.

Secret values never appear in a `DbInfoError`, in logs or in messages: errors carry the secret's
name, a short reason and an explanation, with any text that came from the server scrubbed of the
values involved.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

# The keys a db-info secret holds (DESIGN §1). Other keys are kept untouched.
DB_INFO_KEYS = ("DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME")

# Values shorter than this are not scrubbed out of server messages one by one (replacing every "5"
# in a message would make it unreadable); if such a value occurs in the message at all, the
# server's text is left out entirely.
_MIN_SCRUB_LENGTH = 4
_MAX_SERVER_TEXT = 300


class DbInfoError(Exception):
    """A db-info secret could not be read or changed. Never holds a secret value.

    `reason` is a short CamelCase word for status conditions (SecretNotFound, AccessDenied,
    InvalidCredentials, SecretNotJson, Throttled, Unreachable, ...); `message` says what happened
    and what to do; `retryable` is true when trying again later may succeed.
    """

    def __init__(self, reason: str, message: str, *, retryable: bool = False):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.retryable = retryable


@runtime_checkable
class DbInfoBackend(Protocol):
    def read(self, name: str) -> dict[str, str] | None:
        """The secret's keys and values; None when it does not exist."""
        ...

    def update(self, name: str, values: dict[str, str]) -> None:
        """Set the given keys, keep all others. Raises DbInfoError (SecretNotFound if missing)."""
        ...


# -- pure logic ------------------------------------------------------------------------------------

def changed_keys(current: Mapping[str, Any] | None, values: Mapping[str, str]) -> list[str]:
    """The keys of `values` whose value differs from `current` (as strings); all of them when None."""
    current = current or {}
    return [key for key, value in values.items()
            if key not in current or _as_string(current[key]) != value]


def merge_values(current: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """`current` with the keys of `values` set; every other key (and its JSON type) kept as it was,
    in its original order."""
    _check_values(values)
    merged = dict(current)
    merged.update(values)
    return merged


def parse_secret_string(name: str, text: str | None) -> dict[str, Any]:
    """The JSON object of a Secrets Manager SecretString, or DbInfoError(SecretNotJson)."""
    if text is None:
        raise DbInfoError("SecretNotJson", f"AWS Secrets Manager secret {name} has no SecretString (binary "
                                           "secrets are not supported): a db-info secret must hold a JSON "
                                           "object with DB_HOST, DB_PORT, DB_USER, DB_PASSWORD and DB_NAME")
    try:
        document = json.loads(text)
    except ValueError:
        # The decoder's message can quote the text: leave it out.
        document = None
    if not isinstance(document, dict):
        raise DbInfoError("SecretNotJson", f"the SecretString of AWS Secrets Manager secret {name} is not a JSON "
                                           "object: a db-info secret must hold a JSON object with DB_HOST, "
                                           "DB_PORT, DB_USER, DB_PASSWORD and DB_NAME")
    return document


def as_strings(document: Mapping[str, Any]) -> dict[str, str]:
    """A JSON object's values as strings, as a syncer puts them into a Kubernetes Secret
    (5432 -> "5432", true -> "true", null -> "", nested values as JSON)."""
    return {str(key): _as_string(value) for key, value in document.items()}


def _as_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _check_values(values: Mapping[str, str]) -> None:
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise ValueError("db-info keys must be non-empty strings")
        if not isinstance(value, str):
            # The value itself is not named: it may be a password.
            raise TypeError(f"the value of db-info key {key} must be a string, not {type(value).__name__}")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every one of `secrets` replaced by "***". If a value too short to be replaced
    safely occurs in it, the whole text is withheld instead."""
    values = sorted({s for s in secrets if isinstance(s, str) and s}, key=len, reverse=True)
    for value in values:
        if value not in text:
            continue
        if len(value) < _MIN_SCRUB_LENGTH:
            return "(server message withheld: it may contain a secret value)"
        text = text.replace(value, "***")
    return text


def _server_text(text: str, secrets: Iterable[str]) -> str:
    text = " ".join(str(text).split())
    # moto (and some proxies) answer JSON-protocol calls with an XML error document.
    inner = re.search(r"<Message>(.*?)</Message>", text)
    if inner:
        text = inner.group(1)
    text = scrub(text, secrets)
    return text if len(text) <= _MAX_SERVER_TEXT else text[:_MAX_SERVER_TEXT] + "..."


# -- Kubernetes Secrets ------------------------------------------------------------------------------

class KubernetesSecrets:
    """db-info secrets as Kubernetes Secrets in one namespace (a kubernetes CoreV1Api)."""

    kind = "Kubernetes Secret"

    def __init__(self, core_v1_api, namespace: str):
        self.core = core_v1_api
        self.namespace = namespace

    def read(self, name: str) -> dict[str, str] | None:
        from kubernetes.client.rest import ApiException

        try:
            secret = self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise self._error(error, name, "read", ()) from None
        return {key: base64.b64decode(value).decode("utf-8", errors="replace")
                for key, value in (secret.data or {}).items()}

    def update(self, name: str, values: dict[str, str]) -> None:
        from kubernetes.client.rest import ApiException

        _check_values(values)
        current = self.read(name)
        if current is None:
            raise DbInfoError("SecretNotFound", f"Kubernetes Secret {self.namespace}/{name} does not exist")
        if not changed_keys(current, values):
            return
        try:
            # A strategic-merge patch of stringData: only these keys change, the others stay.
            self.core.patch_namespaced_secret(name, self.namespace, {"stringData": dict(values)})
        except ApiException as error:
            raise self._error(error, name, "patch", [*values.values(), *current.values()]) from None

    def _error(self, error, name: str, verb: str, secrets: Iterable[str]) -> DbInfoError:
        where = f"Kubernetes Secret {self.namespace}/{name}"
        status = error.status or 0
        detail = _kubernetes_message(error, secrets)
        if status == 404:
            return DbInfoError("SecretNotFound", f"{where} does not exist")
        if status in (401, 403):
            return DbInfoError("AccessDenied", f"the operator may not {verb} {where} (HTTP {status}): grant its "
                                               f"service account {verb} on secrets in {self.namespace}{detail}")
        retryable = status in (0, 409, 429) or status >= 500
        return DbInfoError("KubernetesApiError", f"{verb} {where} failed (HTTP {status}){detail}",
                           retryable=retryable)


def _kubernetes_message(error, secrets: Iterable[str]) -> str:
    text = ""
    try:
        text = json.loads(error.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        text = error.reason or ""
    text = _server_text(text, secrets) if text else ""
    return f": {text}" if text else ""


# -- AWS Secrets Manager -----------------------------------------------------------------------------

def make_aws_client(region: str | None, endpoint: str | None, access_key: str | None = None,
                    secret_key: str | None = None):
    """A boto3 Secrets Manager client. Without keys: the ambient identity (IRSA, instance profile,
    environment); without a region: the ambient region. Bounded timeouts and retries, so a
    hanging endpoint cannot block a restore step forever."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, NoRegionError

    config = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 4, "mode": "standard"})
    kwargs: dict[str, Any] = {"region_name": region, "endpoint_url": endpoint, "config": config}
    if access_key or secret_key:
        kwargs.update(aws_access_key_id=access_key, aws_secret_access_key=secret_key)
    try:
        return boto3.session.Session().client("secretsmanager", **kwargs)
    except NoRegionError:
        raise DbInfoError("NoRegion", "no AWS region for Secrets Manager: set spec.redirect.aws.region or give "
                                      "the operator AWS_REGION") from None
    except BotoCoreError as error:
        raise DbInfoError("AwsClientError", f"cannot create the AWS Secrets Manager client "
                                            f"({type(error).__name__})") from None


# Error codes of Secrets Manager (and of AWS authentication in general) -> (reason, advice, retryable).
_AWS_ERRORS: dict[str, tuple[str, str, bool]] = {
    "ResourceNotFoundException": ("SecretNotFound", "it does not exist in this account and region", False),
    "AccessDeniedException": ("AccessDenied", "grant the operator's AWS identity secretsmanager:GetSecretValue "
                                              "and secretsmanager:PutSecretValue on it (and kms:Decrypt / "
                                              "kms:GenerateDataKey on its KMS key)", False),
    "AccessDenied": ("AccessDenied", "grant the operator's AWS identity secretsmanager:GetSecretValue and "
                                     "secretsmanager:PutSecretValue on it", False),
    "UnrecognizedClientException": ("InvalidCredentials", "the AWS credentials are not valid", False),
    "InvalidClientTokenId": ("InvalidCredentials", "the AWS access key is not valid", False),
    "InvalidSignatureException": ("InvalidCredentials", "the request signature does not match: check the "
                                                        "AWS secret key and the clock", False),
    "SignatureDoesNotMatch": ("InvalidCredentials", "the request signature does not match: check the "
                                                    "AWS secret key and the clock", False),
    "ExpiredTokenException": ("InvalidCredentials", "the AWS session token has expired", True),
    "ExpiredToken": ("InvalidCredentials", "the AWS session token has expired", True),
    "DecryptionFailure": ("KmsError", "Secrets Manager cannot decrypt it with its KMS key: check the key and "
                                      "the operator's kms:Decrypt permission", False),
    "EncryptionFailure": ("KmsError", "Secrets Manager cannot encrypt the new value with its KMS key: check "
                                      "the key and the operator's kms:GenerateDataKey permission", False),
    "InvalidRequestException": ("InvalidRequest", "Secrets Manager refused the request (a secret scheduled "
                                                  "for deletion cannot be used: restore it first)", False),
    "InvalidParameterException": ("InvalidRequest", "Secrets Manager refused a parameter", False),
    "LimitExceededException": ("LimitExceeded", "a Secrets Manager limit was reached (for example too many "
                                                "versions of this secret)", True),
    "ThrottlingException": ("Throttled", "AWS throttled the request: try again later", True),
    "TooManyRequestsException": ("Throttled", "AWS throttled the request: try again later", True),
    "InternalServiceError": ("AwsServiceError", "Secrets Manager had an internal error: try again later", True),
}


class AwsSecretsManager:
    """db-info secrets in AWS Secrets Manager: a JSON object in each secret's SecretString.

    `update` reads the current version (AWSCURRENT), merges the given keys into it and writes the
    result with PutSecretValue, which becomes the new AWSCURRENT (the previous one stays as
    AWSPREVIOUS). Nothing is written when the secret already holds the values. Secrets Manager has
    no compare-and-swap: a change another writer makes to the secret between the read and the
    write is replaced (only seconds apart; db-info secrets are not rotated during a restore).
    """

    kind = "AWS Secrets Manager secret"

    def __init__(self, client):
        self.client = client

    def read(self, name: str) -> dict[str, str] | None:
        document = self._read_document(name)
        return None if document is None else as_strings(document)

    def update(self, name: str, values: dict[str, str]) -> None:
        _check_values(values)
        document = self._read_document(name)
        if document is None:
            raise DbInfoError("SecretNotFound", f"AWS Secrets Manager secret {name} does not exist in this account "
                                                f"and region ({self._region()})")
        if not changed_keys(document, values):
            return
        merged = merge_values(document, values)
        secrets = [*values.values(), *as_strings(document).values()]
        self._call("write", name, secrets, lambda: self.client.put_secret_value(
            SecretId=name, SecretString=json.dumps(merged)))

    def _read_document(self, name: str) -> dict[str, Any] | None:
        response = self._call("read", name, (), lambda: self.client.get_secret_value(SecretId=name),
                              missing_ok=True)
        if response is None:
            return None
        return parse_secret_string(name, response.get("SecretString"))

    def _region(self) -> str:
        return getattr(getattr(self.client, "meta", None), "region_name", None) or "ambient region"

    def _call(self, verb: str, name: str, secrets: Iterable[str], function, missing_ok: bool = False):
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        where = f"AWS Secrets Manager secret {name}"
        secrets = list(secrets)
        try:
            return function()
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code == "ResourceNotFoundException" and missing_ok:
                return None
            server = _server_text(error.response.get("Error", {}).get("Message", ""), secrets)
            if code not in _AWS_ERRORS and status == 403:
                # Answers without a JSON error body (e.g. moto's XML, a proxy) still say 403.
                code = "AccessDenied" if "AccessDenied" in str(error.response) else "InvalidClientTokenId"
            reason, advice, retryable = _AWS_ERRORS.get(
                code, ("AwsServiceError", "Secrets Manager answered with an error", status >= 500 or status == 0))
            detail = f" [{server}]" if server else ""
            raise DbInfoError(reason, f"cannot {verb} {where} ({code or 'HTTP ' + str(status)}): {advice}{detail}",
                              retryable=retryable) from None
        except NoCredentialsError:
            raise DbInfoError("NoCredentials", f"cannot {verb} {where}: the operator has no AWS credentials "
                                               "(configure IRSA or the AWS_* environment)") from None
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as error:
            raise DbInfoError("Unreachable", f"cannot {verb} {where}: Secrets Manager did not answer "
                                             f"({type(error).__name__})", retryable=True) from None
        except BotoCoreError as error:
            # Parameter-validation messages may quote the values: name the error type only.
            raise DbInfoError("AwsClientError", f"cannot {verb} {where} ({type(error).__name__})") from None


# -- the synced copy --------------------------------------------------------------------------------

def refresh_synced_copy(kube_backend: DbInfoBackend, name: str, values: dict[str, str]) -> bool:
    """After `values` went into Secrets Manager, write them into the Kubernetes Secret of the same
    name, if the syncer made one, at once — what the syncer would do on its next refresh — so the
    consumers restarted next read the new database. Returns whether that Secret existed (if not,
    the consumers read Secrets Manager themselves, or the syncer has yet to create it)."""
    if kube_backend.read(name) is None:
        return False
    try:
        kube_backend.update(name, values)
    except DbInfoError as error:
        if error.reason == "SecretNotFound":  # deleted in between
            return False
        raise
    return True
