"""Both sides of the Job contract: the operator's Job builders, parsed by the runner's own parser.

Each Job the operator builds (backup, verify, restore with and without a go signal) is read back
with `walwarden`'s real argument parser, and what the runner would read from it is compared with
what the operator meant: a flag or variable renamed on one side only fails here.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import pytest

from walwarden.api import BackupRequestSpec
from walwarden.backup.job import artifact_prefix, backup_job, result_key_secret_name
from walwarden.cli import build_parser
from walwarden.cli import runner as runner_cli
from walwarden.restore.job import restore_job, url_secret_name, verify_job
from walwarden.runner import contract
from walwarden.settings import OperatorConfig

UID = "1a2b3c4d-0000-1111-2222-333344445555"
CONFIG = OperatorConfig(runner_image="walwarden:test")
CREATED = datetime(2026, 12, 1, 2, 30, tzinfo=UTC)
SHA256 = "ab" * 32
GO_SHA256 = "cd" * 32
SPEC = BackupRequestSpec.model_validate(
    {
        "database": {"secretRef": {"name": "vault-db-admin"}, "databases": ["vault", "audit"]},
        "storage": {
            "s3": {
                "bucket": "vault-backups",
                "prefix": "prod/",
                "region": "eu-west-1",
                "endpoint": "http://127.0.0.1:9000",
                "forcePathStyle": True,
                "credentialsSecretRef": {"name": "s3-credentials"},
            }
        },
        "encryptorSecrets": [{"name": "emp", "key": "password"}, {"name": "emp-2", "key": "value"}],
    }
)


def container(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


def parse_as_the_runner(job: dict[str, Any]) -> argparse.Namespace:
    """What the container runs, parsed by the `walwarden` command the runner image starts."""
    command = container(job)["command"]
    assert command[0] == "walwarden"  # the console script (pyproject.toml)
    return build_parser().parse_args([*command[1:], *container(job)["args"]])


def env_refs(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Job's environment: name -> secretKeyRef."""
    return {
        entry["name"]: entry["valueFrom"]["secretKeyRef"] for entry in container(job)["env"] if "valueFrom" in entry
    }


def test_the_backup_job_parses_as_the_operator_meant():
    job = backup_job(
        spec=SPEC, namespace="vault", name="nightly", uid=UID, owner={"uid": UID}, config=CONFIG, created_at=CREATED
    )
    args = parse_as_the_runner(job)
    assert (args.command, args.runner_command) == ("runner", "backup")
    assert args.database == ["vault", "audit"]
    assert (args.bucket, args.region, args.endpoint, args.force_path_style) == (
        "vault-backups",
        "eu-west-1",
        "http://127.0.0.1:9000",
        True,
    )
    assert args.prefix == artifact_prefix(SPEC, "vault", "nightly", UID)
    assert (args.backup_namespace, args.backup_name, args.backup_uid) == ("vault", "nightly", UID)
    refs = env_refs(job)
    # Each --emp names a variable the Job really sets, from the EMP secret it names.
    assert args.emp == [("emp/password", "WALWARDEN_EMP_0"), ("emp-2/value", "WALWARDEN_EMP_1")]
    for name, variable in args.emp:
        secret, key = name.split("/")
        assert refs[variable] == {"name": secret, "key": key}
    # What the runner reads from the environment besides the flags.
    assert refs[contract.Env.RESULT_KEY]["name"] == result_key_secret_name("nightly", UID)
    for variable in (
        contract.Env.PG_HOST,
        contract.Env.PG_PORT,
        contract.Env.PG_USER,
        contract.Env.PG_PASSWORD,
        contract.Env.AWS_ACCESS_KEY_ID,
        contract.Env.AWS_SECRET_ACCESS_KEY,
    ):
        assert variable in refs


def test_the_verify_job_parses_as_the_operator_meant(monkeypatch):
    job = verify_job(name="r", namespace="vault", uid=UID, owner={"uid": UID}, config=CONFIG, sha256=SHA256, size=1234)
    args = parse_as_the_runner(job)
    assert (args.runner_command, args.sha256, args.size) == ("verify", SHA256, 1234)
    assert env_refs(job)[args.url_env] == {"name": url_secret_name("r", UID, "verify"), "key": "url"}
    monkeypatch.setenv(args.url_env, "https://s3.example/a?X-Amz-Signature=x")
    artifact = runner_cli._artifact(args)
    assert (artifact.url, artifact.sha256, artifact.size) == ("https://s3.example/a?X-Amz-Signature=x", SHA256, 1234)


@pytest.mark.parametrize("clean", [True, False])
def test_a_restore_job_without_a_go_restores_at_once(clean):
    job = restore_job(
        name="r",
        namespace="vault",
        uid=UID,
        owner={"uid": UID},
        config=CONFIG,
        sha256=SHA256,
        size=99,
        target_secret="target-admin",
        database="vault_copy",
        clean=clean,
        role="rollback",
    )
    args = parse_as_the_runner(job)
    assert (args.runner_command, args.database, args.clean) == ("restore", "vault_copy", clean)
    assert args.jobs == contract.DEFAULT_PARALLEL_JOBS and args.go_url_env is None
    assert runner_cli._go_signal(args) is None
    refs = env_refs(job)
    assert refs[args.url_env] == {"name": url_secret_name("r", UID, "rollback"), "key": "url"}
    assert refs[contract.Env.PG_PASSWORD] == {"name": "target-admin", "key": "password"}


def test_a_staged_restore_job_waits_for_the_go_the_operator_writes(monkeypatch):
    job = restore_job(
        name="r",
        namespace="vault",
        uid=UID,
        owner={"uid": UID},
        config=CONFIG,
        sha256=SHA256,
        size=99,
        target_secret="target-admin",
        database="vault",
        clean=True,
        go_sha256=GO_SHA256,
        go_timeout_seconds=7200,
    )
    args = parse_as_the_runner(job)
    refs = env_refs(job)
    assert refs[args.go_url_env] == {"name": url_secret_name("r", UID, "restore"), "key": "go"}
    monkeypatch.setenv(args.go_url_env, "https://s3.example/go?X-Amz-Signature=x")
    go = runner_cli._go_signal(args)
    assert (go.url, go.sha256, go.timeout_seconds) == ("https://s3.example/go?X-Amz-Signature=x", GO_SHA256, 7200)


def test_the_runner_refuses_a_flag_it_does_not_know(capsys):
    """The failure this file guards against: an operator-side flag the runner's parser lacks."""
    job = verify_job(name="r", namespace="vault", uid=UID, owner={"uid": UID}, config=CONFIG, sha256=SHA256, size=1)
    container(job)["args"] = [*container(job)["args"], "--renamed-flag", "x"]
    with pytest.raises(SystemExit) as exit_:
        parse_as_the_runner(job)
    assert exit_.value.code == contract.EXIT_INVALID_ARGUMENTS
    assert capsys.readouterr().err.splitlines()[-1].startswith("walwarden-error: InvalidArguments: ")
