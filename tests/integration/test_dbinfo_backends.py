"""The db-info backends against real servers on loopback: a Secrets Manager-compatible server
(moto's, devstack/secretsmanager.py) and the local kube-apiserver."""

from __future__ import annotations

import json
import secrets

import pytest
from kubernetes import client as k8s

from walwarden.secretstores import (
    AwsSecretsManager,
    DbInfoBackend,
    DbInfoError,
    KubernetesSecrets,
    make_aws_client,
    refresh_synced_copy,
)

pytestmark = pytest.mark.integration

PASSWORD = "Pw-" + secrets.token_urlsafe(12)
ORIGINAL = {
    "DB_HOST": "old-db.vault.internal",
    "DB_PORT": "5432",
    "DB_USER": "wallet",
    "DB_PASSWORD": PASSWORD,
    "DB_NAME": "vault",
    "SSL_MODE": "require",
}
SERVICES = ("orchestrator", "policy-node0", "policy-node1", "policy-node2", "wallet")


def secret_name(service: str = "wallet", namespace: str = "vault") -> str:
    return f"test-{secrets.token_hex(3)}.{namespace}.{service}.db-info"


@pytest.fixture
def core(cluster) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(cluster.api_client())


@pytest.fixture
def aws_backend(secrets_manager) -> AwsSecretsManager:
    return AwsSecretsManager(
        make_aws_client(
            secrets_manager.region, secrets_manager.endpoint, secrets_manager.access_key, secrets_manager.secret_key
        )
    )


def create_kube_secret(core, namespace: str, name: str, values: dict[str, str]) -> None:
    core.create_namespaced_secret(
        namespace, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": values}
    )


@pytest.fixture(params=["Kubernetes", "AWSSecretsManager"])
def backend_and_create(request, secrets_manager, aws_backend):
    """Each backend, with a function that creates a secret in it the way its owner would."""
    if request.param == "Kubernetes":
        core = k8s.CoreV1Api(request.getfixturevalue("cluster").api_client())
        namespace = request.getfixturevalue("namespace")
        return KubernetesSecrets(core, namespace), lambda name, values: create_kube_secret(
            core, namespace, name, values
        )
    return aws_backend, secrets_manager.create_secret


# -- the contract, for both backends -------------------------------------------------------------------


def test_read_update_and_merge_keep_unrelated_keys(backend_and_create):
    backend, create = backend_and_create
    assert isinstance(backend, DbInfoBackend)
    name = secret_name()
    create(name, ORIGINAL)
    assert backend.read(name) == ORIGINAL

    backend.update(name, {"DB_HOST": "new-db.vault.internal", "DB_PORT": "6432"})
    assert backend.read(name) == {**ORIGINAL, "DB_HOST": "new-db.vault.internal", "DB_PORT": "6432"}

    backend.update(name, {"DB_NAME": "restored"})  # a second change keeps the first
    assert backend.read(name) == {
        **ORIGINAL,
        "DB_HOST": "new-db.vault.internal",
        "DB_PORT": "6432",
        "DB_NAME": "restored",
    }


def test_all_five_secrets_repointed_and_back(backend_and_create):
    """What Reconfigure and rollback do: snapshot, repoint, restore the snapshot."""
    backend, create = backend_and_create
    environment = f"test-{secrets.token_hex(3)}"
    names = [f"{environment}.vault.{service}.db-info" for service in SERVICES]
    for service, name in zip(SERVICES, names, strict=False):
        create(name, {**ORIGINAL, "DB_USER": service})
    snapshot = {name: backend.read(name) for name in names}
    for name in names:
        backend.update(name, {"DB_HOST": "new-db.vault.internal"})
    assert {backend.read(name)["DB_HOST"] for name in names} == {"new-db.vault.internal"}
    for name in names:
        backend.update(name, {"DB_HOST": snapshot[name]["DB_HOST"]})
    assert {name: backend.read(name) for name in names} == snapshot


def test_missing_secret_reads_as_none_and_is_never_created(backend_and_create):
    backend, _ = backend_and_create
    name = secret_name()
    assert backend.read(name) is None
    with pytest.raises(DbInfoError) as missing:
        backend.update(name, {"DB_HOST": "new-db.vault.internal", "DB_PASSWORD": PASSWORD})
    assert missing.value.reason == "SecretNotFound" and name in missing.value.message
    assert PASSWORD not in str(missing.value)
    assert backend.read(name) is None


# -- AWS Secrets Manager -------------------------------------------------------------------------------


def _version_ids(secrets_manager, name: str) -> dict[str, list[str]]:
    versions = secrets_manager.client().list_secret_version_ids(SecretId=name)["Versions"]
    return {version["VersionId"]: version.get("VersionStages", []) for version in versions}


def test_aws_update_makes_one_new_current_version_and_keeps_the_previous(secrets_manager, aws_backend):
    name = secret_name()
    secrets_manager.create_secret(name, {**ORIGINAL, "DB_PORT": 5432, "POOL": {"max": 10}})
    aws_backend.update(name, {"DB_HOST": "new-db.vault.internal"})
    raw = secrets_manager.client()
    current = json.loads(raw.get_secret_value(SecretId=name)["SecretString"])
    previous = json.loads(raw.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")["SecretString"])
    # Untouched keys keep their JSON types: a number stays a number, an object an object.
    assert current == {**ORIGINAL, "DB_PORT": 5432, "POOL": {"max": 10}, "DB_HOST": "new-db.vault.internal"}
    assert previous["DB_HOST"] == "old-db.vault.internal"
    assert aws_backend.read(name)["POOL"] == '{"max":10}'

    versions = _version_ids(secrets_manager, name)
    aws_backend.update(name, {"DB_HOST": "new-db.vault.internal", "DB_PORT": "5432"})  # already so: no write
    assert _version_ids(secrets_manager, name) == versions


def test_aws_region_is_honoured(secrets_manager):
    name = secret_name()
    secrets_manager.create_secret(name, ORIGINAL)
    elsewhere = AwsSecretsManager(
        make_aws_client("us-east-2", secrets_manager.endpoint, secrets_manager.access_key, secrets_manager.secret_key)
    )
    assert elsewhere.read(name) is None


@pytest.mark.parametrize("text", [PASSWORD, json.dumps([PASSWORD, "x"]), '{"DB_PASSWORD": "' + PASSWORD])
def test_aws_secret_that_is_not_a_json_object(secrets_manager, aws_backend, text):
    name = secret_name()
    secrets_manager.create_secret(name, text)
    for action in (lambda: aws_backend.read(name), lambda: aws_backend.update(name, {"DB_HOST": "h"})):
        with pytest.raises(DbInfoError) as refused:
            action()
        assert refused.value.reason == "SecretNotJson" and name in refused.value.message
        assert PASSWORD not in str(refused.value)
    assert secrets_manager.client().get_secret_value(SecretId=name)["SecretString"] == text  # untouched


def test_aws_access_denied_is_clear_and_holds_no_values(secrets_manager):
    name = secret_name()
    secrets_manager.create_secret(name, ORIGINAL)
    read_only = secrets_manager.restricted_credentials(["secretsmanager:GetSecretValue"])
    nothing = secrets_manager.restricted_credentials(["secretsmanager:ListSecrets"])
    with secrets_manager.enforce_iam():
        reader = AwsSecretsManager(make_aws_client(secrets_manager.region, secrets_manager.endpoint, *read_only))
        assert reader.read(name) == ORIGINAL
        with pytest.raises(DbInfoError) as denied_write:
            reader.update(name, {"DB_HOST": "new-db.vault.internal"})

        stranger = AwsSecretsManager(make_aws_client(secrets_manager.region, secrets_manager.endpoint, *nothing))
        with pytest.raises(DbInfoError) as denied_read:
            stranger.read(name)

        forged = AwsSecretsManager(
            make_aws_client(secrets_manager.region, secrets_manager.endpoint, "AKIAFORGED0000000000", "not-a-key")
        )
        with pytest.raises(DbInfoError) as unknown_key:
            forged.read(name)

    assert denied_write.value.reason == "AccessDenied"
    assert "PutSecretValue" in denied_write.value.message and name in denied_write.value.message
    assert denied_read.value.reason == "AccessDenied" and "GetSecretValue" in denied_read.value.message
    assert unknown_key.value.reason == "InvalidCredentials"
    for error in (denied_write.value, denied_read.value, unknown_key.value):
        assert not error.retryable
        for value in (PASSWORD, "new-db.vault.internal", "old-db.vault.internal"):
            assert value not in str(error) and value not in repr(error.args)
        assert error.__cause__ is None
    # Nothing was written, and the default (no IAM checks) is back.
    assert AwsSecretsManager(secrets_manager.client()).read(name) == ORIGINAL


def test_aws_unreachable_endpoint_is_retryable():
    from devstack.processes import free_port

    backend = AwsSecretsManager(make_aws_client("eu-west-1", f"http://127.0.0.1:{free_port()}", "k", "s"))
    with pytest.raises(DbInfoError) as unreachable:
        backend.read("x")
    assert unreachable.value.reason == "Unreachable" and unreachable.value.retryable


# -- the synced Kubernetes copy ------------------------------------------------------------------------


def test_refresh_synced_copy_after_a_secrets_manager_update(secrets_manager, aws_backend, core, namespace):
    kube = KubernetesSecrets(core, namespace)
    synced, unsynced = secret_name(namespace=namespace), secret_name(namespace=namespace)
    for name in (synced, unsynced):
        secrets_manager.create_secret(name, ORIGINAL)
    # The syncer made a copy of the first only (with a key of its own, which stays).
    create_kube_secret(core, namespace, synced, {**ORIGINAL, "SYNCED_BY": "external-secrets"})

    new = {"DB_HOST": "new-db.vault.internal", "DB_NAME": "restored"}
    for name in (synced, unsynced):
        aws_backend.update(name, new)
    assert refresh_synced_copy(kube, synced, new) is True
    assert refresh_synced_copy(kube, unsynced, new) is False

    assert kube.read(synced) == {**ORIGINAL, **new, "SYNCED_BY": "external-secrets"}
    assert kube.read(unsynced) is None  # not created: that is the syncer's business
    # The copy now agrees with Secrets Manager on every key the syncer copies.
    source = aws_backend.read(synced)
    assert {key: kube.read(synced)[key] for key in source} == source

    version = core.read_namespaced_secret(synced, namespace).metadata.resource_version
    assert refresh_synced_copy(kube, synced, new) is True  # again: no write
    assert core.read_namespaced_secret(synced, namespace).metadata.resource_version == version


def test_kubernetes_update_is_a_patch_of_the_given_keys_only(core, namespace):
    kube = KubernetesSecrets(core, namespace)
    name = secret_name(namespace=namespace)
    create_kube_secret(core, namespace, name, ORIGINAL)
    kube.update(name, {"DB_HOST": "new-db.vault.internal"})
    secret = core.read_namespaced_secret(name, namespace)
    assert set(secret.data) == set(ORIGINAL)
    assert kube.read(name) == {**ORIGINAL, "DB_HOST": "new-db.vault.internal"}
