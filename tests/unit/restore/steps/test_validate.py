"""Validate (restore/steps/validate.py): source, target, secrets, services and the approval token
are right before anything happens — and checking them changes nothing."""

from __future__ import annotations

import json
import time

import pytest

from tests.unit.fakes import ADMIN_SECRET, BUCKET, EMP_SECRET, OPERATOR_NAMESPACE, REDIRECTED, deep_merge
from walwarden.api import RestoreRequestSpec
from walwarden.api.restore import RESTORE_CREDENTIALS_LABEL
from walwarden.restore.approvals import USED_TOKENS_CONFIGMAP
from walwarden.restore.steps.validate import validate
from walwarden.security import origin, tokens
from walwarden.settings import StorageLocation
from walwarden.storage import manifest as manifests
from walwarden.workflow.engine import StepFailed, Wait

APPROVAL_KEY = "an-approval-key-of-at-least-16-bytes"


def refused(run) -> StepFailed:
    with pytest.raises(StepFailed) as failed:
        validate(run)
    return failed.value


def test_a_right_request_is_validated_without_changing_anything(vault):
    message = validate(vault.restore_run())
    assert (
        message == f"source nightly (vault, {vault.backup.manifest.databases[0].size_bytes} bytes) and target checked"
    )
    assert vault.kube.writes == [] and vault.s3.puts == []


# --- source -------------------------------------------------------------------------------------


def test_a_backup_still_running_is_waited_for(vault):
    vault.add_backup("later", phase="Running")
    with pytest.raises(Wait) as waiting:
        validate(vault.restore_run(vault.restore_spec(source={"backupRef": {"name": "later"}})))
    assert "BackupRequest later" in waiting.value.message and "Running" in waiting.value.message


@pytest.mark.parametrize(
    "name, phase, reason", [("broken", "Failed", "SourceFailed"), ("absent", None, "SourceNotFound")]
)
def test_a_failed_or_missing_backup_cannot_be_restored(vault, name, phase, reason):
    if phase:
        vault.add_backup(name, phase=phase)
    assert refused(vault.restore_run(vault.restore_spec(source={"backupRef": {"name": name}}))).reason == reason


def test_a_manifest_naming_a_connection_string_as_its_database_is_refused_without_echoing_it(vault):
    body = vault.backup.manifest.to_json()
    body["databases"][0]["name"] = "host=attacker.example dbname=x"
    vault.s3.objects[(BUCKET, manifests.manifest_key(vault.backup.prefix))] = json.dumps(body).encode()
    failure = refused(vault.restore_run())
    assert failure.reason == "ManifestInvalid" and "databases.0.name" in failure.message
    assert "attacker.example" not in failure.message and "Nothing was touched" in failure.message


def test_a_manifest_not_signed_by_the_backups_job_is_refused(vault):
    vault.write_manifest(vault.backup.prefix, vault.backup.manifest, key="someone-elses-key")
    failure = refused(vault.restore_run())
    assert failure.reason == "ManifestNotSigned" and "Nothing was touched" in failure.message


def test_a_manifest_describing_another_dump_than_the_backup_recorded_is_refused(vault):
    vault.kube.custom_object("backuprequests", "nightly")["status"]["artifact"]["files"][0]["sha256"] = "f" * 64
    assert refused(vault.restore_run()).reason == "ManifestChanged"


def test_a_manifest_that_cannot_be_read_is_refused(vault):
    del vault.s3.objects[(BUCKET, manifests.manifest_key(vault.backup.prefix))]
    failure = refused(vault.restore_run())
    assert failure.reason == "ManifestMissing" and "NoSuchKey" not in failure.message  # by class only
    assert "ClientError" in failure.message


def test_an_artifact_uri_must_be_listed_in_its_manifest(vault):
    dump = vault.backup.manifest.databases[0]
    spec = vault.restore_spec(
        source={"backupRef": None, "artifact": dump.uri.replace("vault.dump", "other.dump")},
        storage={"s3": {"bucket": BUCKET}},
        target={"secretRef": {"name": ADMIN_SECRET}},
    )
    assert refused(vault.restore_run(spec)).reason == "ArtifactNotInManifest"


def test_an_in_place_restore_of_an_artifact_uri_needs_a_target(vault):
    spec = vault.restore_spec(
        source={"backupRef": None, "artifact": vault.backup.manifest.databases[0].uri},
        storage={"s3": {"bucket": BUCKET}},
    )
    assert refused(vault.restore_run(spec)).reason == "TargetMissing"


# --- target, EMP and services -------------------------------------------------------------------


def test_the_in_place_target_defaults_to_the_backups_admin_secret(vault):
    del vault.kube.secrets[(vault.namespace, ADMIN_SECRET)]
    failure = refused(vault.restore_run())
    assert failure.reason == "SecretNotFound"
    assert f"{ADMIN_SECRET} (the target database)" in failure.message


def test_an_incomplete_target_secret_is_refused(vault):
    vault.kube.add_secret("restore-admin", {"host": "new-db.internal", "user": "postgres"})
    failure = refused(vault.restore_run(vault.restore_spec(**REDIRECTED)))
    assert failure.reason == "SecretIncomplete" and "port, password" in failure.message


def test_every_named_emp_secret_must_exist(vault):
    spec = vault.restore_spec(encryptorSecrets=[{"name": EMP_SECRET}, {"name": "second-emp", "key": "emp"}])
    failure = refused(vault.restore_run(spec))
    assert failure.reason == "SecretNotFound" and "second-emp" in failure.message


def test_services_of_the_topology_must_exist(vault):
    del vault.kube.workloads[(vault.namespace, "wallet")]
    del vault.kube.workloads[(vault.namespace, "nats")]
    failure = refused(vault.restore_run())
    assert failure.reason == "ServiceNotFound"
    assert "wallet, nats" in failure.message and "spec.topology" in failure.message


def test_a_topology_of_the_request_is_the_one_checked(vault):
    del vault.kube.workloads[(vault.namespace, "nats")]
    validate(vault.restore_run(vault.restore_spec(topology={"stopTiers": [["wallet"]]})))


# --- Redirected: the db-info secrets ------------------------------------------------------------


def test_redirected_needs_every_db_info_secret(vault):
    names = vault.add_db_info_secrets()
    validate(vault.restore_run(vault.restore_spec(**REDIRECTED)))
    missing = next(name for name, service in names.items() if service == "policy-node1")
    del vault.kube.secrets[(vault.namespace, missing)]
    failure = refused(vault.restore_run(vault.restore_spec(**REDIRECTED)))
    assert failure.reason == "SecretNotFound" and missing in failure.message and "Kubernetes" in failure.message


@pytest.mark.parametrize(
    "template",
    [
        "prod.victim-ns.{service}.db-info",  # another tenant's secrets, by name
        "prod.victim-{namespace}.{service}.db-info",  # {namespace} inside a part: `victim-ns` for namespace `ns`
        "{environment}-{namespace}-{service}",
    ],
)
def test_outside_kubernetes_a_secret_name_template_cannot_leave_the_requests_namespace(vault, template):
    spec = deep_merge(REDIRECTED, {"redirect": {"secretBackend": "AWSSecretsManager"}})
    run = vault.restore_run(vault.restore_spec(**spec, topology={"secretNameTemplate": template}))
    failure = refused(run)
    assert failure.reason == "SecretNameLeavesNamespace", failure.message
    assert "as in {environment}.{namespace}.{service}.db-info" in failure.message
    assert vault.kube.writes == [] and vault.s3.puts == []


def test_in_kubernetes_the_namespace_is_the_boundary_so_a_template_of_any_layout_is_accepted(vault):
    template = "db-{service}-{environment}"  # read from the request's own namespace only
    for service in ("orchestrator", "policy-node0", "policy-node1", "policy-node2", "wallet"):
        vault.kube.add_secret(f"db-{service}-prod", {"DB_HOST": "old-db.internal", "DB_NAME": "vault"})
    validate(vault.restore_run(vault.restore_spec(**REDIRECTED, topology={"secretNameTemplate": template})))


def test_a_db_info_secret_without_db_host_is_refused(vault):
    names = vault.add_db_info_secrets()
    vault.kube.add_secret(next(iter(names)), {"DB_PORT": "5432", "DB_NAME": "vault"})
    failure = refused(vault.restore_run(vault.restore_spec(**REDIRECTED)))
    assert failure.reason == "SecretNotFound" and "no DB_HOST" in failure.message


def test_in_place_does_not_look_at_db_info_secrets(vault):
    validate(vault.restore_run())  # none exist


# --- approval tokens ----------------------------------------------------------------------------


@pytest.fixture
def approvals(vault):
    """The operator runs with approvals required and its approval key."""
    vault.settings = vault.settings.model_copy(update={"approvals_required": True})
    vault.kube.add_secret("walwarden-approval-key", {"key": APPROVAL_KEY}, namespace=OPERATOR_NAMESPACE)
    return vault


def token(
    vault,
    *,
    backup="nightly",
    mode="InPlace",
    request="restore-1",
    spec=None,
    ttl=3600,
    now=None,
    key=APPROVAL_KEY,
) -> str:
    """A token for the request `request` with `spec` (the default restore spec unless given)."""
    approved = RestoreRequestSpec.model_validate(spec or vault.restore_spec())
    approval = tokens.Approval(
        backup=backup,
        sha256=vault.backup.manifest.databases[0].sha256,
        mode=mode,
        namespace=vault.namespace,
        request=request,
        spec=approved.approval_digest(),
    )
    return tokens.issue_token(key.encode(), approval, ttl_seconds=ttl, now=now)


def used_tokens(vault) -> dict[str, str]:
    found = vault.kube.config_maps.get((OPERATOR_NAMESPACE, USED_TOKENS_CONFIGMAP))
    return {} if found is None else found["data"]


def with_token(vault, value, **changes):
    return vault.restore_run(vault.restore_spec(approvalToken=value, **changes))


def test_an_approval_is_required_when_the_operator_says_so(approvals):
    failure = refused(approvals.restore_run())
    assert failure.reason == "ApprovalRequired" and "walwarden token issue" in failure.message


def test_a_dry_run_needs_no_approval(approvals):
    validate(approvals.restore_run(approvals.restore_spec(dryRun=True)))


def test_a_valid_token_is_consumed_once_and_recorded(approvals):
    value = token(approvals)
    run = with_token(approvals, value)
    validate(run)
    token_id = tokens.token_id(value)
    assert run.status.approval_token_id == token_id
    assert used_tokens(approvals)[token_id].startswith(f"RestoreRequest/vault/restore-1/{run.uid} expires ")
    assert (approvals.namespace, USED_TOKENS_CONFIGMAP) not in approvals.kube.config_maps  # not the requester's


def test_a_token_used_by_another_request_is_refused(approvals):
    value = token(approvals)
    validate(with_token(approvals, value))
    other = approvals.restore_run(
        approvals.restore_spec(approvalToken=value), name="restore-2", uid="0ther000-1111-4222-8333-444455556666"
    )
    failure = refused(other)
    assert failure.reason == "TokenMismatch" and "request restore-1, this request is restore-2" in failure.message
    assert other.status.approval_token_id is None
    assert other.status.approval_token_id is None


def test_a_token_cannot_be_reused_by_a_request_of_the_same_name_recreated(approvals):
    """Its ledger lives in the operator's namespace: a requester who deletes and recreates the
    request (or deletes a ConfigMap of their own namespace) cannot spend it twice."""
    value = token(approvals)
    validate(with_token(approvals, value))
    again = approvals.restore_run(
        approvals.restore_spec(approvalToken=value), name="restore-1", uid="0ther000-1111-4222-8333-444455556666"
    )
    approvals.kube.config_maps.pop((approvals.namespace, USED_TOKENS_CONFIGMAP), None)
    failure = refused(again)
    assert failure.reason == "TokenReused" and "RestoreRequest/vault/restore-1/" in failure.message


def test_a_resumed_request_is_not_refused_its_own_token(approvals):
    value = token(approvals)
    validate(with_token(approvals, value))
    validate(with_token(approvals, value))  # the first pass's status was lost: consumed again, by itself
    assert len(used_tokens(approvals)) == 1


def test_a_request_that_consumed_its_token_does_not_check_it_again(approvals):
    run = with_token(approvals, token(approvals))
    validate(run)
    writes = list(approvals.kube.writes)
    del approvals.kube.secrets[(OPERATOR_NAMESPACE, "walwarden-approval-key")]  # even the key is gone now
    validate(approvals.next_pass(run))
    assert approvals.kube.writes == writes


def test_a_dry_run_checks_a_token_without_consuming_it(approvals):
    value = token(approvals)
    run = with_token(approvals, value, dryRun=True)
    validate(run)
    assert run.status.approval_token_id == tokens.token_id(value) and used_tokens(approvals) == {}
    validate(with_token(approvals, value))  # the real request may still use it


def test_a_token_is_checked_and_consumed_even_when_approvals_are_not_required(approvals):
    approvals.settings = approvals.settings.model_copy(update={"approvals_required": False})
    value = token(approvals)
    validate(with_token(approvals, value))
    assert tokens.token_id(value) in used_tokens(approvals)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda v: token(v, backup="another-backup"), "TokenMismatch"),
        (lambda v: token(v, mode="Redirected"), "TokenMismatch"),
        # Front-run: the token approved this request as written; another target or strategy is another spec.
        (lambda v: token(v, spec=v.restore_spec(strategy=None)), "TokenMismatch"),  # Switch, not Overwrite
        (lambda v: token(v, spec=v.restore_spec(target={"secretRef": {"name": "elsewhere"}})), "TokenMismatch"),
        (lambda v: token(v, request="another-request"), "TokenMismatch"),
        (lambda v: "wwt1.eyJ4IjoxfQ.AAAA", "TokenFormatRetired"),
        (lambda v: token(v, ttl=60, now=time.time() - 3600), "TokenExpired"),
        (lambda v: token(v, key="not-the-operators-approval-key"), "TokenSignatureInvalid"),
        (lambda v: "wwt2.garbage", "TokenMalformed"),
    ],
)
def test_a_token_for_another_restore_or_expired_or_forged_is_refused(approvals, make, reason):
    failure = refused(with_token(approvals, make(approvals)))
    assert failure.reason == reason and failure.message.startswith("approval token refused: ")
    assert used_tokens(approvals) == {}


def test_without_the_approval_key_nothing_is_approved(approvals):
    del approvals.kube.secrets[(OPERATOR_NAMESPACE, "walwarden-approval-key")]
    failure = refused(with_token(approvals, token(approvals)))
    assert failure.reason == "ApprovalKeyMissing" and "walwarden-system/walwarden-approval-key" in failure.message


def test_a_key_too_short_to_be_safe_is_refused(approvals):
    approvals.kube.add_secret("walwarden-approval-key", {"key": "short"}, namespace=OPERATOR_NAMESPACE)
    failure = refused(with_token(approvals, token(approvals)))
    assert failure.reason == "ApprovalKeyInvalid"


def test_consuming_a_token_prunes_the_records_of_expired_ones(approvals):
    approvals.kube.core.create_namespaced_config_map(
        OPERATOR_NAMESPACE,
        {
            "metadata": {"name": USED_TOKENS_CONFIGMAP},
            "data": {"old": "RestoreRequest/r0/u0 expires 1000", "live": f"RestoreRequest/r1/u1 expires {2**40}"},
        },
    )
    value = token(approvals)
    validate(with_token(approvals, value))
    assert set(used_tokens(approvals)) == {"live", tokens.token_id(value)}


# --- origin: an artifact restored by URI, checked against the keys this environment trusts -------


def test_a_backup_ref_of_another_namespace_points_to_the_artifact_uri(vault):
    failure = refused(vault.restore_run(vault.restore_spec(source={"backupRef": {"name": "from-staging"}})))
    assert failure.reason == "SourceNotFound" and f"BackupRequest {vault.namespace}/from-staging" in failure.message
    assert "spec.source.artifact" in failure.message and "status.artifact.uri" in failure.message
    assert "another namespace or cluster" in failure.message


def signed_by(vault, key) -> None:
    """The nightly backup's manifest, its origin signed with `key` (as its operator would)."""
    signed = manifests.sign_origin(vault.backup.manifest, key)
    vault.write_manifest(vault.backup.prefix, signed, key=vault.backup.signing_key)


def trust(vault, *keys, name="trusted-keys", namespace=None, kind="ConfigMap") -> None:
    entries = {f"key-{i}.pub": origin.public_key_pem(key.public_key()) for i, key in enumerate(keys)}
    if kind == "Secret":
        vault.kube.add_secret(name, entries, namespace=namespace or vault.namespace)
    else:
        vault.kube.config_maps[(namespace or vault.namespace, name)] = {"data": entries, "rv": "1"}


def by_uri(vault, trusted_keys=None):
    source = {"backupRef": None, "artifact": vault.backup.manifest.databases[0].uri}
    if trusted_keys:
        source["trustedKeys"] = trusted_keys
    return vault.restore_run(
        vault.restore_spec(
            source=source, storage={"s3": {"bucket": BUCKET}}, target={"secretRef": {"name": ADMIN_SECRET}}
        )
    )


@pytest.mark.parametrize("kind", ["ConfigMap", "Secret"])
def test_an_artifact_signed_by_a_trusted_key_is_validated_naming_the_key(vault, key_a, key_b, kind):
    signed_by(vault, key_a)
    trust(vault, key_b, key_a, kind=kind)
    run = by_uri(vault, {"kind": kind, "name": "trusted-keys"})
    message = validate(run)
    key_id = origin.key_id(key_a.public_key())
    assert run.status.origin.to_dict() == {
        "keyId": key_id,
        "trustedKeys": f"{kind} {vault.namespace}/trusted-keys",
        "entry": "key-1.pub",
    }
    assert message.endswith(f"; origin signed by {key_id} ({kind} {vault.namespace}/trusted-keys, entry key-1.pub)")
    assert vault.kube.writes == [] and vault.s3.puts == []


def test_the_operators_trusted_keys_apply_to_requests_that_name_none(vault, key_a):
    signed_by(vault, key_a)
    trust(vault, key_a, name="walwarden-trusted-keys", namespace=OPERATOR_NAMESPACE)
    settings = vault.settings.model_copy(update={"trusted_keys_config_map": "walwarden-trusted-keys"})
    run = by_uri(vault)
    run.settings = settings
    validate(run)
    assert run.status.origin.trusted_keys == f"ConfigMap {OPERATOR_NAMESPACE}/walwarden-trusted-keys"


def test_without_trusted_keys_the_origin_is_not_checked_and_the_message_says_so(vault, key_a):
    signed_by(vault, key_a)
    run = by_uri(vault)
    message = validate(run)
    assert run.status.origin is None
    assert message.endswith(
        f"; origin not checked (its manifest names key {origin.key_id(key_a.public_key())}): "
        "no trusted keys (spec.source.trustedKeys) are configured"
    )


@pytest.mark.parametrize(
    "signer, trusted, reason",
    [
        ("b", "a", "OriginKeyNotTrusted"),
        (None, "a", "OriginNotSigned"),
        ("a", None, "TrustedKeysNotFound"),
    ],
)
def test_an_artifact_whose_origin_is_not_proven_is_refused_before_anything_is_touched(
    vault, key_a, key_b, signer, trusted, reason
):
    keys = {"a": key_a, "b": key_b}
    if signer:
        signed_by(vault, keys[signer])
    if trusted:
        trust(vault, keys[trusted])
    failure = refused(by_uri(vault, {"name": "trusted-keys"}))
    assert failure.reason == reason and "Nothing was touched" in failure.message
    assert f"ConfigMap {vault.namespace}/trusted-keys" in failure.message
    assert vault.kube.writes == []


def test_a_manifest_changed_after_its_origin_was_signed_is_refused(vault, key_a):
    signed = manifests.sign_origin(vault.backup.manifest, key_a)
    changed = signed.model_copy(update={"pg_server_version": "15.0"})
    vault.s3.put(BUCKET, manifests.manifest_key(vault.backup.prefix), json.dumps(changed.to_json()).encode())
    trust(vault, key_a)
    assert refused(by_uri(vault, {"name": "trusted-keys"})).reason == "OriginSignatureInvalid"


def test_trusted_keys_are_for_artifact_sources_only(vault):
    with pytest.raises(ValueError, match="trustedKeys applies to spec.source.artifact only"):
        vault.restore_run(vault.restore_spec(source={"trustedKeys": {"name": "trusted-keys"}}))


def test_once_the_services_stopped_the_proven_origin_stands_whatever_happens_to_the_trusted_keys(vault, key_a):
    from walwarden.restore.origin import check_origin

    signed_by(vault, key_a)
    trust(vault, key_a)
    run = by_uri(vault, {"name": "trusted-keys"})
    validate(run)
    proven = run.status.origin
    del vault.kube.config_maps[(vault.namespace, "trusted-keys")]
    with pytest.raises(StepFailed):  # before the stop: checked again, and refused
        check_origin(run, vault.backup.manifest)
    run.status.scaled_down_at = "2026-12-03T06:00:00Z"
    assert check_origin(run, vault.backup.manifest) == proven


def test_new_credentials_must_name_a_database_service_and_a_secret_with_both_keys(vault):
    vault.add_db_info_secrets()

    def refusal(credentials):
        spec = vault.restore_spec(**deep_merge(REDIRECTED, {"redirect": {"credentials": credentials}}))
        with pytest.raises(StepFailed) as failed:
            validate(vault.restore_run(spec))
        return failed.value

    failure = refusal([{"service": "nats", "secretRef": {"name": "logins"}}])
    assert failure.reason == "UnknownService" and "'nats'" in failure.message and "wallet" in failure.message
    failure = refusal([{"service": "wallet", "secretRef": {"name": "no-such-secret"}}])
    assert failure.reason == "SecretNotFound" and "no-such-secret" in failure.message
    vault.kube.add_secret("logins", {"DB_USER": "wallet_prod"}, labels={RESTORE_CREDENTIALS_LABEL: "true"})
    failure = refusal([{"service": "wallet", "secretRef": {"name": "logins"}}])
    assert failure.reason == "SecretIncomplete" and "DB_PASSWORD" in failure.message


def test_new_credentials_from_a_secret_not_labelled_for_it_are_refused_naming_the_label(vault):
    """A requester names the admin Secret as a service's new login: its password would go to the
    host the request names. Only a Secret labelled for it by whoever may write Secrets is used."""
    vault.add_db_info_secrets()
    vault.kube.add_secret("vault-admin", {"DB_USER": "postgres", "DB_PASSWORD": "the-admin-password"})
    credentials = [{"service": "wallet", "secretRef": {"name": "vault-admin"}}]
    spec = vault.restore_spec(**deep_merge(REDIRECTED, {"redirect": {"credentials": credentials}}))
    with pytest.raises(StepFailed) as failed:
        validate(vault.restore_run(spec))
    assert failed.value.reason == "SecretNotOptedIn"
    assert f"Secret {vault.namespace}/vault-admin" in failed.value.message
    assert f"kubectl label secret -n {vault.namespace} vault-admin walwarden.io/restore-credentials=true" in (
        failed.value.message
    )
    assert "the-admin-password" not in failed.value.message


def test_a_request_without_s3_credentials_cannot_use_the_operators_own_identity_unless_allowed(vault):
    """An artifact restore naming no credentials Secret would read any bucket the operator's cloud
    identity can: refused unless the operator's configuration lists the namespace."""
    vault.settings = vault.settings.model_copy(update={"ambient_identity_namespaces": ("another-team",)})
    failure = refused(by_uri(vault))
    assert failure.reason == "AmbientIdentityNotAllowed" and "credentialsSecretRef" in failure.message
    assert vault.s3.puts == []
    vault.settings = vault.settings.model_copy(update={"ambient_identity_namespaces": (vault.namespace,)})
    validate(by_uri(vault))


def test_a_signed_backup_of_another_namespace_is_refused_unless_the_operator_allows_it(vault, key_a):
    """The origin signature vouches for the namespace its manifest names: another tenant's backup,
    signed by the same operator-wide key, is not this namespace's to restore."""
    theirs = vault.backup.manifest.model_copy(update={"backup": manifests.BackupIdentity(namespace="another-tenant")})
    vault.write_manifest(vault.backup.prefix, manifests.sign_origin(theirs, key_a), key=vault.backup.signing_key)
    trust(vault, key_a)
    failure = refused(by_uri(vault, {"name": "trusted-keys"}))
    assert failure.reason == "OriginNamespaceNotAllowed" and "another-tenant" in failure.message
    allowed = {vault.namespace: ("another-tenant",)}
    vault.settings = vault.settings.model_copy(update={"artifact_source_namespaces": allowed})
    validate(by_uri(vault, {"name": "trusted-keys"}))


def test_an_artifact_somewhere_the_operator_does_not_give_the_namespace_is_refused_before_any_read(vault):
    vault.settings = vault.settings.model_copy(
        update={"storage_locations": {vault.namespace: (StorageLocation(bucket="other-bucket"),)}}
    )
    failure = refused(by_uri(vault))
    assert failure.reason == "StorageNotAllowed" and f"bucket {BUCKET} on AWS S3" in failure.message
    assert "operator.storageLocations" in failure.message


def test_an_origin_is_trusted_by_the_requests_own_keys_only_where_the_operator_allows_it(vault, key_a):
    signed_by(vault, key_a)
    trust(vault, key_a)
    vault.settings = vault.settings.model_copy(update={"request_trusted_keys_namespaces": ()})
    failure = refused(by_uri(vault, {"name": "trusted-keys"}))
    assert failure.reason == "RequestTrustedKeysNotAllowed" and "Nothing was touched" in failure.message
