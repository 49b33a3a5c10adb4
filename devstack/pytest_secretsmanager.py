"""pytest fixture for AWS Secrets Manager: one moto server (see devstack/secretsmanager.py) per session."""

from __future__ import annotations

import pytest

from devstack.secretsmanager import SecretsManagerServer


@pytest.fixture(scope="session")
def secrets_manager(tmp_path_factory) -> SecretsManagerServer:
    """A Secrets Manager-compatible server on 127.0.0.1: `.endpoint`, `.region`, `.client()`."""
    with SecretsManagerServer(tmp_path_factory.mktemp("secretsmanager")) as server:
        yield server
