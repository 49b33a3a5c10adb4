"""The backup runner's Job, built from the request (pure: no API calls, easy to test)."""

from __future__ import annotations

from typing import Any

from walwarden.api import BackupRequestSpec
from walwarden.settings import OperatorConfig
from walwarden.kube.runner_job import (
    database_env,
    job_name,
    runner_job,
    runner_labels,
    secret_env,
    short_uid,
    storage_env,
)


def result_key_secret_name(name: str, uid: str) -> str:
    return f"{name[:40]}-walwarden-{short_uid(uid)}"


def artifact_prefix(spec: BackupRequestSpec, namespace: str, name: str, uid: str) -> str:
    """The object-key folder of one backup: <prefix>/<namespace>/<name>-<uid8>."""
    parts = [spec.storage.s3.prefix.strip("/"), namespace, f"{name}-{short_uid(uid)}"]
    return "/".join(part for part in parts if part)


def backup_job(*, spec: BackupRequestSpec, namespace: str, name: str, uid: str, owner: dict,
               config: OperatorConfig) -> dict[str, Any]:
    s3 = spec.storage.s3
    args = ["backup", "--bucket", s3.bucket, "--prefix", artifact_prefix(spec, namespace, name, uid),
            "--region", s3.region, "--backup-namespace", namespace, "--backup-name", name, "--backup-uid", uid]
    if s3.endpoint:
        args += ["--endpoint", s3.endpoint]
    if s3.force_path_style:
        args.append("--force-path-style")
    for database in spec.database.databases:
        args += ["--database", database]
    env = [*database_env(spec.database.secret_ref.name),
           *storage_env(s3.credentials_secret_ref.name if s3.credentials_secret_ref else None),
           secret_env("WALWARDEN_RESULT_KEY", result_key_secret_name(name, uid), "key")]
    for index, emp in enumerate(spec.encryptor_secrets):
        variable = f"WALWARDEN_EMP_{index}"
        env.append(secret_env(variable, emp.name, emp.key))
        args += ["--emp", f"{emp.name}/{emp.key}={variable}"]
    return runner_job(name=job_name(name, uid, "backup"), namespace=namespace, labels=runner_labels(name, "backup"),
                      owner=owner, config=config,
                      args=args, env=env, deadline_seconds=spec.active_deadline_seconds)
