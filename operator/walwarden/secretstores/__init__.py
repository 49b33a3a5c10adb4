"""Where the services' db-info secrets live, and how to change a few of their keys.

Every database user of the vault reads its connection from a "db-info" secret named
`<environment>.<namespace>.<service>.db-info` (keys DB_HOST, DB_PORT, DB_USER, DB_PASSWORD,
DB_NAME; DESIGN §1). A Redirected restore repoints them at the new database. They live in one of
these stores (DESIGN §5: Kubernetes, AWS Secrets Manager, Azure Key Vault):

- kubernetes.py — `KubernetesSecrets`: Kubernetes Secrets in the vault's namespace.
- aws.py — `AwsSecretsManager` (and `make_aws_client`): AWS Secrets Manager secrets whose
  SecretString is a JSON object with those keys.
- azure.py — `AzureKeyVault` (and `make_azure_client`, `ServicePrincipal`): Azure Key Vault secrets
  whose value is such a JSON object; the Key Vault name is the db-info name with dots as dashes
  (`key_vault_name`).

What they share is in base.py: the `DbInfoBackend` protocol every store implements, `DbInfoError`,
`DB_INFO_KEYS`, and the pure logic of a change (`changed_keys`, `merge_values`, `as_strings`,
`parse_secret_string`) and of keeping secret values out of server messages (`scrub`).

synced.py — `refresh_synced_copy`: an external syncer (External Secrets Operator, the Secrets Store
CSI driver...) copies each Secrets Manager or Key Vault secret into a Kubernetes Secret of the same name on its
own schedule. After changing the store, `refresh_synced_copy` writes the same keys into that
Kubernetes copy at once — what the syncer would do on its next refresh — so the consumers restarted
right after read the new values instead of the stale copy. The syncer's next refresh writes the
same values again, so the two never disagree.

Every store only changes the keys it is given (the password and user stay as they are), never
creates a secret, and skips the write when the secret already holds the values, so doing an update
twice (a resumed operator) changes nothing the second time.

Secret values never appear in a `DbInfoError`, in logs or in messages: errors carry the secret's
name, a short reason and an explanation, with any text that came from the server scrubbed of the
values involved.

Import the stores from here (`from walwarden import secretstores`); the modules are the layout.
"""

from __future__ import annotations

from walwarden.secretstores.aws import AwsSecretsManager, make_aws_client
from walwarden.secretstores.azure import AzureKeyVault, ServicePrincipal, key_vault_name, make_azure_client
from walwarden.secretstores.base import (
    DB_INFO_KEYS,
    DbInfoBackend,
    DbInfoError,
    as_strings,
    changed_keys,
    merge_values,
    parse_secret_string,
    scrub,
)
from walwarden.secretstores.kubernetes import KubernetesSecrets
from walwarden.secretstores.synced import refresh_synced_copy

__all__ = [
    "DB_INFO_KEYS",
    "AwsSecretsManager",
    "AzureKeyVault",
    "DbInfoBackend",
    "DbInfoError",
    "KubernetesSecrets",
    "ServicePrincipal",
    "as_strings",
    "changed_keys",
    "key_vault_name",
    "make_aws_client",
    "make_azure_client",
    "merge_values",
    "parse_secret_string",
    "refresh_synced_copy",
    "scrub",
]
