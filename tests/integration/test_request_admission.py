"""The generated CRDs on a real API server: invalid requests are refused with a clear message,
valid ones are accepted, show useful columns, and the operator writes that it validated them."""

from __future__ import annotations

import json

import pytest

from devstack.pytest_kube import wait_for

pytestmark = pytest.mark.integration

BACKUP = {
    "apiVersion": "walwarden.io/v1alpha1",
    "kind": "BackupRequest",
    "metadata": {"name": "nightly"},
    "spec": {
        "database": {"secretRef": {"name": "vault-db-admin"}, "databases": ["vault"]},
        "storage": {"s3": {"bucket": "vault-backups", "endpoint": "http://127.0.0.1:9000"}},
    },
}
RESTORE = {
    "apiVersion": "walwarden.io/v1alpha1",
    "kind": "RestoreRequest",
    "metadata": {"name": "back-to-nightly"},
    "spec": {"mode": "InPlace", "source": {"backupRef": {"name": "nightly"}}},
}

TARGET = {"secretRef": {"name": "new-db-admin"}}
REDIRECT = {"dbHost": "db2", "environment": "prod"}
VAULT_URL = "https://vault-prod.vault.azure.net"


def with_spec(manifest: dict, **changes) -> dict:
    copy = json.loads(json.dumps(manifest))
    copy["spec"].update(changes)
    return copy


def create(cluster, namespace, manifest, check=True):
    return cluster.kubectl(["create", "-n", namespace, "-f", "-"], stdin=json.dumps(manifest), check=check)


@pytest.mark.parametrize(
    "manifest, expected",
    [
        (with_spec(RESTORE, mode="Redirected"), "Redirected restores need spec.redirect"),
        (with_spec(RESTORE, mode="Sideways"), 'Unsupported value: "Sideways"'),
        (
            with_spec(RESTORE, source={"backupRef": {"name": "a"}, "artifact": "s3://b/k.dump"}),
            "exactly one of backupRef",
        ),
        (with_spec(RESTORE, source={"artifact": "s3://bucket/key.dump"}), "spec.source.artifact needs spec.storage.s3"),
        (with_spec(RESTORE, redirect={"dbHost": "db2", "environment": "prod"}), "InPlace"),
        (
            with_spec(
                RESTORE, mode="Redirected", target=TARGET, redirect={**REDIRECT, "secretBackend": "AzureKeyVault"}
            ),
            "secretBackend AzureKeyVault needs spec.redirect.azureKeyVault",
        ),
        (
            with_spec(
                RESTORE,
                mode="Redirected",
                target=TARGET,
                redirect={**REDIRECT, "azureKeyVault": {"vaultUrl": VAULT_URL, "clientSecret": "never-in-a-spec"}},
            ),
            'unknown field "spec.redirect.azureKeyVault.clientSecret"',
        ),
        (with_spec(RESTORE, mode="Drill"), "Drill restores need spec.target"),
        (with_spec(RESTORE, mode="Drill", target=TARGET, redirect=REDIRECT), "a Drill never touches the vault"),
        (
            with_spec(RESTORE, mode="Drill", target=TARGET, approvalToken="t"),
            "and an approvalToken only to drill an artifact by URI",
        ),
        (with_spec(RESTORE, drill={"checks": []}), "spec.drill applies to mode Drill only"),
        (
            with_spec(
                RESTORE,
                mode="Drill",
                target=TARGET,
                drill={"checks": [{"name": "a", "sql": "SELECT 1", "expected": "1"}] * 2},
            ),
            "names a check twice",
        ),
        (with_spec(BACKUP, database={"secretRef": {"name": "x"}, "databases": []}), "spec.database.databases"),
        (with_spec(BACKUP, storage={"s3": {"bucket": "Not_A_Bucket"}}), "spec.storage.s3.bucket"),
        (with_spec(BACKUP, surprise=True), 'unknown field "spec.surprise"'),
    ],
    ids=[
        "redirected-without-redirect",
        "unknown-mode",
        "two-sources",
        "artifact-without-storage",
        "inplace-with-redirect",
        "azure-key-vault-without-settings",
        "azure-key-vault-literal-credentials",
        "drill-without-target",
        "drill-with-redirect",
        "drill-with-approval-token",
        "drill-settings-without-drill",
        "drill-check-named-twice",
        "no-databases",
        "bad-bucket",
        "unknown-field",
    ],
)
def test_invalid_requests_are_refused_by_the_api_server(cluster, crds, namespace, manifest, expected):
    result = create(cluster, namespace, manifest, check=False)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    kind = manifest["kind"].lower()
    assert cluster.kubectl_json(["get", kind, "-n", namespace])["items"] == []


def test_spec_is_immutable(cluster, crds, namespace):
    create(cluster, namespace, BACKUP)
    result = cluster.kubectl(
        ["patch", "backuprequest", "nightly", "-n", namespace, "--type=merge", "-p", '{"spec":{"quiesce":true}}'],
        check=False,
    )
    assert result.returncode != 0
    assert "spec is immutable" in result.stderr


def test_a_drills_check_job_is_a_container_spec_and_a_pod_template_is_refused(cluster, crds, namespace):
    job = {"image": "postgres:17", "command": ["psql", "-c", "SELECT 1"], "activeDeadlineSeconds": 120}
    create(cluster, namespace, with_spec(RESTORE, mode="Drill", target=TARGET, drill={"job": job}))
    stored = cluster.kubectl_json(["get", "restorerequest", "back-to-nightly", "-n", namespace])
    assert stored["spec"]["drill"]["job"]["command"] == job["command"]
    # A pod template would let the author run any pod with the operator's rights: the API server
    # refuses it (kubectl's strict field validation), with a ServiceAccount or a volume alike.
    escape = dict(job, template={"spec": {"serviceAccountName": "walwarden", "containers": []}})
    refused = with_spec(RESTORE, mode="Drill", target=TARGET, drill={"job": escape})
    refused["metadata"]["name"] = "escape"
    result = create(cluster, namespace, refused, check=False)
    assert result.returncode != 0 and 'unknown field "spec.drill.job.template"' in result.stderr
    changed = {"spec": {"drill": {"job": {"image": "busybox"}}}}
    result = cluster.kubectl(
        ["patch", "restorerequest", "back-to-nightly", "-n", namespace, "--type=merge", "-p", json.dumps(changed)],
        check=False,
    )
    assert result.returncode != 0
    assert "spec is immutable" in result.stderr


def test_valid_requests_are_accepted_listed_and_validated_by_the_operator(cluster, operator, namespace):
    create(cluster, namespace, BACKUP)
    create(cluster, namespace, RESTORE)

    def status(kind, name):
        return cluster.kubectl_json(["get", kind, name, "-n", namespace]).get("status") or {}

    # Both are valid for the API server; the operator then finds what the cluster lacks and says so.
    wait_for(lambda: status("backuprequest", "nightly").get("phase") == "Failed", 60, "the backup to fail")
    backup = status("backuprequest", "nightly")
    assert (
        "Secret" in backup["message"]
        and "vault-db-admin" in backup["message"]
        and "does not exist" in backup["message"]
    )
    wait_for(lambda: status("restorerequest", "back-to-nightly").get("phase") == "Failed", 60, "the restore to fail")
    restore = cluster.kubectl_json(["get", "restorerequest", "back-to-nightly", "-n", namespace])
    assert restore["status"]["observedGeneration"] == restore["metadata"]["generation"]
    [failed] = [c for c in restore["status"]["conditions"] if c["type"] == "Failed"]
    assert (failed["status"], failed["reason"]) == ("True", "SourceFailed")

    table = cluster.kubectl(["get", "restorerequests", "-n", namespace]).stdout
    header = table.splitlines()[0].split()
    assert header[:5] == ["NAME", "PHASE", "MODE", "SOURCE", "STEP"]
    assert table.splitlines()[1].split()[:5] == ["back-to-nightly", "Failed", "InPlace", "nightly", "Validate"]
    backups = cluster.kubectl(["get", "bkreq", "-n", namespace]).stdout
    assert backups.splitlines()[0].split()[:4] == ["NAME", "PHASE", "QUIESCE", "STEP"]

    def events() -> list[dict]:
        return cluster.kubectl_json(
            ["get", "events", "-n", namespace, "--field-selector", "involvedObject.name=back-to-nightly"]
        )["items"]

    wait_for(lambda: "Failed" in {e["reason"] for e in events()}, 60, "the restore's last Event")
    # Numbered in the order they were posted ([n] message), Events of the same second included;
    # no Event for the steps that never ran (the skipped Rollback among them).
    numbered = sorted(
        (int(e["message"][1 : e["message"].index("]")]), e["reason"]) for e in events() if e["reason"] != "Accepted"
    )
    assert numbered == list(
        enumerate(["ValidateStarted", "SourceFailed", "ReleaseLockStarted", "ReleaseLockSucceeded", "Failed"], 1)
    )
