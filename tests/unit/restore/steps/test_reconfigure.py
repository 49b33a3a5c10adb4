"""Reconfigure (restore/steps/reconfigure.py): a Redirected restore snapshots, then repoints every
db-info secret and rolls the consumers that kept running; its undo puts them back from the snapshot."""

from __future__ import annotations

import pytest

from tests.unit.fakes import REDIRECTED, deep_merge, running_since
from walwarden.api import RestoreStep
from walwarden.api.restore import RESTORE_CREDENTIALS_LABEL
from walwarden.restore.steps.reconfigure import put_secrets_back, reconfigure
from walwarden.workflow.engine import Skip, StepFailed, UndoCause, Wait

SNAPSHOT = "restore-1-snapshot-5e5f0e3c"
UID = "5e5f0e3c-1111-4222-8333-444455556666"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@pytest.fixture(autouse=True)
def services_stopped(vault):
    """These steps run in the stop window: ScaleDown has stopped every service."""
    return vault.kube.stop_all()


@pytest.fixture
def db_info(vault) -> dict[str, str]:
    """The five db-info secrets (name -> service), pointing at old-db.internal."""
    return vault.add_db_info_secrets()


def redirected(vault, **redirect):
    return vault.restore_run(vault.restore_spec(**deep_merge(REDIRECTED, {"redirect": redirect})))


def test_in_place_changes_no_secret(vault, db_info):
    run = vault.restore_run()
    with pytest.raises(Skip) as skipped:
        reconfigure(run)
    assert str(skipped.value) == "InPlace: the services keep their database"
    assert vault.kube.writes == [] and run.status.secrets_repointed is None


def test_every_db_info_secret_is_repointed_and_nothing_else_in_it_changes(vault, db_info):
    run = redirected(vault)
    message = reconfigure(run)
    for name, service in db_info.items():
        assert vault.kube.secret(name) == {
            "DB_HOST": "new-db.internal",
            "DB_PORT": "5432",
            "DB_NAME": "vault",
            "DB_USER": service,
            "DB_PASSWORD": f"{service}-password",
        }
    assert run.status.secrets_repointed is True
    assert message.startswith("repointed 5 db-info secrets (Kubernetes) to new-db.internal; restarted orchestrator")


def test_a_new_port_and_database_name_are_written_when_given(vault, db_info):
    reconfigure(redirected(vault, dbPort=6432, dbName="vault_restored"))
    for name in db_info:
        secret = vault.kube.secret(name)
        assert (secret["DB_HOST"], secret["DB_PORT"], secret["DB_NAME"]) == (
            "new-db.internal",
            "6432",
            "vault_restored",
        )


def test_the_originals_are_snapshotted_before_the_first_change(vault, db_info):
    run = redirected(vault)
    reconfigure(run)
    snapshot = vault.kube.secret(SNAPSHOT)
    assert snapshot == {
        f"{name}.{key}": value
        for name in db_info
        for key, value in (("DB_HOST", "old-db.internal"), ("DB_PORT", "5432"), ("DB_NAME", "vault"))
    }
    assert not any("PASSWORD" in key or "USER" in key for key in snapshot)  # only what a restore changes
    patches = [i for i, w in enumerate(vault.kube.writes) if w[:2] == ("patch", "Secret")]
    assert vault.kube.writes.index(("create", "Secret", SNAPSHOT)) < min(patches)
    metadata = vault.kube.secrets[(vault.namespace, SNAPSHOT)]["metadata"]
    assert metadata["ownerReferences"] == [run.owner]
    assert metadata["labels"] == {"walwarden.io/snapshot-of": "restore-1"}


def test_a_second_pass_keeps_the_first_snapshot(vault, db_info):
    run = redirected(vault)
    reconfigure(run)
    first = vault.kube.secret(SNAPSHOT)
    reconfigure(vault.next_pass(run))  # the secrets now hold the new values
    assert vault.kube.secret(SNAPSHOT) == first


def test_only_consumers_that_kept_running_are_restarted(vault, db_info):
    run = redirected(vault)
    reconfigure(run)
    assert vault.kube.workload("orchestrator").template_annotations == {RESTARTED_AT: f"walwarden-reconfigure-{UID}"}
    assert vault.kube.workload("wallet").template_annotations == {}  # stopped: reads the new values at start
    reconfigure(vault.next_pass(run))
    assert vault.kube.workload("orchestrator").template_annotations[RESTARTED_AT] == f"walwarden-reconfigure-{UID}"


def test_a_consumer_that_does_not_exist_is_not_restarted(vault, db_info):
    del vault.kube.workloads[(vault.namespace, "orchestrator")]
    assert reconfigure(redirected(vault)).endswith("restarted nothing")


def test_a_missing_db_info_secret_fails_after_the_change_is_recorded(vault, db_info):
    wallet = next(name for name, service in db_info.items() if service == "wallet")
    del vault.kube.secrets[(vault.namespace, wallet)]
    run = redirected(vault)
    with pytest.raises(StepFailed) as failed:
        reconfigure(run)
    assert failed.value.reason == "SecretNotFound" and wallet in failed.value.message
    assert run.status.secrets_repointed is True  # the others were repointed: the undo must run


# --- the undo -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cause", list(UndoCause))
def test_nothing_repointed_nothing_to_put_back(vault, db_info, cause):
    run = redirected(vault)
    assert put_secrets_back(run, cause) is None
    assert vault.kube.writes == []


@pytest.mark.parametrize("cause", list(UndoCause))
def test_the_secrets_are_put_back_from_the_snapshot_and_the_services_kept_running_are_rolled(vault, db_info, cause):
    originals = {name: vault.kube.secret(name) for name in db_info}
    run = redirected(vault, dbPort=6432, dbName="vault_restored")
    reconfigure(run)
    again = vault.next_pass(run)
    assert put_secrets_back(again, cause) == "db-info secrets restored from the snapshot"
    assert {name: vault.kube.secret(name) for name in db_info} == originals
    assert again.status.secrets_repointed is False
    assert vault.kube.workload("orchestrator").template_annotations[RESTARTED_AT] == f"walwarden-rollback-{UID}"
    for service in ("policy-node0", "policy-node1", "policy-node2", "wallet", "nats"):
        assert vault.kube.workload(service).template_annotations == {}  # stopped: read the originals at start


def test_services_scale_up_had_started_on_the_new_database_are_stopped_before_the_secrets_go_back(
    vault, db_info, services_stopped
):
    originals = {name: vault.kube.secret(name) for name in db_info}
    run = redirected(vault)
    reconfigure(run)
    vault.kube.start_all(services_stopped)
    running_since(run, RestoreStep.SCALE_UP, 700)  # it started them; they did not come up in time
    again = vault.next_pass(run)
    with pytest.raises(Wait):
        put_secrets_back(again, UndoCause.FAILURE)  # stopping the wallet first
    assert vault.kube.workload("wallet").replicas == 0
    assert {name: vault.kube.secret(name) for name in db_info} != originals  # not before they are stopped
    vault.until_done(lambda: put_secrets_back(again, UndoCause.FAILURE))
    assert {name: vault.kube.secret(name) for name in db_info} == originals
    assert all(replicas == 0 for service, replicas in vault.kube.replicas().items() if service != "orchestrator")
    vault.kube.workload("wallet").replicas = 2  # ScaleDown's undo starts them again on the original
    put_secrets_back(vault.next_pass(again), UndoCause.FAILURE)  # the rollback's next pass
    assert vault.kube.workload("wallet").replicas == 2  # not stopped a second time


def test_putting_back_twice_changes_nothing_more(vault, db_info):
    run = redirected(vault)
    reconfigure(run)
    put_secrets_back(run, UndoCause.FAILURE)
    secrets = {name: vault.kube.secret(name) for name in db_info}
    put_secrets_back(vault.next_pass(run), UndoCause.FAILURE)
    assert {name: vault.kube.secret(name) for name in db_info} == secrets


def test_new_credentials_are_written_for_the_services_named_and_put_back_from_the_snapshot(vault, db_info):
    login = {"DB_USER": "wallet_prod", "DB_PASSWORD": "prod-secret"}
    vault.kube.add_secret("prod-wallet-login", login, labels={RESTORE_CREDENTIALS_LABEL: "true"})
    originals = {name: vault.kube.secret(name) for name in db_info}
    run = redirected(vault, credentials=[{"service": "wallet", "secretRef": {"name": "prod-wallet-login"}}])
    assert "with new logins for wallet" in reconfigure(run)
    wallet = next(name for name, service in db_info.items() if service == "wallet")
    assert (vault.kube.secret(wallet)["DB_USER"], vault.kube.secret(wallet)["DB_PASSWORD"]) == (
        "wallet_prod",
        "prod-secret",
    )
    others = [name for name in db_info if name != wallet]
    assert all(vault.kube.secret(name)["DB_USER"] == originals[name]["DB_USER"] for name in others)
    snapshot = vault.kube.secret(SNAPSHOT)
    assert snapshot[f"{wallet}.DB_PASSWORD"] == originals[wallet]["DB_PASSWORD"]  # kept to put back
    assert not any(key.endswith("DB_PASSWORD") for key in snapshot if not key.startswith(wallet))
    put_secrets_back(vault.next_pass(run), UndoCause.FAILURE)
    assert {name: vault.kube.secret(name) for name in db_info} == originals


def test_a_service_scaled_back_up_in_the_stop_window_stops_the_repoint_naming_who(vault, db_info):
    wallet = vault.kube.workload("wallet")
    wallet.replicas, wallet.replicas_manager = 1, "argocd-controller"
    wallet.annotations["argocd.argoproj.io/tracking-id"] = "vault-prod:apps/Deployment:vault/wallet"
    with pytest.raises(StepFailed) as failed:
        reconfigure(redirected(vault))
    assert failed.value.reason == "ServicesScaledUp"
    assert "wallet (1 replica(s) set by argocd-controller, tracked by Argo CD Application vault-prod" in (
        failed.value.message
    )
    assert "ignoreDifferences on /spec/replicas" in failed.value.message
    assert all(vault.kube.secret(name)["DB_HOST"] == "old-db.internal" for name in db_info)  # nothing repointed
