"""The e2e fixtures: the stand-in vault on the local stack (tests/e2e/vaults.py builds it)."""

from __future__ import annotations

import pytest

from tests.e2e.vaults import Vault, deploy_stand_in_vault


@pytest.fixture
def vault(cluster, namespace, operator, postgres_server, s3_server, s3_bucket, vault_db) -> Vault:
    return deploy_stand_in_vault(cluster, namespace, operator, postgres_server, s3_server, s3_bucket, vault_db)
