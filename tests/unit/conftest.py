"""The unit tests' shared fixtures; the fakes they are made of are in tests/unit/fakes.py."""

from __future__ import annotations

import pytest

from tests.unit.fakes import Vault
from walwarden.security import origin
from walwarden.settings import Settings


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch) -> Vault:
    """An in-memory vault: cluster, S3 and target PostgreSQL (see tests/unit/fakes.py)."""
    for variable in Settings.environment_variables().values():
        monkeypatch.delenv(variable, raising=False)
    return Vault(monkeypatch)


@pytest.fixture(scope="session")
def key_a() -> origin.Ed25519PrivateKey:
    """An Ed25519 origin signing key (tests/unit/security/test_origin.py, the origin checks)."""
    return origin.generate_private_key()


@pytest.fixture(scope="session")
def key_b() -> origin.Ed25519PrivateKey:
    """Another one: a key that is not key_a."""
    return origin.generate_private_key()
