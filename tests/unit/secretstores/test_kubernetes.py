"""Kubernetes Secrets (secretstores/kubernetes.py), with a stand-in CoreV1Api."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest
from kubernetes.client.rest import ApiException

from walwarden.secretstores.base import DbInfoBackend, DbInfoError
from walwarden.secretstores.kubernetes import KubernetesSecrets
from walwarden.secretstores.synced import refresh_synced_copy

PASSWORD = "s3cr3t-Pa55word!"


# -- Kubernetes Secrets, with a stand-in CoreV1Api -------------------------------------------------


class FakeCore:
    def __init__(self, secrets: dict[str, dict[str, str]], deny: bool = False):
        self.secrets = secrets
        self.patches: list[tuple[str, dict]] = []
        self.deny = deny

    def read_namespaced_secret(self, name, namespace):
        if self.deny:
            raise ApiException(status=403, reason="Forbidden")
        if name not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data={k: base64.b64encode(v.encode()).decode() for k, v in self.secrets[name].items()})

    def patch_namespaced_secret(self, name, namespace, body):
        self.patches.append((name, body))
        self.secrets[name].update(body["stringData"])


def test_kubernetes_read_decodes_and_missing_is_none():
    backend = KubernetesSecrets(FakeCore({"s": {"DB_HOST": "a", "DB_PASSWORD": PASSWORD}}), "ns")
    assert isinstance(backend, DbInfoBackend)
    assert backend.read("s") == {"DB_HOST": "a", "DB_PASSWORD": PASSWORD}
    assert backend.read("other") is None


def test_kubernetes_update_patches_only_the_given_keys_once():
    core = FakeCore({"s": {"DB_HOST": "a", "DB_PASSWORD": PASSWORD}})
    backend = KubernetesSecrets(core, "ns")
    backend.update("s", {"DB_HOST": "b"})
    backend.update("s", {"DB_HOST": "b"})
    assert core.patches == [("s", {"stringData": {"DB_HOST": "b"}})]
    assert core.secrets["s"] == {"DB_HOST": "b", "DB_PASSWORD": PASSWORD}


def test_kubernetes_errors():
    with pytest.raises(DbInfoError) as missing:
        KubernetesSecrets(FakeCore({}), "ns").update("s", {"DB_HOST": "b"})
    assert missing.value.reason == "SecretNotFound" and "ns/s" in missing.value.message
    with pytest.raises(DbInfoError) as denied:
        KubernetesSecrets(FakeCore({}, deny=True), "ns").read("s")
    assert denied.value.reason == "AccessDenied"


def test_refresh_synced_copy_only_writes_an_existing_copy():
    core = FakeCore({"s": {"DB_HOST": "a", "DB_USER": "u"}})
    kube = KubernetesSecrets(core, "ns")
    assert refresh_synced_copy(kube, "s", {"DB_HOST": "b"}) is True
    assert core.secrets["s"] == {"DB_HOST": "b", "DB_USER": "u"}
    assert refresh_synced_copy(kube, "missing", {"DB_HOST": "b"}) is False
    assert "missing" not in core.secrets
