"""Verify (restore/steps/verify.py): the wallet's health and accounts answer, within
spec.verify.timeoutSeconds of every service being Ready again (status.servicesReadyAt)."""

from __future__ import annotations

import json

import pytest

from tests.unit.fakes import ago
from walwarden.api.restore import VERIFY_HEADER_LABEL
from walwarden.restore.steps import verify as verify_step
from walwarden.restore.steps.verify import has_data, verify
from walwarden.workflow.engine import StepFailed, Wait

HEALTH = "http://wallet.vault.svc:8080/health"
ACCOUNTS = "http://wallet.vault.svc:8080/api/v2/accounts"
ACCOUNTS_TLS = "https://wallet.vault.svc:8443/api/v2/accounts"
HEADER_REF = {"name": "wallet-api", "key": "token"}
ACCOUNTS_BODY = json.dumps({"accounts": [{"id": "a-1"}]}).encode()


class Wallet:
    """What the wallet's endpoints answer (no network): url -> (HTTP status, body)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, bytes]] = {
            HEALTH: (200, b"ok"),
            ACCOUNTS: (200, ACCOUNTS_BODY),
            ACCOUNTS_TLS: (200, ACCOUNTS_BODY),
        }
        self.headers: dict[str, dict[str, str]] = {}

    def get(self, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        self.headers[url] = dict(headers)
        return self.answers[url]


@pytest.fixture
def wallet(monkeypatch) -> Wallet:
    fake = Wallet()
    monkeypatch.setattr(verify_step, "_get", fake.get)
    return fake


def checked(vault, ready_seconds_ago: float | None = 10, **verify_spec):
    spec = {"healthUrl": HEALTH, "accountsUrl": ACCOUNTS, "timeoutSeconds": 300, **verify_spec}
    run = vault.restore_run(vault.restore_spec(verify={k: v for k, v in spec.items() if v is not None}))
    if ready_seconds_ago is not None:
        run.status.services_ready_at = ago(ready_seconds_ago)
    return run


def test_a_healthy_wallet_with_accounts_passes_and_the_restore_is_recorded_as_run(vault, wallet):
    assert verify(checked(vault)) == "pods Ready; health OK; accounts OK"
    assert len(vault.kube.config_maps[(vault.namespace, "walwarden-restores")]["data"]) == 1


def test_a_verify_that_fails_records_nothing(vault, wallet):
    wallet.answers[HEALTH] = (503, b"")
    with pytest.raises(StepFailed):
        verify(checked(vault, ready_seconds_ago=3600))
    assert (vault.namespace, "walwarden-restores") not in vault.kube.config_maps


def test_unset_urls_are_reported_as_not_checked(vault, wallet):
    message = verify(checked(vault, healthUrl=None, accountsUrl=None))
    assert message == (
        "pods Ready; health not checked (spec.verify.healthUrl is unset); "
        "accounts not checked (spec.verify.accountsUrl is unset)"
    )
    assert wallet.headers == {}


def test_an_unhealthy_wallet_is_waited_for_before_the_deadline(vault, wallet):
    wallet.answers[HEALTH] = (503, b"")
    with pytest.raises(Wait) as waiting:
        verify(checked(vault, ready_seconds_ago=299))
    assert waiting.value.message == f"health check {HEALTH} answered 503"
    assert waiting.value.delay == vault.settings.poll_seconds


def test_an_unhealthy_wallet_fails_after_the_deadline(vault, wallet):
    wallet.answers[HEALTH] = (503, b"")
    with pytest.raises(StepFailed) as failed:
        verify(checked(vault, ready_seconds_ago=301))
    assert failed.value.reason == "VerifyFailed"
    assert failed.value.message == f"health check {HEALTH} answered 503 after 300s"


def test_the_deadline_counts_from_when_the_services_were_ready(vault, wallet):
    wallet.answers[HEALTH] = (503, b"")
    with pytest.raises(Wait):
        verify(checked(vault, ready_seconds_ago=100, timeoutSeconds=120))
    with pytest.raises(StepFailed):
        verify(checked(vault, ready_seconds_ago=130, timeoutSeconds=120))


def test_a_wallet_that_cannot_be_reached_says_why(vault, wallet):
    wallet.answers[HEALTH] = (0, b"ConnectionRefusedError")
    with pytest.raises(Wait) as waiting:
        verify(checked(vault))
    assert waiting.value.message == f"health check {HEALTH} answered ConnectionRefusedError"


def test_accounts_without_data_are_waited_for_then_fail(vault, wallet):
    wallet.answers[ACCOUNTS] = (200, b'{"accounts": []}')
    with pytest.raises(Wait) as waiting:
        verify(checked(vault))
    assert waiting.value.message == f"accounts check {ACCOUNTS} answered 200 without data"
    with pytest.raises(StepFailed) as failed:
        verify(checked(vault, ready_seconds_ago=400))
    assert failed.value.message.endswith("without data after 300s")


def test_accounts_are_asked_with_the_auth_header_from_its_secret_health_without(vault, wallet):
    vault.kube.add_secret("wallet-api", {"token": "Bearer s3cr3t"}, labels={VERIFY_HEADER_LABEL: "true"})
    verify(checked(vault, accountsUrl=ACCOUNTS_TLS, authHeaderSecretRef=HEADER_REF))
    assert wallet.headers[ACCOUNTS_TLS] == {"Authorization": "Bearer s3cr3t"}
    assert wallet.headers[HEALTH] == {}


def test_a_missing_auth_header_secret_fails(vault, wallet):
    with pytest.raises(StepFailed) as failed:
        verify(checked(vault, accountsUrl=ACCOUNTS_TLS, authHeaderSecretRef=HEADER_REF))
    assert failed.value.reason == "SecretNotFound" and "the accounts auth header" in failed.value.message


@pytest.mark.parametrize(
    "body, expected",
    [
        (b'[{"id": 1}]', True),
        (b"[]", False),
        (b'{"accounts": [{"id": 1}]}', True),
        (b'{"data": []}', False),
        (b'{"count": 3}', True),
        (b'{"count": 0}', False),
        (b"{}", False),
        (b'"accounts"', False),
        (b"42", False),
        (b"not json", False),
        (b"", False),
    ],
)
def test_has_data(body, expected):
    assert has_data(body) is expected
