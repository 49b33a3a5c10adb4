"""`from walwarden import secretstores` keeps offering every name the rest of the operator uses."""

from __future__ import annotations

from walwarden import secretstores
from walwarden.secretstores import aws, azure, base, kubernetes, synced


def test_the_package_re_exports_each_store_and_the_shared_names():
    assert secretstores.KubernetesSecrets is kubernetes.KubernetesSecrets
    assert secretstores.AwsSecretsManager is aws.AwsSecretsManager
    assert secretstores.make_aws_client is aws.make_aws_client
    for name in ("AzureKeyVault", "ServicePrincipal", "key_vault_name", "make_azure_client"):
        assert getattr(secretstores, name) is getattr(azure, name)
    assert secretstores.refresh_synced_copy is synced.refresh_synced_copy
    for name in (
        "DB_INFO_KEYS",
        "DbInfoBackend",
        "DbInfoError",
        "as_strings",
        "changed_keys",
        "merge_values",
        "parse_secret_string",
        "scrub",
    ):
        assert getattr(secretstores, name) is getattr(base, name)
    assert set(secretstores.__all__) == {
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
    }


def test_every_store_is_a_db_info_backend():
    assert issubclass(secretstores.KubernetesSecrets, secretstores.DbInfoBackend)
    assert issubclass(secretstores.AwsSecretsManager, secretstores.DbInfoBackend)
    assert issubclass(secretstores.AzureKeyVault, secretstores.DbInfoBackend)
