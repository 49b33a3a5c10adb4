"""The unit tests' shared fixtures; the fakes they are made of are in tests/unit/fakes.py."""

from __future__ import annotations

import pytest

from tests.unit.fakes import Vault
from walwarden.settings import Settings


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch) -> Vault:
    """An in-memory vault: cluster, S3 and target PostgreSQL (see tests/unit/fakes.py)."""
    for variable in Settings.environment_variables().values():
        monkeypatch.delenv(variable, raising=False)
    return Vault(monkeypatch)
