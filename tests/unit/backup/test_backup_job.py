"""The backup Job: hardened, single attempt, and no secret value anywhere in it."""

from __future__ import annotations

from datetime import UTC, datetime

from walwarden.api import BackupRequestSpec
from walwarden.api.common import ObjectLock
from walwarden.backup.job import artifact_prefix, backup_job
from walwarden.kube.runner_job import job_name
from walwarden.settings import OperatorConfig

SPEC = BackupRequestSpec.model_validate(
    {
        "database": {"secretRef": {"name": "vault-db-admin"}, "databases": ["vault", "audit"]},
        "storage": {
            "s3": {
                "bucket": "vault-backups",
                "prefix": "prod/",
                "endpoint": "http://127.0.0.1:9000",
                "forcePathStyle": True,
                "credentialsSecretRef": {"name": "s3-credentials"},
            }
        },
        "encryptorSecrets": [{"name": "emp", "key": "password"}],
    }
)
UID = "1a2b3c4d-0000-1111-2222-333344445555"


CREATED = datetime(2026, 12, 1, 2, 30, tzinfo=UTC)


def build(config=None, spec=None):
    return backup_job(
        spec=spec or SPEC,
        namespace="vault",
        name="nightly",
        uid=UID,
        owner={"uid": UID},
        config=config or OperatorConfig(runner_image="walwarden:test"),
        created_at=CREATED,
    )


def test_the_job_runs_the_backup_runner_with_only_non_secret_arguments():
    job = build()
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["walwarden", "runner"]
    args = container["args"]
    assert args[0] == "backup"
    assert args[args.index("--prefix") + 1] == "prod/vault/nightly-1a2b3c4d"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--database"] == ["vault", "audit"]
    assert "--force-path-style" in args
    assert args[args.index("--emp") + 1] == "emp/password=WALWARDEN_EMP_0"
    # Every credential arrives by reference only.
    by_name = {e["name"]: e for e in container["env"]}
    for variable in (
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "WALWARDEN_RESULT_KEY",
        "WALWARDEN_EMP_0",
    ):
        assert "value" not in by_name[variable] and by_name[variable]["valueFrom"]["secretKeyRef"]
    assert by_name["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "vault-db-admin", "key": "password"}


def test_the_job_is_hardened_and_single_attempt():
    job = build()
    spec = job["spec"]
    pod = spec["template"]["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 3600
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    security = pod["containers"][0]["securityContext"]
    assert security == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert job["metadata"]["ownerReferences"] == [{"uid": UID}]


def test_runner_pod_labels_reach_the_pod_only():
    job = build(OperatorConfig(runner_image="x", runner_pod_labels={"devstack.walwarden.io/exec": "true"}))
    assert job["spec"]["template"]["metadata"]["labels"]["devstack.walwarden.io/exec"] == "true"
    assert "devstack.walwarden.io/exec" not in job["metadata"]["labels"]


def test_names_fit_kubernetes_limits():
    assert len(job_name("n" * 253, UID, "backup")) <= 63
    assert artifact_prefix(SPEC, "vault", "nightly", UID).startswith("prod/vault/")


def test_an_object_lock_locks_the_dump_and_manifest_until_days_after_the_requests_creation():
    locked = SPEC.model_copy(
        update={
            "storage": SPEC.storage.model_copy(
                update={"s3": SPEC.storage.s3.model_copy(update={"object_lock": ObjectLock(retain_days=30)})}
            )
        }
    )
    args = build(spec=locked)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--object-lock-mode") + 1] == "GOVERNANCE"
    assert args[args.index("--object-lock-until") + 1] == "2026-12-31T02:30:00Z"
    assert "--object-lock-mode" not in build()["spec"]["template"]["spec"]["containers"][0]["args"]
