"""Azure Key Vault (secretstores/azure.py): the pure parts only — names, what an error means, and
the client's construction (no request is sent). No Key Vault-compatible server is available to
this project, so reads and writes have no test against a server (docs/runbook.md says so)."""

from __future__ import annotations

import pytest

from walwarden.secretstores.azure import (
    ServicePrincipal,
    classify,
    entra_code,
    key_vault_name,
    make_azure_client,
    unreachable,
)
from walwarden.secretstores.base import DbInfoError

VAULT = "https://vault-prod.vault.azure.net"
SECRET = "client-Secret-" + "x" * 12


def test_a_db_info_name_becomes_a_key_vault_name_with_dashes():
    assert key_vault_name("prod.vault.policy-node0.db-info") == "prod-vault-policy-node0-db-info"


@pytest.mark.parametrize("name", ["prod_env.vault.wallet.db-info", "a" * 128, ""])
def test_a_name_key_vault_cannot_hold_is_refused_with_what_to_fix(name):
    with pytest.raises(DbInfoError) as refused:
        key_vault_name(name)
    assert refused.value.reason == "InvalidSecretName" and "secret name template" in refused.value.message


@pytest.mark.parametrize(
    ("status", "code", "inner", "reason", "advice", "retryable"),
    [
        (404, "SecretNotFound", "", "SecretNotFound", "does not exist", False),
        (403, "Forbidden", "ForbiddenByRbac", "AccessDenied", "Key Vault Secrets Officer", False),
        (403, "Forbidden", "AccessDenied", "AccessDenied", "access policy", False),
        (403, "Forbidden", "ForbiddenByPolicy", "AccessDenied", "Get and Set", False),
        (403, "Forbidden", "ForbiddenByFirewall", "NetworkDenied", "Networking", False),
        (403, "Forbidden", "SecretDisabled", "SecretDisabled", "enable it", False),
        (403, "Forbidden", "", "AccessDenied", "Key Vault Secrets Officer", False),  # unknown inner code
        (401, "Unauthorized", "", "InvalidCredentials", "tenant", False),
        (409, "Conflict", "ObjectIsDeletedButRecoverable", "SecretDeleted", "recover", False),
        (429, "Throttled", "", "Throttled", "later", True),
        (400, "BadParameter", "", "InvalidRequest", "parameter", False),
        (503, "ServiceUnavailable", "", "AzureServiceError", "error", True),
        (418, "", "", "AzureServiceError", "error", False),
    ],
)
def test_each_key_vault_answer_says_what_to_do(status, code, inner, reason, advice, retryable):
    assert classify(status, code, inner)[0] == reason
    assert advice in classify(status, code, inner)[1]
    assert classify(status, code, inner)[2] is retryable


def test_a_vault_name_that_does_not_resolve_is_a_wrong_url_not_a_wait():
    reason, advice, retryable = unreachable(VAULT, "Failed to establish a new connection: Name or service not known")
    assert (reason, retryable) == ("VaultNotFound", False)
    assert VAULT in advice and "vaultUrl" in advice
    assert unreachable(VAULT, "Connection timed out")[0::2] == ("Unreachable", True)


def test_only_the_entra_error_code_is_kept_of_a_sign_in_failure():
    text = f"AADSTS7000215: Invalid client secret provided. Trace ID: 1234 ({SECRET[:3]})"
    assert entra_code(text) == "AADSTS7000215"
    assert entra_code("no code here") == ""


def test_a_service_principal_never_shows_its_secret():
    principal = ServicePrincipal("00000000-0000-0000-0000-000000000001", "app", SECRET)
    assert SECRET not in repr(principal)


def test_the_client_is_built_without_a_request_and_a_bad_tenant_is_refused_without_values():
    client = make_azure_client(VAULT, ServicePrincipal("contoso.onmicrosoft.com", "app", SECRET))
    assert client.vault_url == VAULT
    assert make_azure_client(VAULT).vault_url == VAULT  # the ambient identity: nothing looked up yet
    with pytest.raises(DbInfoError) as refused:
        make_azure_client(VAULT, ServicePrincipal("not a tenant!", "app", SECRET))
    assert refused.value.reason == "InvalidCredentials" and "tenantId" in refused.value.message
    assert SECRET not in str(refused.value) and "not a tenant!" not in str(refused.value)
