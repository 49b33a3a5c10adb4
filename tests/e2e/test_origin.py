"""Origin checks end to end on the real local stack (DESIGN §4): a backup whose manifest the operator
signs with an Ed25519 key, restored by artifact URI in an environment that trusts — or does not
trust — its public key. The restoring side holds only public keys: no Secret of the backup's."""

from __future__ import annotations

import json

from devstack.vault import ready_replicas
from tests.e2e.vaults import Vault, account_names
from walwarden.security import origin


def key_pair(vault: Vault, secret: str) -> tuple[str, str]:
    """A new Ed25519 key in Secret `secret` of the vault's namespace; returns (key id, public PEM)."""
    key = origin.generate_private_key()
    vault.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret},
            "stringData": {"privateKey": origin.private_key_pem(key)},
        }
    )
    return origin.key_id(key.public_key()), origin.public_key_pem(key.public_key())


def trusted_keys(vault: Vault, name: str, entries: dict[str, str]) -> None:
    vault.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": entries})


def by_uri(vault: Vault, name: str, uri: str, trusted: str) -> dict:
    return vault.restore_request(
        name,
        source={"artifact": uri, "trustedKeys": {"name": trusted}},
        storage=vault.storage(),
        target={"secretRef": {"name": "vault-db-admin"}, "database": vault.database},
        safetyBackup=False,
    )


def test_an_artifact_restored_by_uri_is_trusted_only_when_signed_by_a_trusted_key(vault):
    key_a, public_a = key_pair(vault, "origin-key-a")
    key_b, public_b = key_pair(vault, "origin-key-b")
    private_a = vault.cluster.kubectl_json(["get", "secret", "origin-key-a", "-n", vault.namespace])["data"]
    backup = vault.backup(originSigningKey={"name": "origin-key-a"})
    artifact = backup["status"]["artifact"]
    assert artifact["originKeyId"] == key_a
    bucket, manifest_key = artifact["manifestUri"].removeprefix("s3://").split("/", 1)
    manifest_text = vault.s3.client().get_object(Bucket=bucket, Key=manifest_key)["Body"].read().decode()
    manifest = json.loads(manifest_text)
    assert manifest["origin"]["keyId"] == key_a and manifest["origin"]["signature"].startswith("ed25519:")
    assert manifest["signature"].startswith("hmac-sha256:")  # the Job's own signature is kept
    # The private key stays in its Secret: not in S3, the Job, the status or the operator's log.
    job = vault.cluster.kubectl_json(["get", "job", backup["status"]["jobName"], "-n", vault.namespace])
    for text in (manifest_text, json.dumps(job), json.dumps(backup["status"]), vault.operator.log()):
        assert "PRIVATE KEY" not in text and private_a["privateKey"] not in text
    assert "origin-key-a" not in json.dumps(job)  # the Job does not even reference its Secret
    trusted_keys(vault, "trusted-b", {"other-env.pub": public_b})
    trusted_keys(vault, "trusted-a", {"backup-env.pub": public_a})
    original = account_names(vault.postgres.dsn(vault.database))

    # Only B trusted: refused in Validate, before any service stops or any Job runs.
    vault.apply(by_uri(vault, "untrusted", artifact["uri"], "trusted-b"))
    status = vault.wait_finished("restorerequests", "untrusted")["status"]
    assert status["phase"] == "Failed" and status["currentStep"] == "Validate", json.dumps(status, indent=1)
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Failed"] == ["OriginKeyNotTrusted"]
    assert key_a in status["message"] and key_b in status["message"] and "trusted-b" in status["message"]
    assert "Nothing was touched" in status["message"] and not status.get("originalReplicas")
    assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas
    jobs = vault.cluster.kubectl_json(["get", "jobs", "-n", vault.namespace, "-l", "walwarden.io/request=untrusted"])
    assert jobs["items"] == []

    # A trusted: restored, and the status says which key signed it and where it is trusted.
    vault.apply(by_uri(vault, "trusted", artifact["uri"], "trusted-a"))
    restore = vault.wait_finished("restorerequests", "trusted", timeout=300)
    status = restore["status"]
    assert status["phase"] == "Succeeded", vault.describe("restorerequests", "trusted")
    assert status["origin"] == {
        "keyId": key_a,
        "trustedKeys": f"ConfigMap {vault.namespace}/trusted-a",
        "entry": "backup-env.pub",
    }
    validate = next(step for step in status["steps"] if step["name"] == "Validate")
    assert f"signed by {key_a}" in validate["message"] and "backup-env.pub" in validate["message"]
    assert account_names(vault.postgres.dsn(vault.database)) == original
    assert ready_replicas(vault.cluster, vault.namespace) == vault.replicas
