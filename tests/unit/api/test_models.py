"""The API models: parsing, defaults, cross-field rules, topology and condition helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from walwarden.api import (
    API_VERSION,
    DEFAULT_TOPOLOGY,
    BackupPhase,
    BackupRequest,
    ConditionStatus,
    ConditionType,
    RestoreMode,
    RestorePhase,
    RestoreRequest,
    RestoreRequestSpec,
    RestoreRequestStatus,
    RestoreTarget,
    SecretBackend,
    StepState,
    Topology,
    format_timestamp,
    get_condition,
    is_finished,
    parse_timestamp,
    set_condition,
)
from walwarden.api.restore import (
    ARTIFACT_NEEDS_STORAGE,
    AZURE_KEY_VAULT_NEEDS_SETTINGS,
    EXACTLY_ONE_SOURCE,
    IN_PLACE_FORBIDS_REDIRECT,
    REDIRECTED_NEEDS_REDIRECT,
    REDIRECTED_NEEDS_TARGET,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)

BACKUP_BODY = {
    "apiVersion": API_VERSION,
    "kind": "BackupRequest",
    "metadata": {"name": "nightly", "namespace": "vault", "generation": 1},
    "spec": {
        "database": {"secretRef": {"name": "pg-admin"}, "databases": ["vault", "policy_db"]},
        "storage": {"s3": {"bucket": "vault-backups", "endpoint": "http://127.0.0.1:9000", "forcePathStyle": True}},
        "encryptorSecrets": [{"name": "emp"}],
    },
}


def restore_spec(**overrides) -> dict:
    spec = {"source": {"backupRef": {"name": "nightly"}}, "mode": "InPlace"}
    spec.update(overrides)
    return spec


REDIRECT = {"dbHost": "pg-new.vault.svc", "environment": "prod"}
TARGET = {"secretRef": {"name": "pg-new-admin"}}
STORAGE = {"s3": {"bucket": "vault-backups"}}


# --- BackupRequest ------------------------------------------------------------------------


def test_backup_request_parses_a_body_and_fills_defaults():
    request = BackupRequest.model_validate(BACKUP_BODY)
    assert (request.name, request.namespace, request.generation) == ("nightly", "vault", 1)
    spec = request.spec
    assert spec.database.secret_ref.name == "pg-admin"
    assert spec.storage.s3.region == "us-east-1"
    assert spec.storage.s3.prefix == ""
    assert spec.storage.s3.credentials_secret_ref is None
    assert spec.encryptor_secrets[0].key == "password"
    assert spec.quiesce is False
    assert spec.active_deadline_seconds == 3600
    assert spec.topology is None
    assert request.status is None


def test_backup_spec_dumps_back_to_camel_case_without_nulls():
    spec = BackupRequest.model_validate(BACKUP_BODY).spec.to_dict()
    assert spec["storage"]["s3"]["forcePathStyle"] is True
    assert "credentialsSecretRef" not in spec["storage"]["s3"]
    assert spec["activeDeadlineSeconds"] == 3600
    assert "topology" not in spec


@pytest.mark.parametrize(
    "patch",
    [
        {"database": {"secretRef": {"name": "pg-admin"}, "databases": []}},  # minItems 1
        {"database": {"secretRef": {"name": "pg-admin"}, "databases": ["1bad"]}},
        {"database": {"secretRef": {"name": "pg-admin"}, "databases": ["x" * 64]}},
        {"storage": {"s3": {"bucket": "No_Such"}}},
        {"storage": {"s3": {"bucket": "vault-backups", "endpoint": "minio:9000"}}},
        {"activeDeadlineSeconds": 59},
        {"quiesce": True, "databse": "typo"},  # spec forbids unknown keys
    ],
)
def test_backup_spec_rejects_invalid_values(patch):
    body = {**BACKUP_BODY, "spec": {**BACKUP_BODY["spec"], **patch}}
    with pytest.raises(ValidationError):
        BackupRequest.model_validate(body)


def test_backup_status_ignores_unknown_keys_and_reads_the_artifact():
    body = {
        **BACKUP_BODY,
        "status": {
            "phase": "Succeeded",
            "someFutureField": {"x": 1},
            "artifact": {
                "uri": "s3://vault-backups/nightly.dump",
                "manifestUri": "s3://vault-backups/nightly.manifest.json",
                "sha256": "a" * 64,
                "sizeBytes": 12345,
                "databases": ["vault"],
            },
        },
    }
    status = BackupRequest.model_validate(body).status
    assert status.phase == BackupPhase.SUCCEEDED
    assert status.artifact.size_bytes == 12345
    assert status.to_dict()["artifact"]["manifestUri"].endswith(".manifest.json")


def test_spec_is_frozen():
    spec = BackupRequest.model_validate(BACKUP_BODY).spec
    with pytest.raises(ValidationError):
        spec.quiesce = True


# --- RestoreRequest -----------------------------------------------------------------------


def test_restore_request_parses_a_minimal_in_place_body():
    body = {
        "apiVersion": API_VERSION,
        "kind": "RestoreRequest",
        "metadata": {"name": "r1"},
        "spec": restore_spec(),
    }
    spec = RestoreRequest.model_validate(body).spec
    assert spec.mode == RestoreMode.IN_PLACE
    assert spec.source.backup_ref.name == "nightly"
    assert spec.verify.timeout_seconds == 300 and spec.verify.compare_row_counts is True
    assert spec.session_policy.on_remaining == "Terminate" and spec.session_policy.wait_seconds == 60
    assert spec.dry_run is False and spec.encryptor_secrets == []


def test_restore_request_parses_a_full_redirected_body():
    spec = RestoreRequestSpec.model_validate(
        restore_spec(
            source={"artifact": "s3://vault-backups/prod/2025-03-01.dump"},
            storage=STORAGE,
            mode="Redirected",
            target={"secretRef": {"name": "pg-new-admin"}, "database": "vault"},
            redirect={
                **REDIRECT,
                "dbPort": 6432,
                "secretBackend": "AWSSecretsManager",
                "aws": {"region": "eu-west-1"},
            },
            verify={
                "healthUrl": "http://wallet.vault.svc:8080/health",
                "authHeaderSecretRef": {"name": "api", "key": "token"},
            },
            approvalToken="tok",
            encryptorSecrets=[{"name": "emp", "key": "emp"}],
            sessionPolicy={"onRemaining": "Wait", "waitSeconds": 0},
            topology={"stopTiers": [["wallet"]]},
        )
    )
    assert spec.redirect.secret_backend == SecretBackend.AWS_SECRETS_MANAGER
    assert spec.topology.database_services == DEFAULT_TOPOLOGY.database_services
    assert spec.wants_safety_backup() is False


AZURE = {"vaultUrl": "https://vault-prod.vault.azure.net", "credentialsSecretRef": {"name": "kv-principal"}}


def test_restore_request_parses_an_azure_key_vault_redirect():
    spec = RestoreRequestSpec.model_validate(
        restore_spec(
            mode="Redirected",
            target=TARGET,
            redirect={**REDIRECT, "secretBackend": "AzureKeyVault", "azureKeyVault": AZURE},
        )
    )
    assert spec.redirect.secret_backend == SecretBackend.AZURE_KEY_VAULT
    assert spec.redirect.azure_key_vault.vault_url == AZURE["vaultUrl"]
    assert spec.redirect.azure_key_vault.credentials_secret_ref.name == "kv-principal"
    assert spec.redirect.azure_key_vault.authority_host is None


def test_azure_key_vault_backend_needs_its_settings():
    with pytest.raises(ValidationError, match=AZURE_KEY_VAULT_NEEDS_SETTINGS.message.split(":")[0]):
        RestoreRequestSpec.model_validate(
            restore_spec(mode="Redirected", target=TARGET, redirect={**REDIRECT, "secretBackend": "AzureKeyVault"})
        )


@pytest.mark.parametrize(
    "azure",
    [
        {"vaultUrl": "http://vault-prod.vault.azure.net"},  # Key Vault speaks https only
        {"vaultUrl": "https://vault-prod.vault.azure.net/secrets/x"},  # the vault, not a secret
        {**AZURE, "clientSecret": "never-in-a-spec"},  # credentials come from a Secret only
        {"vaultUrl": AZURE["vaultUrl"], "credentialsSecretRef": {"name": "kv", "clientSecret": "no"}},
    ],
)
def test_azure_key_vault_settings_refuse_bad_urls_and_literal_credentials(azure):
    with pytest.raises(ValidationError):
        RestoreRequestSpec.model_validate(
            restore_spec(
                mode="Redirected",
                target=TARGET,
                redirect={**REDIRECT, "secretBackend": "AzureKeyVault", "azureKeyVault": azure},
            )
        )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (restore_spec(source={}), EXACTLY_ONE_SOURCE.message),
        (
            restore_spec(source={"backupRef": {"name": "nightly"}, "artifact": "s3://b/k.dump"}, storage=STORAGE),
            EXACTLY_ONE_SOURCE.message,
        ),
        (restore_spec(source={"artifact": "s3://b/k.dump"}), ARTIFACT_NEEDS_STORAGE.message),
        (restore_spec(mode="Redirected", target=TARGET), REDIRECTED_NEEDS_REDIRECT.message),
        (restore_spec(mode="Redirected", redirect=REDIRECT), REDIRECTED_NEEDS_TARGET.message),
        (restore_spec(redirect=REDIRECT), IN_PLACE_FORBIDS_REDIRECT.message),
    ],
)
def test_restore_cross_field_rules_give_the_actionable_message(spec, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RestoreRequestSpec.model_validate(spec)


@pytest.mark.parametrize(
    "spec",
    [
        {"source": {"backupRef": {"name": "nightly"}}},  # no mode
        restore_spec(mode="Sideways"),
        restore_spec(source={"artifact": "https://b/k.dump"}, storage=STORAGE),
        restore_spec(sessionPolicy={"onRemaining": "Terminate", "waitSeconds": 3601}),
        restore_spec(mode="Redirected", target=TARGET, redirect={**REDIRECT, "dbPort": 0}),
        restore_spec(mode="Redirected", target=TARGET, redirect={"dbHost": "pg"}),  # no environment
    ],
)
def test_restore_spec_rejects_invalid_values(spec):
    with pytest.raises(ValidationError):
        RestoreRequestSpec.model_validate(spec)


@pytest.mark.parametrize(
    ("mode", "strategy", "safety_backup", "wanted"),
    [
        ("InPlace", None, None, False),  # Switch keeps the database itself, renamed aside
        ("InPlace", "Switch", True, True),  # asked for explicitly
        ("InPlace", "Overwrite", None, True),
        ("InPlace", "Overwrite", False, False),
        ("Redirected", None, None, False),
        ("Redirected", None, True, True),
    ],
)
def test_safety_backup_defaults_by_strategy(mode, strategy, safety_backup, wanted):
    extra = {"target": TARGET, "redirect": REDIRECT} if mode == "Redirected" else {}
    if strategy:
        extra["strategy"] = strategy
    spec = RestoreRequestSpec.model_validate(restore_spec(mode=mode, safetyBackup=safety_backup, **extra))
    assert spec.wants_safety_backup() is wanted


@pytest.mark.parametrize(
    "changes",
    [
        {"mode": "Redirected", "target": TARGET, "redirect": REDIRECT, "strategy": "Switch"},
        {"strategy": "Overwrite", "previousDatabase": {"dropAfterSeconds": 0}},
        {"mode": "Redirected", "target": TARGET, "redirect": REDIRECT, "previousDatabase": {}},
        {"previousDatabase": {"dropAfterSeconds": -1}},
    ],
    ids=["strategy-on-redirected", "previous-with-overwrite", "previous-with-redirected", "negative-drop"],
)
def test_strategy_fields_that_do_not_apply_are_refused(changes):
    with pytest.raises(ValidationError):
        RestoreRequestSpec.model_validate(restore_spec(**changes))


def test_the_in_place_default_strategy_is_switch():
    assert RestoreRequestSpec.model_validate(restore_spec()).effective_strategy == "Switch"


def test_restore_status_round_trips_steps_plan_and_replicas():
    status = RestoreRequestStatus.model_validate(
        {
            "phase": "RolledBack",
            "currentStep": "ScaleDown",
            "steps": [{"name": "Validate", "state": "Succeeded", "startedAt": "2025-03-01T12:00:00Z"}],
            "originalReplicas": {"wallet": 2, "nats": 3},
            "plan": {
                "steps": ["Validate", "Preflight"],
                "services": [{"name": "wallet", "tier": 1, "replicas": 2}],
                "secrets": ["prod.vault.wallet.db-info"],
                "dataLossWindow": {"backupTime": "2025-03-01T00:00:00Z", "seconds": 43200.0},
            },
            "retiredField": True,
        }
    )
    assert status.phase == RestorePhase.ROLLED_BACK
    assert status.steps[0].state == StepState.SUCCEEDED
    dumped = status.to_dict()
    assert dumped["originalReplicas"] == {"wallet": 2, "nats": 3}
    assert dumped["plan"]["dataLossWindow"] == {"backupTime": "2025-03-01T00:00:00Z", "seconds": 43200.0}
    assert "retiredField" not in dumped


# --- Topology -----------------------------------------------------------------------------


def test_default_topology_is_the_built_in_profile():
    assert DEFAULT_TOPOLOGY.stop_tiers == [
        ["wallet"],
        ["policy-node0", "policy-node1", "policy-node2"],
        ["nats"],
    ]
    assert DEFAULT_TOPOLOGY.start_tiers() == [
        ["nats"],
        ["policy-node0", "policy-node1", "policy-node2"],
        ["wallet"],
    ]
    assert DEFAULT_TOPOLOGY.restart_after_reconfigure == ["orchestrator"]
    assert DEFAULT_TOPOLOGY.db_info_secret_name("prod", "vault", "wallet") == "prod.vault.wallet.db-info"


def test_start_tiers_is_a_copy():
    topology = Topology()
    topology.start_tiers()[0].append("intruder")
    assert topology.stop_tiers[-1] == ["nats"]


@pytest.mark.parametrize("template", ["{environment}.{namespace}.db-info", "{service}.{cluster}", "{service", "{}"])
def test_secret_name_template_needs_service_and_known_placeholders_only(template):
    with pytest.raises(ValidationError):
        Topology(secret_name_template=template)


def test_secret_name_template_accepts_custom_layouts():
    topology = Topology.model_validate({"secretNameTemplate": "db-{service}-{environment}"})
    assert topology.db_info_secret_name("qa", "ns", "wallet") == "db-wallet-qa"


# --- conditions and timestamps ------------------------------------------------------------


def test_set_condition_adds_then_keeps_transition_time_while_status_holds():
    conditions = set_condition([], ConditionType.PROGRESSING, True, "Running", "step 1", 1, now=T0)
    assert conditions[0].last_transition_time == "2025-03-01T12:00:00Z"
    later = set_condition(
        conditions, ConditionType.PROGRESSING, "True", "Running", "step 2", 2, now=T0 + timedelta(minutes=5)
    )
    assert len(later) == 1
    assert later[0].last_transition_time == "2025-03-01T12:00:00Z"
    assert (later[0].message, later[0].observed_generation) == ("step 2", 2)
    assert conditions[0].message == "step 1"  # the input list is not modified


def test_set_condition_moves_transition_time_when_status_changes_and_keeps_order():
    conditions = set_condition([], ConditionType.READY, False, "Pending", now=T0)
    conditions = set_condition(conditions, ConditionType.PROGRESSING, True, "Running", now=T0)
    done = set_condition(conditions, ConditionType.READY, True, "Succeeded", now=T0 + timedelta(hours=1))
    assert [c.type for c in done] == ["Ready", "Progressing"]
    assert done[0].status == ConditionStatus.TRUE
    assert done[0].last_transition_time == "2025-03-01T13:00:00Z"


def test_condition_helpers_accept_raw_status_dicts():
    raw = [
        {
            "type": "Failed",
            "status": "True",
            "reason": "ChecksumMismatch",
            "lastTransitionTime": "2025-03-01T12:00:00Z",
        }
    ]
    assert get_condition(raw, ConditionType.FAILED).reason == "ChecksumMismatch"
    assert get_condition(raw, ConditionType.READY) is None
    assert get_condition(None, ConditionType.READY) is None
    updated = set_condition(raw, ConditionType.FAILED, True, "ChecksumMismatch", "again", now=T0 + timedelta(days=1))
    assert updated[0].to_dict()["lastTransitionTime"] == "2025-03-01T12:00:00Z"


def test_condition_rejects_a_reason_that_is_not_camel_case():
    with pytest.raises(ValidationError):
        set_condition([], ConditionType.FAILED, True, "checksum mismatch!", now=T0)


@pytest.mark.parametrize(
    ("phase", "finished"),
    [
        ("Succeeded", True),
        ("Failed", True),
        (RestorePhase.ROLLED_BACK, True),
        ("Running", False),
        ("Pending", False),
        (None, False),
    ],
)
def test_is_finished(phase, finished):
    assert is_finished(phase) is finished


def test_timestamps_are_rfc3339_with_z():
    moment = datetime(2025, 3, 1, 13, 0, 0, 999, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == "2025-03-01T12:00:00Z"
    assert parse_timestamp("2025-03-01T12:00:00Z") == T0
    with pytest.raises(ValueError):
        format_timestamp(datetime(2025, 3, 1))


@pytest.mark.parametrize(
    "database",
    ["vault_walwarden_5e5f0e3c", "vault_pre_restore_202612071200_5e5f0e3c", "walwarden_drill_new_5e5f0e3c"],
)
def test_a_target_database_cannot_take_a_name_walwarden_makes_for_another_restore(database):
    """A drill squatting a running Switch's sibling or previous name would leave that switch in a
    state it does not know: such names are refused before anything runs."""
    with pytest.raises(ValidationError, match="a name Walwarden reserves"):
        RestoreTarget.model_validate({"secretRef": {"name": "admin"}, "database": database})
    RestoreTarget.model_validate({"secretRef": {"name": "admin"}, "database": "vault_drill"})
