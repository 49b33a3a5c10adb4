"""db-info secrets in AWS Secrets Manager: a JSON object in each secret's SecretString.

An external syncer (External Secrets Operator, the Secrets Store CSI driver...) usually copies each
into a Kubernetes Secret of the same name; `refresh_synced_copy` (synced.py) updates that copy at
once after a change here. Errors of Secrets Manager and of AWS authentication become a
`DbInfoError` through one table, `_AWS_ERRORS`, with what to do about each.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from walwarden.secretstores.base import (
    DbInfoError,
    as_strings,
    changed_keys,
    check_values,
    merge_values,
    parse_secret_string,
    server_text,
)

T = TypeVar("T")

# A boto3 "secretsmanager" client: botocore builds its methods at run time, so it has no static type.
SecretsManagerClient = Any


def make_aws_client(
    region: str | None, endpoint: str | None, access_key: str | None = None, secret_key: str | None = None
) -> SecretsManagerClient:
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
        raise DbInfoError(
            "NoRegion",
            "no AWS region for Secrets Manager: set spec.redirect.aws.region or give the operator AWS_REGION",
        ) from None
    except BotoCoreError as error:
        raise DbInfoError(
            "AwsClientError", f"cannot create the AWS Secrets Manager client ({type(error).__name__})"
        ) from None


# Error codes of Secrets Manager (and of AWS authentication in general) -> (reason, advice, retryable).
_AWS_ERRORS: dict[str, tuple[str, str, bool]] = {
    "ResourceNotFoundException": ("SecretNotFound", "it does not exist in this account and region", False),
    "AccessDeniedException": (
        "AccessDenied",
        "grant the operator's AWS identity secretsmanager:GetSecretValue "
        "and secretsmanager:PutSecretValue on it (and kms:Decrypt / "
        "kms:GenerateDataKey on its KMS key)",
        False,
    ),
    "AccessDenied": (
        "AccessDenied",
        "grant the operator's AWS identity secretsmanager:GetSecretValue and secretsmanager:PutSecretValue on it",
        False,
    ),
    "UnrecognizedClientException": ("InvalidCredentials", "the AWS credentials are not valid", False),
    "InvalidClientTokenId": ("InvalidCredentials", "the AWS access key is not valid", False),
    "InvalidSignatureException": (
        "InvalidCredentials",
        "the request signature does not match: check the AWS secret key and the clock",
        False,
    ),
    "SignatureDoesNotMatch": (
        "InvalidCredentials",
        "the request signature does not match: check the AWS secret key and the clock",
        False,
    ),
    "ExpiredTokenException": ("InvalidCredentials", "the AWS session token has expired", True),
    "ExpiredToken": ("InvalidCredentials", "the AWS session token has expired", True),
    "DecryptionFailure": (
        "KmsError",
        "Secrets Manager cannot decrypt it with its KMS key: check the key and the operator's kms:Decrypt permission",
        False,
    ),
    "EncryptionFailure": (
        "KmsError",
        "Secrets Manager cannot encrypt the new value with its KMS key: check "
        "the key and the operator's kms:GenerateDataKey permission",
        False,
    ),
    "InvalidRequestException": (
        "InvalidRequest",
        "Secrets Manager refused the request (a secret scheduled for deletion cannot be used: restore it first)",
        False,
    ),
    "InvalidParameterException": ("InvalidRequest", "Secrets Manager refused a parameter", False),
    "LimitExceededException": (
        "LimitExceeded",
        "a Secrets Manager limit was reached (for example too many versions of this secret)",
        True,
    ),
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

    def __init__(self, client: SecretsManagerClient) -> None:
        self.client = client

    def read(self, name: str) -> dict[str, str] | None:
        document = self._read_document(name)
        return None if document is None else as_strings(document)

    def update(self, name: str, values: dict[str, str]) -> None:
        check_values(values)
        document = self._read_document(name)
        if document is None:
            raise DbInfoError(
                "SecretNotFound",
                f"AWS Secrets Manager secret {name} does not exist in this account and region ({self._region()})",
            )
        if not changed_keys(document, values):
            return
        merged = merge_values(document, values)
        secrets = [*values.values(), *as_strings(document).values()]
        self._call(
            "write", name, secrets, lambda: self.client.put_secret_value(SecretId=name, SecretString=json.dumps(merged))
        )

    def _read_document(self, name: str) -> dict[str, Any] | None:
        response = self._call("read", name, (), lambda: self.client.get_secret_value(SecretId=name), missing_ok=True)
        if response is None:
            return None
        return parse_secret_string(name, response.get("SecretString"))

    def _region(self) -> str:
        return getattr(getattr(self.client, "meta", None), "region_name", None) or "ambient region"

    def _call(
        self, verb: str, name: str, secrets: Iterable[str], function: Callable[[], T], missing_ok: bool = False
    ) -> T | None:
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
            server = server_text(error.response.get("Error", {}).get("Message", ""), secrets)
            if code not in _AWS_ERRORS and status == 403:
                # Answers without a JSON error body (e.g. moto's XML, a proxy) still say 403.
                code = "AccessDenied" if "AccessDenied" in str(error.response) else "InvalidClientTokenId"
            reason, advice, retryable = _AWS_ERRORS.get(
                code, ("AwsServiceError", "Secrets Manager answered with an error", status >= 500 or status == 0)
            )
            detail = f" [{server}]" if server else ""
            raise DbInfoError(
                reason,
                f"cannot {verb} {where} ({code or 'HTTP ' + str(status)}): {advice}{detail}",
                retryable=retryable,
            ) from None
        except NoCredentialsError:
            raise DbInfoError(
                "NoCredentials",
                f"cannot {verb} {where}: the operator has no AWS credentials (configure IRSA or the AWS_* environment)",
            ) from None
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as error:
            raise DbInfoError(
                "Unreachable",
                f"cannot {verb} {where}: Secrets Manager did not answer ({type(error).__name__})",
                retryable=True,
            ) from None
        except BotoCoreError as error:
            # Parameter-validation messages may quote the values: name the error type only.
            raise DbInfoError("AwsClientError", f"cannot {verb} {where} ({type(error).__name__})") from None
