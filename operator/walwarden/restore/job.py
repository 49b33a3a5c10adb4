"""The restore's runner Jobs: `verify` (download, hash, pg_restore --list: touches no database)
and `restore` (the same checks, then pg_restore into the target). Pure builders.

The Jobs hold no object-store credentials: the artifact comes through a short-lived presigned
GET URL, and even that is passed through a Secret (it is a bearer credential while it lives).
Arguments and environment names come from runner/contract.py, which the runner parses with.
`restore_job_of` fills the restore Job's builder from a run (its source and target).
"""

from __future__ import annotations

from typing import Any

from walwarden.kube.runner_job import database_env, job_name, runner_job, runner_labels, secret_env, short_uid
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import source_of
from walwarden.restore.target import target_secret_name
from walwarden.runner.contract import DEFAULT_GO_TIMEOUT_SECONDS, DEFAULT_PARALLEL_JOBS, Command, Env, Flag
from walwarden.settings import OperatorConfig

# The keys of the URL Secret (url_secret_name) the Jobs read their presigned URLs from.
URL_SECRET_URL_KEY = "url"  # the artifact's
URL_SECRET_GO_KEY = "go"  # the go object's (a staged restore Job's only)


def url_secret_name(name: str, uid: str, role: str) -> str:
    return f"{name[:36]}-{role}-url-{short_uid(uid)}"


def _artifact_args(sha256: str, size: int) -> list[str]:
    return [Flag.URL_ENV, Env.ARTIFACT_URL, Flag.SHA256, sha256, Flag.SIZE, str(size)]


def verify_job(
    *,
    name: str,
    namespace: str,
    uid: str,
    owner: dict,
    config: OperatorConfig,
    sha256: str,
    size: int,
    deadline_seconds: int = 3600,
) -> dict[str, Any]:
    role = "verify"  # the Job's role label and name part (the operator's word, not the subcommand)
    env = [secret_env(Env.ARTIFACT_URL, url_secret_name(name, uid, role), URL_SECRET_URL_KEY)]
    return runner_job(
        name=job_name(name, uid, role),
        namespace=namespace,
        labels=runner_labels(name, role),
        owner=owner,
        config=config,
        args=[Command.VERIFY, *_artifact_args(sha256, size)],
        env=env,
        deadline_seconds=deadline_seconds,
    )


def restore_job(
    *,
    name: str,
    namespace: str,
    uid: str,
    owner: dict,
    config: OperatorConfig,
    sha256: str,
    size: int,
    target_secret: str,
    database: str,
    clean: bool,
    role: str = "restore",
    go_sha256: str | None = None,
    go_timeout_seconds: int = DEFAULT_GO_TIMEOUT_SECONDS,
    deadline_seconds: int = 6 * 3600,
) -> dict[str, Any]:
    """With `go_sha256`, the Job is started before the services stop: it stages and verifies the
    artifact, then waits for the operator's go object (its URL under the Secret's key `go`)."""
    args = [
        Command.RESTORE,
        *_artifact_args(sha256, size),
        Flag.DATABASE,
        database,
        Flag.JOBS,
        str(DEFAULT_PARALLEL_JOBS),
    ]
    if clean:
        args.append(Flag.CLEAN)  # InPlace: pg_restore --clean --if-exists over the existing database
    env = [
        secret_env(Env.ARTIFACT_URL, url_secret_name(name, uid, role), URL_SECRET_URL_KEY),
        *database_env(target_secret),
    ]
    if go_sha256:
        args += [Flag.GO_URL_ENV, Env.GO_URL, Flag.GO_SHA256, go_sha256, Flag.GO_TIMEOUT, str(go_timeout_seconds)]
        env.append(secret_env(Env.GO_URL, url_secret_name(name, uid, role), URL_SECRET_GO_KEY))
    return runner_job(
        name=job_name(name, uid, role),
        namespace=namespace,
        labels=runner_labels(name, role),
        owner=owner,
        config=config,
        args=args,
        env=env,
        deadline_seconds=deadline_seconds,
    )


def restore_job_name(run: RestoreRun) -> str:
    """The restore Job's name (Build's and Stage's: a request runs one of them)."""
    return job_name(run.name, run.uid, "restore")


def restore_job_of(run: RestoreRun, *, database: str, clean: bool, **options: Any) -> dict[str, Any]:
    """The restore Job of `run`'s source into `database` on its target (options: go_sha256, ...)."""
    dump = source_of(run).dump
    return restore_job(
        **run.job_identity(),
        sha256=dump.sha256,
        size=dump.size_bytes,
        target_secret=target_secret_name(run),
        database=database,
        clean=clean,
        **options,
    )
