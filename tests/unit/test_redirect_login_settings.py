"""The operator's TLS policy for a Redirected restore's logins Job (settings.py): strict unless the
operator's configuration relaxes it, and a combination libpq refuses stops the operator at start-up."""

from __future__ import annotations

import pytest

from walwarden.settings import InvalidSettings, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in Settings.environment_variables().values():
        monkeypatch.delenv(name, raising=False)


def test_by_default_the_certificate_is_verified_against_the_system_roots():
    settings = Settings.from_environment()
    assert settings.redirect_login_ssl_mode == "verify-full"
    assert settings.redirect_login_ssl_root_cert_in_use == "system"


def test_the_policy_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("WALWARDEN_REDIRECT_LOGIN_SSL_MODE", "verify-ca")
    monkeypatch.setenv("WALWARDEN_REDIRECT_LOGIN_SSL_ROOT_CERT", "/etc/walwarden/db-ca.pem")
    settings = Settings.from_environment()
    assert settings.redirect_login_ssl_mode == "verify-ca"
    assert settings.redirect_login_ssl_root_cert_in_use == "/etc/walwarden/db-ca.pem"


def test_a_mode_that_verifies_nothing_uses_no_root_certificate(monkeypatch):
    monkeypatch.setenv("WALWARDEN_REDIRECT_LOGIN_SSL_MODE", "disable")
    assert Settings.from_environment().redirect_login_ssl_root_cert_in_use is None


@pytest.mark.parametrize(
    "variables, named",
    [
        ({"WALWARDEN_REDIRECT_LOGIN_SSL_MODE": "sometimes"}, "WALWARDEN_REDIRECT_LOGIN_SSL_MODE"),
        ({"WALWARDEN_REDIRECT_LOGIN_SSL_MODE": "verify-ca"}, "WALWARDEN_REDIRECT_LOGIN_SSL_ROOT_CERT"),
    ],
)
def test_a_policy_libpq_would_refuse_stops_the_operator_naming_the_variable(monkeypatch, variables, named):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidSettings, match=named):
        Settings.from_environment()
