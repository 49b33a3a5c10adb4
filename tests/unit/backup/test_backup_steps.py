"""The backup's steps (backup/steps.py): Validate, Quiesce, Dump, VerifyArtifact, Resume."""

from __future__ import annotations

import json
import re

import pytest

from tests.unit.fakes import ADMIN_SECRET, BUCKET, EMP_SECRET, running_since
from walwarden.api import BackupStep, ConditionType
from walwarden.backup import job as backup_job
from walwarden.backup.steps import dump, quiesce, resume, start_quiesced_services, validate, verify_artifact
from walwarden.settings import StorageLocation
from walwarden.storage import manifest as manifests
from walwarden.storage.manifest import Manifest, signature_valid
from walwarden.workflow.engine import Skip, StepFailed, UndoCause, Wait

UID = "b0b0b0b0-1111-4222-8333-444455556666"
JOB = "backup-1-backup-b0b0b0b0"
KEY_SECRET = "backup-1-walwarden-b0b0b0b0"
PREFIX = "prod/vault/backup-1-b0b0b0b0"
POLICY = ("policy-node0", "policy-node1", "policy-node2")


def refused(step, run) -> StepFailed:
    with pytest.raises(StepFailed) as failed:
        step(run)
    return failed.value


def quiesced(vault, **changes):
    return vault.backup_run(vault.backup_spec(quiesce=True, **changes))


# --- Validate -----------------------------------------------------------------------------------


def test_a_right_request_is_validated(vault):
    assert validate(vault.backup_run()) == "Secrets checked"
    assert validate(quiesced(vault)) == "Secrets and services checked"
    assert vault.kube.writes == []


def test_the_admin_secret_must_be_complete(vault):
    vault.kube.add_secret(ADMIN_SECRET, {"host": "db.internal", "user": "postgres"})
    failure = refused(validate, vault.backup_run())
    assert failure.reason == "SecretIncomplete" and "port, password" in failure.message
    del vault.kube.secrets[(vault.namespace, ADMIN_SECRET)]
    assert refused(validate, vault.backup_run()).reason == "SecretNotFound"


def test_object_store_credentials_are_checked_only_when_named(vault):
    spec = vault.backup_spec(storage={"s3": {"credentialsSecretRef": {"name": "s3-creds"}}})
    failure = refused(validate, vault.backup_run(spec))
    assert failure.reason == "SecretNotFound" and "the object-store credentials" in failure.message
    vault.kube.add_secret("s3-creds", {"accessKeyId": "AKIA-TEST"})
    failure = refused(validate, vault.backup_run(spec))
    assert failure.reason == "SecretIncomplete" and "secretAccessKey" in failure.message
    vault.kube.add_secret("s3-creds", {"accessKeyId": "AKIA-TEST", "secretAccessKey": "s3-secret"})
    validate(vault.backup_run(spec))


def test_every_emp_secret_must_exist(vault):
    del vault.kube.secrets[(vault.namespace, EMP_SECRET)]
    failure = refused(validate, vault.backup_run())
    assert failure.reason == "SecretNotFound" and "an Encryptor Master Password" in failure.message


def test_quiesce_needs_the_services_a_plain_backup_does_not(vault):
    del vault.kube.workloads[(vault.namespace, "nats")]
    del vault.kube.workloads[(vault.namespace, "policy-node2")]
    validate(vault.backup_run())
    failure = refused(validate, quiesced(vault))
    assert failure.reason == "ServiceNotFound"
    assert "policy-node2, nats" in failure.message and "quiesce: false" in failure.message


# --- Quiesce ------------------------------------------------------------------------------------


def test_without_quiesce_the_services_keep_running(vault):
    with pytest.raises(Skip) as skipped:
        quiesce(vault.backup_run())
    assert "spec.quiesce is false" in str(skipped.value)
    assert vault.kube.writes == []


def test_quiesce_stops_the_services_in_order_recording_their_counts(vault):
    run = quiesced(vault)
    with pytest.raises(Wait):
        quiesce(run)
    assert vault.kube.workload("wallet").replicas == 0 and vault.kube.workload("nats").replicas == 3
    message = vault.until_done(lambda: quiesce(run))
    assert message == "stopped wallet → policy-node0/policy-node1/policy-node2 → nats"
    assert run.status.original_replicas == {"wallet": 2, **{p: 1 for p in POLICY}, "nats": 3}


def test_quiesce_fails_when_pods_do_not_go(vault):
    run = quiesced(vault)
    running_since(run, BackupStep.QUIESCE, vault.settings.stop_timeout_seconds + 1)
    assert refused(quiesce, run).reason == "ServicesStuckStopping"


# --- Dump ---------------------------------------------------------------------------------------


def test_the_dump_job_starts_with_a_new_signing_key_and_is_waited_for(vault):
    run = vault.backup_run()
    with pytest.raises(Wait) as waiting:
        dump(run)
    assert waiting.value.message == f"Job {JOB} is dumping vault to S3"
    assert run.status.job_name == JOB and vault.kube.job(JOB) is not None
    key = vault.kube.secret(KEY_SECRET)[backup_job.RESULT_KEY_SECRET_KEY]
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert vault.kube.secrets[(vault.namespace, KEY_SECRET)]["metadata"]["ownerReferences"] == [run.owner]


def test_a_later_pass_keeps_the_key_and_the_job(vault):
    run = vault.backup_run()
    with pytest.raises(Wait):
        dump(run)
    key = vault.kube.secret(KEY_SECRET)
    with pytest.raises(Wait):
        dump(vault.next_pass(run))
    assert vault.kube.secret(KEY_SECRET) == key  # the Job signs with the key it was started with
    assert [w for w in vault.kube.writes if w[1] in ("Job", "Secret")] == [
        ("create", "Secret", KEY_SECRET),
        ("create", "Job", JOB),
    ]


def test_a_failed_dump_fails_with_the_runners_reason(vault):
    run = vault.backup_run()
    with pytest.raises(Wait):
        dump(run)
    vault.kube.fail_job(JOB, "DatabaseUnreachable", "cannot connect to db.internal:5432")
    failure = refused(dump, vault.next_pass(run))
    assert failure.reason == "DatabaseUnreachable"
    assert failure.message == f"the backup Job {JOB} failed: cannot connect to db.internal:5432"


def test_a_service_scaled_back_up_during_a_quiesced_dump_fails_it(vault):
    run = quiesced(vault)
    vault.until_done(lambda: quiesce(run))
    with pytest.raises(Wait):
        dump(run)  # started with every service stopped
    wallet = vault.kube.workload("wallet")
    wallet.replicas, wallet.replicas_manager = 1, "kube-controller-manager"  # an autoscaler
    failure = refused(dump, vault.next_pass(run))
    assert failure.reason == "ServicesScaledUp"
    assert "stopped for the quiesced backup: wallet (1 replica(s) set by kube-controller-manager" in failure.message


def test_a_finished_dump_is_done(vault):
    run = vault.backup_run()
    with pytest.raises(Wait):
        dump(run)
    vault.kube.finish_job(JOB)
    assert dump(vault.next_pass(run)) == f"Job {JOB} finished"


# --- VerifyArtifact -----------------------------------------------------------------------------


def dumped(vault, run, databases=("vault",), key: str | None = "the-requests-key", **options):
    """What a finished Job leaves: the dumps and the manifest (signed with `key`) in S3, and this
    request's key Secret."""
    vault.kube.add_secret(KEY_SECRET, {"key": "the-requests-key"})
    manifest = vault.make_manifest(PREFIX, list(databases), **options)
    # The runner writes the request it was started for (cli/runner.py --backup-namespace, ...).
    identity = manifests.BackupIdentity(namespace=run.namespace, name=run.name, uid=run.uid)
    manifest = manifest.model_copy(update={"backup": identity})
    vault.write_manifest(PREFIX, manifest, key)
    return manifest


def test_a_signed_complete_artifact_is_recorded_in_the_status(vault):
    run = vault.backup_run(vault.backup_spec(database={"databases": ["vault", "audit"]}))
    manifest = dumped(vault, run, databases=("vault", "audit"))
    message = verify_artifact(run)
    first = manifest.databases[0]
    assert message == f"2 dump(s) verified in S3 against the signed manifest (sha256 {first.sha256[:12]}…)"
    artifact = run.status.artifact
    assert (artifact.uri, artifact.sha256) == (first.uri, first.sha256)
    assert artifact.manifest_uri == f"s3://{BUCKET}/{PREFIX}/manifest.json"
    assert artifact.size_bytes == sum(d.size_bytes for d in manifest.databases)
    assert artifact.databases == ["vault", "audit"] and [f.database for f in artifact.files] == ["vault", "audit"]
    assert (artifact.pg_server_version, artifact.completed_at) == (manifest.pg_server_version, manifest.completed_at)


def test_a_missing_manifest_means_no_backup(vault):
    vault.kube.add_secret(KEY_SECRET, {"key": "the-requests-key"})
    failure = refused(verify_artifact, vault.backup_run())
    assert failure.reason == "ManifestMissing" and f"{PREFIX}/manifest.json" in failure.message


@pytest.mark.parametrize("key", ["another-key", None])
def test_a_manifest_not_signed_with_this_requests_key_is_refused(vault, key):
    run = vault.backup_run()
    dumped(vault, run, key=key)
    failure = refused(verify_artifact, run)
    assert failure.reason == "ManifestNotSigned" and run.status.artifact is None


def test_without_its_key_secret_no_manifest_is_trusted(vault):
    run = vault.backup_run()
    dumped(vault, run)
    del vault.kube.secrets[(vault.namespace, KEY_SECRET)]
    assert refused(verify_artifact, run).reason == "ManifestNotSigned"


def test_a_manifest_without_every_requested_database_is_incomplete(vault):
    run = vault.backup_run(vault.backup_spec(database={"databases": ["vault", "audit"]}))
    dumped(vault, run, databases=("vault",))
    failure = refused(verify_artifact, run)
    assert failure.reason == "ArtifactIncomplete" and "['vault']" in failure.message


def test_a_dump_whose_size_in_s3_differs_from_the_manifest_is_refused(vault):
    run = vault.backup_run()
    manifest = dumped(vault, run)
    vault.s3.put(BUCKET, manifest.databases[0].key, b"cut sho")
    failure = refused(verify_artifact, run)
    assert failure.reason == "ArtifactSizeMismatch"
    assert f"is 7 bytes in S3 but the manifest says {manifest.databases[0].size_bytes}" in failure.message


def test_a_dump_missing_from_s3_is_refused(vault):
    run = vault.backup_run()
    dumped(vault, run, write_dumps=False)
    assert refused(verify_artifact, run).reason == "ArtifactSizeMismatch"


# --- Resume -------------------------------------------------------------------------------------


def stopped(vault, run):
    vault.until_done(lambda: quiesce(run))
    return run


def test_without_quiesce_nothing_is_resumed(vault):
    with pytest.raises(Skip) as skipped:
        resume(vault.backup_run())
    assert str(skipped.value) == "nothing was stopped"


def test_resume_starts_the_services_in_reverse_order_with_their_counts(vault):
    run = stopped(vault, quiesced(vault))
    with pytest.raises(Wait):
        resume(run)
    assert vault.kube.workload("nats").replicas == 3 and vault.kube.workload("wallet").replicas == 0
    message = vault.until_done(lambda: resume(run))
    assert message.startswith("started nats, policy-node0")
    assert vault.kube.replicas() == {"wallet": 2, **{p: 1 for p in POLICY}, "nats": 3, "orchestrator": 1}


def test_resume_after_a_failure_before_quiesce_touches_nothing(vault):
    run = quiesced(vault)  # e.g. Validate failed: Resume runs as clean-up
    assert resume(run) == "nothing was stopped"
    assert vault.kube.writes == []


def test_a_slow_resume_is_loud(vault):
    run = stopped(vault, quiesced(vault))
    running_since(run, BackupStep.RESUME, vault.settings.stop_timeout_seconds + 1)
    with pytest.raises(Wait):
        resume(run)
    assert run.status.condition_is_true(ConditionType.SERVICES_NOT_READY)


@pytest.mark.parametrize("cause", list(UndoCause))
def test_the_quiesce_undo_starts_what_it_stopped(vault, cause):
    assert start_quiesced_services(quiesced(vault), cause) is None
    run = stopped(vault, quiesced(vault))
    assert vault.until_done(lambda: start_quiesced_services(run, cause)) == (
        "the services it had stopped were started again with their original replica counts"
    )
    assert vault.kube.workload("wallet").replicas == 2


# --- the origin signature (backup/origin.py) ----------------------------------------------------


def origin_key(vault, name="origin-key", namespace=None):
    """A new Ed25519 private key in Secret `name` (key privateKey); returns it."""
    from walwarden.security import origin

    key = origin.generate_private_key()
    vault.kube.add_secret(name, {"privateKey": origin.private_key_pem(key)}, namespace=namespace or vault.namespace)
    return key


def signed_run(vault, **changes):
    return vault.backup_run(vault.backup_spec(originSigningKey={"name": "origin-key"}, **changes))


def stored_manifest(vault):
    return Manifest.model_validate_json(vault.s3.get(BUCKET, f"{PREFIX}/manifest.json"))


def test_validate_checks_the_origin_signing_key_before_the_dump(vault):
    from walwarden.security import origin

    key = origin_key(vault)
    message = validate(signed_run(vault))
    assert message == f"Secrets checked; the manifest's origin will be signed by {origin.key_id(key.public_key())}"
    assert "PRIVATE" not in message


@pytest.mark.parametrize(
    "secret, reason", [(None, "OriginKeyNotFound"), ({"privateKey": "not a key"}, "OriginKeyInvalid")]
)
def test_an_origin_signing_key_named_but_unusable_fails_validate(vault, secret, reason):
    if secret:
        vault.kube.add_secret("origin-key", secret)
    failure = refused(validate, signed_run(vault))
    assert failure.reason == reason and f"Secret {vault.namespace}/origin-key" in failure.message
    assert "not a key" not in failure.message


def test_verify_artifact_signs_the_manifests_origin_once_the_hmac_is_proven(vault):
    from walwarden.security import origin

    key = origin_key(vault)
    run = signed_run(vault)
    manifest = dumped(vault, run)
    message = verify_artifact(run)
    key_id = origin.key_id(key.public_key())
    assert message.endswith(f"; origin signed by {key_id}") and run.status.artifact.origin_key_id == key_id
    stored = stored_manifest(vault)
    assert stored.origin.key_id == key_id and signature_valid(stored, b"the-requests-key")  # the Job's HMAC kept
    assert origin.verify(key.public_key(), manifest.canonical_bytes(), stored.origin.signature)
    assert "PRIVATE" not in json.dumps(run.status.to_dict()) and vault.s3.puts == [(BUCKET, f"{PREFIX}/manifest.json")]
    verify_artifact(vault.next_pass(run))  # a resumed pass: already signed, not written again
    assert vault.s3.puts == [(BUCKET, f"{PREFIX}/manifest.json")]


def test_the_operators_origin_key_signs_requests_that_name_none(vault):
    from tests.unit.fakes import OPERATOR_NAMESPACE
    from walwarden.security import origin

    key = origin_key(vault, "walwarden-origin-key", namespace=OPERATOR_NAMESPACE)
    vault.settings = vault.settings.model_copy(update={"origin_signing_key_secret": "walwarden-origin-key"})
    run = vault.backup_run()
    dumped(vault, run)
    verify_artifact(run)
    assert stored_manifest(vault).origin.key_id == origin.key_id(key.public_key())


def test_without_an_origin_key_the_manifest_is_left_as_the_job_wrote_it(vault):
    run = vault.backup_run()
    dumped(vault, run)
    verify_artifact(run)
    assert vault.s3.puts == [] and stored_manifest(vault).origin is None and run.status.artifact.origin_key_id is None


def test_the_origin_key_signs_only_a_manifest_that_names_this_request(vault):
    """Its signature vouches for the namespace the manifest names: a manifest naming another
    request (another tenant's namespace) is not signed, whatever its HMAC."""
    origin_key(vault)
    run = signed_run(vault)
    dumped(vault, run)
    theirs = stored_manifest(vault).model_copy(update={"backup": manifests.BackupIdentity(namespace="another-tenant")})
    vault.write_manifest(PREFIX, theirs, "the-requests-key")
    with pytest.raises(StepFailed) as refused:
        verify_artifact(run)
    assert refused.value.reason == "ManifestNotThisBackups" and "another-tenant" in refused.value.message


def test_a_backup_to_a_bucket_or_server_of_the_requests_choosing_is_refused_before_the_dump(vault):
    """Whoever may create a BackupRequest could otherwise send the vault's dump to their own S3
    server: only the operator's storageLocations for the namespace are usable."""
    vault.settings = vault.settings.model_copy(
        update={"storage_locations": {"*": (StorageLocation(bucket=BUCKET, endpoint=None),)}}
    )
    spec = vault.backup_spec(storage={"s3": {"bucket": BUCKET, "endpoint": "https://attacker.example"}})
    with pytest.raises(StepFailed) as refused:
        validate(vault.backup_run(spec))
    assert refused.value.reason == "StorageNotAllowed" and "on https://attacker.example" in refused.value.message
    assert vault.kube.writes == []
    validate(vault.backup_run())  # the configured bucket on AWS
