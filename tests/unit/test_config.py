"""Operator settings from the environment, as the chart sets them."""

import pydantic
import pytest

from walwarden.api import DEFAULT_TOPOLOGY, SecretBackend
from walwarden.settings import OperatorConfig


def test_defaults(monkeypatch):
    for name in ("WALWARDEN_DEFAULT_TOPOLOGY", "WALWARDEN_DEFAULT_SECRET_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    config = OperatorConfig.from_environment()
    assert config.default_topology == DEFAULT_TOPOLOGY
    assert config.default_secret_backend == SecretBackend.KUBERNETES


def test_default_topology_and_backend_from_the_environment(monkeypatch):
    monkeypatch.setenv("WALWARDEN_DEFAULT_TOPOLOGY", '{"stopTiers": [["api"], ["bus"]]}')
    monkeypatch.setenv("WALWARDEN_DEFAULT_SECRET_BACKEND", "AWSSecretsManager")
    config = OperatorConfig.from_environment()
    assert config.default_topology.stop_tiers == [["api"], ["bus"]]
    assert config.default_secret_backend == SecretBackend.AWS_SECRETS_MANAGER


def test_a_bad_default_topology_stops_the_operator_at_start(monkeypatch):
    monkeypatch.setenv("WALWARDEN_DEFAULT_TOPOLOGY", '{"stopTiers": "wallet"}')
    with pytest.raises(pydantic.ValidationError):
        OperatorConfig.from_environment()
