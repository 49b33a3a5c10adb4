"""The operator as a confused deputy: a requester, who may create RestoreRequests in the namespace
but not read its Secrets, names a Secret (the database admin's, say) for the operator to send
somewhere the request chooses: as a service's new login (tried on spec.redirect.dbHost, written
into the db-info secrets), or as the Verify auth header (sent to spec.verify.accountsUrl). Each
attack is refused before anything stops, naming the Secret and the label to add, never a value.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.unit.fakes import ADMIN, ADMIN_SECRET, REDIRECTED, deep_merge
from walwarden.api import RestoreRequestSpec
from walwarden.api.crdgen import build_crds
from walwarden.api.restore import RESTORE_CREDENTIALS_LABEL, VERIFY_HEADER_LABEL
from walwarden.restore.steps import verify as verify_step
from walwarden.restore.steps.preflight import preflight
from walwarden.restore.steps.verify import verify
from walwarden.settings import Settings
from walwarden.workflow.engine import StepFailed, Wait

VERIFY_JOB = "restore-1-verify-5e5f0e3c"
LOGINS_JOB = "restore-1-logins-5e5f0e3c"
LOGINS_SECRET = "restore-1-logins-5e5f0e3c"
# The Secret the requester may name but not read: the database admin's login (the vault's own).
ADMIN_PASSWORD = ADMIN["password"]
ACCOUNTS = "https://wallet.vault.svc:8443/api/v2/accounts"
HEADER = {"name": ADMIN_SECRET, "key": "password"}


def redirected_with_login(vault, secret: str):
    vault.add_db_info_secrets()
    credentials = [{"service": "wallet", "secretRef": {"name": secret}, "userKey": "user", "passwordKey": "password"}]
    return vault.restore_run(vault.restore_spec(**deep_merge(REDIRECTED, {"redirect": {"credentials": credentials}})))


def past_the_verify_job(vault, run):
    """Preflight's first pass starts the artifact's verify Job; the next looks at the logins."""
    with pytest.raises(Wait):
        preflight(run)
    vault.kube.finish_job(VERIFY_JOB)
    return vault.next_pass(run)


def refused_in_preflight(run) -> StepFailed:
    with pytest.raises(StepFailed) as failed:
        preflight(run)
    return failed.value


# --- spec.redirect.credentials ---------------------------------------------------------------------


def test_the_admin_secret_named_as_a_new_login_is_refused_before_any_login_is_tried(vault):
    run = past_the_verify_job(vault, redirected_with_login(vault, ADMIN_SECRET))
    failure = refused_in_preflight(run)
    assert failure.reason == "SecretNotOptedIn"
    assert f"Secret {vault.namespace}/{ADMIN_SECRET}" in failure.message
    assert f"{RESTORE_CREDENTIALS_LABEL}=true" in failure.message and "kubectl label secret" in failure.message
    assert ADMIN_PASSWORD not in failure.message
    assert vault.kube.job(LOGINS_JOB) is None and vault.kube.secret(LOGINS_SECRET) is None  # nothing sent
    assert vault.kube.replicas()["wallet"] == 2


@pytest.mark.parametrize("labels", [{RESTORE_CREDENTIALS_LABEL: "false"}, {VERIFY_HEADER_LABEL: "true"}])
def test_another_label_or_value_is_not_an_opt_in(vault, labels):
    vault.kube.add_secret("wallet-login", {"user": "wallet_prod", "password": "p"}, labels=labels)
    failure = refused_in_preflight(past_the_verify_job(vault, redirected_with_login(vault, "wallet-login")))
    assert failure.reason == "SecretNotOptedIn"


def test_a_labelled_secret_of_another_namespace_is_not_used(vault):
    login = {"user": "wallet_prod", "password": "p"}
    vault.kube.add_secret("wallet-login", login, namespace="elsewhere", labels={RESTORE_CREDENTIALS_LABEL: "true"})
    failure = refused_in_preflight(past_the_verify_job(vault, redirected_with_login(vault, "wallet-login")))
    assert failure.reason == "SecretNotFound" and f"{vault.namespace}/wallet-login" in failure.message


def test_a_labelled_secret_is_tried_as_the_services_new_login(vault):
    login = {"user": "wallet_prod", "password": "prod-password"}
    vault.kube.add_secret("wallet-login", login, labels={RESTORE_CREDENTIALS_LABEL: "true"})
    run = past_the_verify_job(vault, redirected_with_login(vault, "wallet-login"))
    with pytest.raises(Wait):
        preflight(run)
    assert vault.kube.secret(LOGINS_SECRET)["4.password"] == "prod-password"


# --- the logins Job's TLS policy: the operator's, never the request's ---------------------------------


def logins_job_env(vault, settings: Settings | None = None) -> dict[str, str]:
    vault.add_db_info_secrets()
    run = vault.restore_run(vault.restore_spec(**REDIRECTED), settings=settings)
    run = past_the_verify_job(vault, run)
    with pytest.raises(Wait):
        preflight(run)
    container = vault.kube.job(LOGINS_JOB)["spec"]["template"]["spec"]["containers"][0]
    return {entry["name"]: entry["value"] for entry in container["env"] if "value" in entry}


def test_the_logins_job_verifies_the_servers_certificate_by_default(vault):
    env = logins_job_env(vault)
    assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"] == "system"


def test_a_relaxed_policy_comes_from_the_operators_settings(vault):
    env = logins_job_env(vault, vault.settings.model_copy(update={"redirect_login_ssl_mode": "disable"}))
    assert env["PGSSLMODE"] == "disable" and "PGSSLROOTCERT" not in env


# --- spec.verify.authHeaderSecretRef ---------------------------------------------------------------


def with_header(vault, **verify_spec):
    spec = {"accountsUrl": ACCOUNTS, "authHeaderSecretRef": HEADER, **verify_spec}
    return vault.restore_run(vault.restore_spec(verify=spec))


def test_an_auth_header_over_plain_http_is_refused_by_the_api(vault):
    spec = vault.restore_spec(verify={"accountsUrl": "http://listener.example:8080/", "authHeaderSecretRef": HEADER})
    with pytest.raises(ValidationError, match="accountsUrl, which must then be https://"):
        RestoreRequestSpec.model_validate(spec)
    restore_crd = next(crd for crd in build_crds() if crd["spec"]["names"]["kind"] == "RestoreRequest")
    schema = restore_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = schema["properties"]["spec"]["properties"]["verify"]["x-kubernetes-validations"]
    assert any("self.accountsUrl.startsWith('https://')" in rule["rule"] for rule in rules)


def test_plain_http_stays_allowed_without_a_header(vault):
    RestoreRequestSpec.model_validate(vault.restore_spec(verify={"accountsUrl": "http://wallet:8080/accounts"}))


def test_an_unlabelled_header_secret_is_refused_in_preflight_with_every_service_running(vault):
    failure = refused_in_preflight(with_header(vault))
    assert failure.reason == "SecretNotOptedIn"
    assert f"{VERIFY_HEADER_LABEL}=true" in failure.message and ADMIN_SECRET in failure.message
    assert ADMIN_PASSWORD not in failure.message
    assert vault.kube.job(VERIFY_JOB) is None and vault.kube.replicas()["wallet"] == 2


def test_verify_never_sends_an_unlabelled_header(vault, monkeypatch):
    sent: list[str] = []
    monkeypatch.setattr(verify_step, "_get", lambda url, headers: sent.append(url) or (200, b"[1]"))
    with pytest.raises(StepFailed) as failed:
        verify(with_header(vault))
    assert failed.value.reason == "SecretNotOptedIn" and sent == []


def test_a_labelled_header_secret_passes_preflight_and_is_sent(vault, monkeypatch):
    vault.kube.add_secret("wallet-api", {"token": "Bearer t"}, labels={VERIFY_HEADER_LABEL: "true"})
    run = with_header(vault, authHeaderSecretRef={"name": "wallet-api", "key": "token"})
    with pytest.raises(Wait):
        preflight(run)  # on to the verify Job
    sent: dict[str, dict[str, str]] = {}
    monkeypatch.setattr(verify_step, "_get", lambda url, headers: sent.update({url: headers}) or (200, b"[1]"))
    verify(run)
    assert sent[ACCOUNTS] == {"Authorization": "Bearer t"}
