"""db-info secrets in Azure Key Vault: a JSON object in each secret's value.

Key Vault secret names allow only letters, digits and dashes, so the db-info secret
`<environment>.<namespace>.<service>.db-info` is the Key Vault secret `key_vault_name(name)`, the
same name with every dot a dash. An external syncer (External Secrets Operator, the Secrets Store
CSI driver...) usually copies each into a Kubernetes Secret of the dotted name;
`refresh_synced_copy` (synced.py) updates that copy at once after a change here.

Errors of Key Vault, of Microsoft Entra ID and of the network become a `DbInfoError` through one
pure function, `classify`, with what to do about each.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from walwarden.secretstores.base import (
    DbInfoError,
    as_strings,
    changed_keys,
    check_values,
    merge_values,
    parse_secret_string,
    server_text,
)

if TYPE_CHECKING:
    from azure.keyvault.secrets import KeyVaultSecret, SecretClient

T = TypeVar("T")

WHERE = "Azure Key Vault secret"
_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
# The rights the operator's identity needs on the db-info secrets, in either permission model.
_GRANT = (
    "grant the operator's Azure identity the role Key Vault Secrets Officer on the vault (RBAC), "
    "or an access policy with the secret permissions Get and Set"
)


def key_vault_name(name: str) -> str:
    """The Key Vault secret that holds db-info secret `name`: every dot a dash."""
    mapped = name.replace(".", "-")
    if not _NAME.match(mapped):
        raise DbInfoError(
            "InvalidSecretName",
            f"db-info secret {name} has no valid Azure Key Vault name ({mapped}): Key Vault secret names are "
            "1 to 127 letters, digits and dashes; fix spec.topology's secret name template or the environment",
        )
    return mapped


@dataclass(frozen=True)
class ServicePrincipal:
    """A Microsoft Entra ID application's client-secret credentials (from a Kubernetes Secret)."""

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)


def make_azure_client(
    vault_url: str, principal: ServicePrincipal | None = None, authority_host: str | None = None
) -> SecretClient:
    """A Key Vault SecretClient. With a service principal: its client secret; without: the ambient
    identity (the AZURE_* environment, workload identity, managed identity; never a developer's
    CLI login). Bounded timeouts and retries, so a hanging vault cannot block a restore step."""
    from azure.identity import ClientSecretCredential, DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    authority = {"authority": authority_host} if authority_host else {}
    credential: Any
    if principal is not None:
        try:
            credential = ClientSecretCredential(
                principal.tenant_id, principal.client_id, principal.client_secret, **authority
            )
        except ValueError:
            # Its message may quote what was given: name the key only.
            raise DbInfoError(
                "InvalidCredentials",
                "the Azure service principal's tenantId is not a tenant ID (a GUID or a domain such as "
                "contoso.onmicrosoft.com): fix the tenantId key of its Secret",
            ) from None
    else:
        credential = DefaultAzureCredential(
            exclude_cli_credential=True,
            exclude_developer_cli_credential=True,
            exclude_powershell_credential=True,
            exclude_visual_studio_code_credential=True,
            exclude_shared_token_cache_credential=True,
            exclude_interactive_browser_credential=True,
            **authority,
        )
    # Read by the retry policy (a few tries, backing off) and the transport (seconds).
    return SecretClient(vault_url, credential, connection_timeout=5, read_timeout=20, retry_total=3)


# -- what an error means -----------------------------------------------------------------------------

_ACCESS_POLICY = (
    "AccessDenied",
    "add an access policy for the operator's Azure identity with the secret permissions Get and Set",
    False,
)
# Key Vault's error codes (the inner code first, as more precise) -> (reason, advice, retryable).
_KEY_VAULT_ERRORS: dict[str, tuple[str, str, bool]] = {
    "SecretNotFound": ("SecretNotFound", "it does not exist in this vault", False),
    "ForbiddenByRbac": (
        "AccessDenied",
        "assign the operator's Azure identity the role Key Vault Secrets Officer on the vault",
        False,
    ),
    "ForbiddenByPolicy": _ACCESS_POLICY,
    "AccessDenied": _ACCESS_POLICY,
    "ForbiddenByFirewall": (
        "NetworkDenied",
        "the vault's firewall refuses the operator's address: allow its network, or use a private endpoint, "
        "in the vault's Networking settings",
        False,
    ),
    "ForbiddenByConnection": (
        "NetworkDenied",
        "the vault accepts only private-endpoint connections: reach it through its private endpoint",
        False,
    ),
    "SecretDisabled": ("SecretDisabled", "its current version is disabled: enable it (or set a new version)", False),
    "ObjectIsDeletedButRecoverable": (
        "SecretDeleted",
        "it was deleted and soft delete keeps its name: recover it (az keyvault secret recover) before the restore",
        False,
    ),
    "Throttled": ("Throttled", "Key Vault throttled the request: try again later", True),
    "BadParameter": ("InvalidRequest", "Key Vault refused a parameter", False),
}
_STATUS_ERRORS: dict[int, tuple[str, str, bool]] = {
    400: ("InvalidRequest", "Key Vault refused the request", False),
    401: (
        "InvalidCredentials",
        "Key Vault did not accept the operator's token: the identity must be of the vault's own "
        "tenant (check tenantId, or authorityHost for a sovereign cloud)",
        False,
    ),
    403: ("AccessDenied", _GRANT, False),
    404: ("SecretNotFound", "it does not exist in this vault", False),
    409: ("Conflict", "Key Vault reported a conflict (a deleted secret of that name may be kept by soft delete)", True),
    429: ("Throttled", "Key Vault throttled the request: try again later", True),
}


def classify(status: int, code: str = "", inner_code: str = "") -> tuple[str, str, bool]:
    """What an answer of Key Vault means: (reason, advice, retryable), by its inner error code, its
    error code, then its HTTP status."""
    for known in (inner_code, code):
        if known in _KEY_VAULT_ERRORS:
            return _KEY_VAULT_ERRORS[known]
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    return ("AzureServiceError", "Key Vault answered with an error", status >= 500 or status == 0)


def unreachable(vault_url: str, error_text: str) -> tuple[str, str, bool]:
    """What a failure to reach the vault means: a name that does not resolve is a wrong vault URL
    (nothing to wait for); anything else may pass."""
    check = "check spec.redirect.azureKeyVault.vaultUrl (https://<vault-name>.vault.azure.net)"
    if re.search(
        r"Name or service not known|No address associated|nodename nor servname|getaddrinfo|resolve", error_text
    ):
        return ("VaultNotFound", f"no vault answers at {vault_url} (the name does not resolve): {check}", False)
    return ("Unreachable", f"the vault at {vault_url} did not answer: {check} and the operator's network egress", True)


def entra_code(text: str) -> str:
    """The AADSTS error code in a Microsoft Entra ID message (it says why a sign-in failed), or ""."""
    found = re.search(r"AADSTS\d+", text)
    return found.group(0) if found else ""


# -- the store ---------------------------------------------------------------------------------------


class AzureKeyVault:
    """db-info secrets in Azure Key Vault: a JSON object in each secret's value.

    `update` reads the current version, merges the given keys into it and sets the result as a new
    version (Key Vault keeps the previous ones), with the current version's content type and tags.
    Nothing is written when the secret already holds the values. Key Vault has no compare-and-swap:
    a change another writer makes between the read and the write is replaced (only seconds apart;
    db-info secrets are not rotated during a restore).
    """

    kind = WHERE

    def __init__(self, client: SecretClient) -> None:
        self.client = client

    def read(self, name: str) -> dict[str, str] | None:
        found = self._read(name)
        return None if found is None else as_strings(found[1])

    def update(self, name: str, values: dict[str, str]) -> None:
        check_values(values)
        found = self._read(name)
        if found is None:
            raise DbInfoError(
                "SecretNotFound",
                f"{WHERE} {key_vault_name(name)} (db-info secret {name}) does not exist in vault "
                f"{self.client.vault_url}",
            )
        secret, document = found
        if not changed_keys(document, values):
            return
        merged = merge_values(document, values)
        secrets = [*values.values(), *as_strings(document).values()]
        properties = secret.properties
        self._call(
            "set",
            name,
            secrets,
            lambda: self.client.set_secret(
                key_vault_name(name),
                json.dumps(merged),
                content_type=properties.content_type or "application/json",
                tags=properties.tags,
            ),
        )

    def _read(self, name: str) -> tuple[KeyVaultSecret, dict[str, Any]] | None:
        secret = self._call("get", name, (), lambda: self.client.get_secret(key_vault_name(name)), missing_ok=True)
        if secret is None:
            return None
        return secret, parse_secret_string(key_vault_name(name), secret.value, WHERE, "value")

    def _call(
        self, verb: str, name: str, secrets: Iterable[str], function: Callable[[], T], missing_ok: bool = False
    ) -> T | None:
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )
        from azure.identity import CredentialUnavailableError

        where = f"{WHERE} {key_vault_name(name)} in {self.client.vault_url}"
        secrets = list(secrets)
        try:
            return function()
        except CredentialUnavailableError:
            raise DbInfoError(
                "NoCredentials",
                f"cannot {verb} {where}: the operator has no Azure identity: set "
                "spec.redirect.azureKeyVault.credentialsSecretRef (a service principal's tenantId, clientId "
                "and clientSecret) or give the operator a workload identity",
            ) from None
        except ClientAuthenticationError as error:
            if error.status_code is None:  # Microsoft Entra ID refused the sign-in, before Key Vault.
                code = entra_code(str(error))
                raise DbInfoError(
                    "InvalidCredentials",
                    f"cannot {verb} {where}: Microsoft Entra ID refused the operator's Azure identity"
                    f"{' (' + code + ')' if code else ''}: check tenantId, clientId and clientSecret of the "
                    "credentials Secret (a client secret expires: renew it) or the workload identity",
                ) from None
            raise self._answer(error, verb, where, secrets) from None
        except HttpResponseError as error:
            if error.status_code == 404 and _code(error) != "SecretNotFound":
                # Key Vault names a missing secret; a 404 without that is another server.
                raise DbInfoError(
                    "NotAKeyVault",
                    f"cannot {verb} {where}: the server answered 404 without Key Vault's error, so "
                    "the URL is not a Key Vault's: check spec.redirect.azureKeyVault.vaultUrl "
                    "(https://<vault-name>.vault.azure.net, no path)",
                ) from None
            if error.status_code == 404 and missing_ok:
                return None
            raise self._answer(error, verb, where, secrets) from None
        except (ServiceRequestError, ServiceResponseError) as error:
            reason, advice, retryable = unreachable(self.client.vault_url, str(error))
            raise DbInfoError(reason, f"cannot {verb} {where}: {advice}", retryable=retryable) from None
        except ValueError as error:
            if "challenge" in str(error):
                raise DbInfoError(
                    "NotAKeyVault",
                    f"cannot {verb} {where}: the server at that URL asked for a token of another resource, "
                    "so it is not an Azure Key Vault (the token is not sent): check "
                    "spec.redirect.azureKeyVault.vaultUrl (https://<vault-name>.vault.azure.net)",
                ) from None
            raise DbInfoError("AzureClientError", f"cannot {verb} {where} ({type(error).__name__})") from None
        except AzureError as error:
            # Other client-side errors may quote a request: name the error type only.
            raise DbInfoError("AzureClientError", f"cannot {verb} {where} ({type(error).__name__})") from None

    @staticmethod
    def _answer(error: Any, verb: str, where: str, secrets: list[str]) -> DbInfoError:
        status = int(error.status_code or 0)
        odata = getattr(error, "error", None)
        code = _code(error)
        inner = getattr(odata, "innererror", None) or {}
        inner_code = str(inner.get("code", "") if isinstance(inner, dict) else "")
        reason, advice, retryable = classify(status, code, inner_code)
        server = server_text(getattr(odata, "message", "") or "", secrets)
        detail = f" [{server}]" if server else ""
        label = "/".join(part for part in (code, inner_code) if part) or f"HTTP {status}"
        return DbInfoError(reason, f"cannot {verb} {where} ({label}): {advice}{detail}", retryable=retryable)


def _code(error: Any) -> str:
    """The error code of Key Vault's JSON error body ("" for an answer without one)."""
    return str(getattr(getattr(error, "error", None), "code", "") or "")
