"""Operator settings from the environment, as the chart sets them."""

import json

import pydantic
import pytest

from walwarden.api import DEFAULT_TOPOLOGY, S3Storage, SecretBackend
from walwarden.settings import InvalidSettings, OperatorConfig, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Only what a test sets: none of the WALWARDEN_* settings of the shell running the tests."""
    for name in Settings.environment_variables().values():
        monkeypatch.delenv(name, raising=False)


def test_defaults():
    settings = Settings.from_environment()
    assert settings == Settings(
        namespaces=(),
        runner_image="walwarden:latest",
        runner_pod_labels={},
        approvals_required=False,
        approval_key_secret="walwarden-approval-key",
        operator_namespace="walwarden-system",
        metrics_port=0,
        health_port=0,
        listen_address="0.0.0.0",
        log_format="text",
        poll_seconds=5.0,
        settle_seconds=5.0,
        stop_timeout_seconds=600.0,
        default_topology=DEFAULT_TOPOLOGY,
        default_secret_backend=SecretBackend.KUBERNETES,
    )
    assert settings.log_json is False


def test_every_variable_is_read(monkeypatch):
    for name, value in {
        "WALWARDEN_NAMESPACES": "vault-a,vault-b",
        "WALWARDEN_RUNNER_IMAGE": "registry.example/walwarden:1.2.3",
        "WALWARDEN_RUNNER_POD_LABELS": '{"team": "custody"}',
        "WALWARDEN_APPROVALS_REQUIRED": "true",
        "WALWARDEN_APPROVAL_KEY_SECRET": "my-key",
        "WALWARDEN_OPERATOR_NAMESPACE": "ops",
        "WALWARDEN_METRICS_PORT": "9191",
        "WALWARDEN_HEALTH_PORT": "8181",
        "WALWARDEN_LISTEN_ADDRESS": "127.0.0.1",
        "WALWARDEN_LOG_FORMAT": "json",
        "WALWARDEN_POLL_SECONDS": "2.5",
        "WALWARDEN_SETTLE_SECONDS": "0",
        "WALWARDEN_STOP_TIMEOUT_SECONDS": "30",
        "WALWARDEN_DEFAULT_TOPOLOGY": '{"stopTiers": [["api"], ["bus"]]}',
        "WALWARDEN_DEFAULT_SECRET_BACKEND": "AWSSecretsManager",
        "WALWARDEN_ORIGIN_SIGNING_KEY_SECRET": "origin-key",
        "WALWARDEN_TRUSTED_KEYS_CONFIG_MAP": "trusted-keys",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_environment()
    assert (settings.namespaces, settings.runner_image, settings.runner_pod_labels) == (
        ("vault-a", "vault-b"),
        "registry.example/walwarden:1.2.3",
        {"team": "custody"},
    )
    assert (settings.approvals_required, settings.approval_key_secret, settings.operator_namespace) == (
        True,
        "my-key",
        "ops",
    )
    assert (settings.metrics_port, settings.health_port, settings.listen_address, settings.log_json) == (
        9191,
        8181,
        "127.0.0.1",
        True,
    )
    assert (settings.poll_seconds, settings.settle_seconds, settings.stop_timeout_seconds) == (2.5, 0.0, 30.0)
    assert settings.default_topology.stop_tiers == [["api"], ["bus"]]
    assert settings.default_secret_backend == SecretBackend.AWS_SECRETS_MANAGER
    assert (settings.origin_signing_key_secret, settings.trusted_keys_config_map) == ("origin-key", "trusted-keys")


def test_what_the_chart_sets_for_the_defaults_means_the_defaults(monkeypatch):
    # Cluster-wide is an empty WALWARDEN_NAMESPACES; the maps are rendered as "{}".
    for name, value in {
        "WALWARDEN_NAMESPACES": "",
        "WALWARDEN_RUNNER_POD_LABELS": "{}",
        "WALWARDEN_DEFAULT_TOPOLOGY": "{}",
        "WALWARDEN_DEFAULT_SECRET_BACKEND": "",
        "WALWARDEN_LOG_FORMAT": "text",
        "WALWARDEN_APPROVALS_REQUIRED": "false",
    }.items():
        monkeypatch.setenv(name, value)
    assert Settings.from_environment() == Settings()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("True", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
    ],
)
def test_approvals_required_reads_the_usual_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("WALWARDEN_APPROVALS_REQUIRED", value)
    assert Settings.from_environment().approvals_required is expected


def test_namespaces_drop_empty_entries_and_spaces(monkeypatch):
    monkeypatch.setenv("WALWARDEN_NAMESPACES", " vault-a, ,vault-b,")
    assert Settings.from_environment().namespaces == ("vault-a", "vault-b")


def test_overrides_win_and_none_is_ignored(monkeypatch):
    monkeypatch.setenv("WALWARDEN_NAMESPACES", "from-env")
    monkeypatch.setenv("WALWARDEN_POLL_SECONDS", "2")
    settings = Settings.from_environment(namespaces=("from-flag",), poll_seconds=None)
    assert (settings.namespaces, settings.poll_seconds) == (("from-flag",), 2.0)


def test_settings_are_frozen_and_the_old_name_still_works():
    assert OperatorConfig is Settings
    with pytest.raises(pydantic.ValidationError):
        Settings().poll_seconds = 1.0


def test_a_bad_default_topology_stops_the_operator_at_start(monkeypatch):
    monkeypatch.setenv("WALWARDEN_DEFAULT_TOPOLOGY", '{"stopTiers": "wallet"}')
    with pytest.raises(InvalidSettings, match="WALWARDEN_DEFAULT_TOPOLOGY, at stopTiers: Input should be a valid list"):
        Settings.from_environment()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WALWARDEN_METRICS_PORT", "metrics", "valid integer"),
        ("WALWARDEN_HEALTH_PORT", "70000", "less than or equal to 65535"),
        ("WALWARDEN_POLL_SECONDS", "0", "greater than 0"),
        ("WALWARDEN_APPROVALS_REQUIRED", "maybe", "valid boolean"),
        ("WALWARDEN_LOG_FORMAT", "xml", "'json' or 'text'"),
        ("WALWARDEN_RUNNER_POD_LABELS", "team=custody", "not JSON"),
        ("WALWARDEN_RUNNER_POD_LABELS", '{"replicas": 3}', "valid string"),
        ("WALWARDEN_DEFAULT_TOPOLOGY", "{stopTiers: []}", "not JSON"),
        ("WALWARDEN_DEFAULT_SECRET_BACKEND", "Vault", "'Kubernetes', 'AWSSecretsManager' or 'AzureKeyVault'"),
        ("WALWARDEN_TRUSTED_KEYS_CONFIG_MAP", "Trusted Keys", "should match pattern"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidSettings) as raised:
        Settings.from_environment()
    assert f"{name}" in str(raised.value) and message in str(raised.value)


def test_every_problem_is_reported_at_once(monkeypatch):
    monkeypatch.setenv("WALWARDEN_METRICS_PORT", "x")
    monkeypatch.setenv("WALWARDEN_LOG_FORMAT", "xml")
    with pytest.raises(InvalidSettings) as raised:
        Settings.from_environment()
    assert str(raised.value).splitlines()[1:] == [
        "  WALWARDEN_METRICS_PORT: Input should be a valid integer, unable to parse string as an integer",
        "  WALWARDEN_LOG_FORMAT: Input should be 'json' or 'text'",
    ]


@pytest.mark.parametrize(
    "storage, allowed",
    [
        ({"bucket": "vault-backups", "prefix": "prod/vault"}, True),
        ({"bucket": "vault-backups", "prefix": "prod"}, False),  # above the allowed prefix
        ({"bucket": "someone-elses", "prefix": "prod/vault"}, False),
        ({"bucket": "vault-backups", "prefix": "prod/vault", "endpoint": "https://attacker.example"}, False),
        ({"bucket": "minio-vault", "endpoint": "https://minio.internal:9000"}, True),
        ({"bucket": "minio-vault", "endpoint": "https://minio.internal.attacker.example:9000"}, False),
    ],
)
def test_storage_locations_say_where_a_namespaces_artifacts_may_be(storage, allowed):
    """A request could send the vault's dump to a bucket or server of its choosing: only the
    locations the operator's configuration gives its namespace are usable."""
    settings = Settings.model_validate(
        {
            "storage_locations": json.dumps(
                {
                    "vault": [
                        {"bucket": "vault-backups", "prefix": "prod/vault"},
                        {"bucket": "minio-*", "endpoint": "https://minio.internal:*"},
                    ]
                }
            )
        }
    )
    assert settings.storage_allowed("vault", S3Storage.model_validate(storage)) is allowed
    assert settings.storage_allowed("another-team", S3Storage.model_validate(storage)) is False
    assert Settings().storage_allowed("vault", S3Storage.model_validate(storage)) is False  # none by default
