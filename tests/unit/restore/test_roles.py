"""restore/roles.py: the passwords a created LOGIN role gets are the database services' own."""

from __future__ import annotations

import pytest

from tests.unit.fakes import REDIRECTED
from walwarden.restore.roles import role_passwords
from walwarden.workflow.engine import StepFailed


def test_each_services_db_user_gets_its_db_password(vault):
    vault.add_db_info_secrets()
    passwords = role_passwords(vault.restore_run(vault.restore_spec(**REDIRECTED)))
    assert passwords == {service: f"{service}-password" for service in passwords} and "wallet" in passwords


def test_services_sharing_a_user_must_agree_on_its_password(vault):
    vault.add_db_info_secrets(DB_USER="vault_app", DB_PASSWORD="shared")
    run = vault.restore_run(vault.restore_spec(**REDIRECTED))
    assert role_passwords(run) == {"vault_app": "shared"}
    vault.kube.add_secret(
        "prod.vault.wallet.db-info", {**vault.kube.secret("prod.vault.wallet.db-info"), "DB_PASSWORD": "x"}
    )
    with pytest.raises(StepFailed) as refused:
        role_passwords(vault.restore_run(vault.restore_spec(**REDIRECTED)))
    assert refused.value.reason == "RolePasswordConflict" and "shared" not in refused.value.message


def test_in_place_reads_no_db_info(vault):
    assert role_passwords(vault.restore_run()) == {}
