"""The backup runner's Job, built from the request (pure: no API calls, easy to test).

Its arguments and environment names come from runner/contract.py, which `walwarden runner backup`
parses with: the two sides cannot spell a flag differently.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from walwarden.api import BackupRequestSpec, format_timestamp
from walwarden.api import backup as backup_api
from walwarden.kube.runner_job import (
    database_env,
    job_name,
    runner_job,
    runner_labels,
    secret_env,
    storage_env,
)
from walwarden.runner.contract import Command, Env, Flag, emp_argument, emp_env
from walwarden.settings import OperatorConfig
from walwarden.storage.s3 import Lock

ROLE = "backup"  # the Job's role label and name part (the operator's word, not the subcommand)
# The key of the result key Secret (result_key_secret_name) that holds the manifest's signing key.
RESULT_KEY_SECRET_KEY = "key"


def result_key_secret_name(name: str, uid: str) -> str:
    return backup_api.signing_key_secret_name(name, uid)


def artifact_prefix(spec: BackupRequestSpec, namespace: str, name: str, uid: str) -> str:
    """The object-key folder of one backup: <prefix>/<namespace>/<name>-<uid8>."""
    return backup_api.artifact_prefix(spec.storage.s3.prefix, namespace, name, uid)


def object_lock(spec: BackupRequestSpec, created_at: datetime) -> Lock | None:
    """The S3 Object Lock of this backup's dump and manifest: from the request's creation, so every
    pass (and the operator's manifest rewrite) computes the same date."""
    lock = spec.storage.s3.object_lock
    return Lock(lock.mode.value.upper(), lock.until(created_at)) if lock else None


def backup_job(
    *,
    spec: BackupRequestSpec,
    namespace: str,
    name: str,
    uid: str,
    owner: dict,
    config: OperatorConfig,
    created_at: datetime,
) -> dict[str, Any]:
    s3 = spec.storage.s3
    args = [
        Command.BACKUP,
        Flag.BUCKET,
        s3.bucket,
        Flag.PREFIX,
        artifact_prefix(spec, namespace, name, uid),
        Flag.REGION,
        s3.region,
        Flag.BACKUP_NAMESPACE,
        namespace,
        Flag.BACKUP_NAME,
        name,
        Flag.BACKUP_UID,
        uid,
    ]
    if s3.endpoint:
        args += [Flag.ENDPOINT, s3.endpoint]
    if s3.force_path_style:
        args.append(Flag.FORCE_PATH_STYLE)
    if lock := object_lock(spec, created_at):
        args += [Flag.OBJECT_LOCK_MODE, lock.mode, Flag.OBJECT_LOCK_UNTIL, format_timestamp(lock.until)]
    for database in spec.database.databases:
        args += [Flag.DATABASE, database]
    env = [
        *database_env(spec.database.secret_ref.name),
        *storage_env(s3.credentials_secret_ref.name if s3.credentials_secret_ref else None),
        secret_env(Env.RESULT_KEY, result_key_secret_name(name, uid), RESULT_KEY_SECRET_KEY),
    ]
    for index, emp in enumerate(spec.encryptor_secrets):
        variable = emp_env(index)
        env.append(secret_env(variable, emp.name, emp.key))
        args += [Flag.EMP, emp_argument(f"{emp.name}/{emp.key}", variable)]
    return runner_job(
        name=job_name(name, uid, ROLE),
        namespace=namespace,
        labels=runner_labels(name, ROLE),
        owner=owner,
        config=config,
        args=args,
        env=env,
        deadline_seconds=spec.active_deadline_seconds,
    )
