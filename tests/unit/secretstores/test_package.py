"""`from walwarden import secretstores` keeps offering every name the rest of the operator uses."""

from __future__ import annotations

from walwarden import secretstores
from walwarden.secretstores import aws, base, kubernetes, synced


def test_the_package_re_exports_each_store_and_the_shared_names():
    assert secretstores.KubernetesSecrets is kubernetes.KubernetesSecrets
    assert secretstores.AwsSecretsManager is aws.AwsSecretsManager
    assert secretstores.make_aws_client is aws.make_aws_client
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
        "DbInfoBackend",
        "DbInfoError",
        "KubernetesSecrets",
        "as_strings",
        "changed_keys",
        "make_aws_client",
        "merge_values",
        "parse_secret_string",
        "refresh_synced_copy",
        "scrub",
    }


def test_both_stores_are_db_info_backends():
    assert issubclass(secretstores.KubernetesSecrets, secretstores.DbInfoBackend)
    assert issubclass(secretstores.AwsSecretsManager, secretstores.DbInfoBackend)
