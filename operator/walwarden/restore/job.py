"""The restore's runner Jobs: `verify` (download, hash, pg_restore --list: touches no database)
and `restore` (the same checks, then pg_restore into the target). Pure builders.

The Jobs hold no object-store credentials: the artifact comes through a short-lived presigned
GET URL, and even that is passed through a Secret (it is a bearer credential while it lives).
"""

from __future__ import annotations

from typing import Any

from walwarden.settings import OperatorConfig
from walwarden.kube.runner_job import database_env, job_name, runner_job, runner_labels, secret_env, short_uid

URL_ENV = "WALWARDEN_ARTIFACT_URL"
GO_URL_ENV = "WALWARDEN_GO_URL"
PARALLEL_JOBS = 2


def url_secret_name(name: str, uid: str, role: str) -> str:
    return f"{name[:36]}-{role}-url-{short_uid(uid)}"


def _artifact_args(sha256: str, size: int) -> list[str]:
    return ["--url-env", URL_ENV, "--sha256", sha256, "--size", str(size)]


def verify_job(*, name: str, namespace: str, uid: str, owner: dict, config: OperatorConfig, sha256: str,
               size: int, deadline_seconds: int = 3600) -> dict[str, Any]:
    env = [secret_env(URL_ENV, url_secret_name(name, uid, "verify"), "url")]
    return runner_job(name=job_name(name, uid, "verify"), namespace=namespace, labels=runner_labels(name, "verify"),
                      owner=owner, config=config, args=["verify", *_artifact_args(sha256, size)], env=env,
                      deadline_seconds=deadline_seconds)


def restore_job(*, name: str, namespace: str, uid: str, owner: dict, config: OperatorConfig, sha256: str,
                size: int, target_secret: str, database: str, clean: bool, role: str = "restore",
                go_sha256: str | None = None, go_timeout_seconds: int = 3600,
                deadline_seconds: int = 6 * 3600) -> dict[str, Any]:
    """With `go_sha256`, the Job is started before the services stop: it stages and verifies the
    artifact, then waits for the operator's go object (its URL under the Secret's key `go`)."""
    args = ["restore", *_artifact_args(sha256, size), "--database", database, "--jobs", str(PARALLEL_JOBS)]
    if clean:
        args.append("--clean")  # InPlace: pg_restore --clean --if-exists over the existing database
    env = [secret_env(URL_ENV, url_secret_name(name, uid, role), "url"), *database_env(target_secret)]
    if go_sha256:
        args += ["--go-url-env", GO_URL_ENV, "--go-sha256", go_sha256, "--go-timeout", str(go_timeout_seconds)]
        env.append(secret_env(GO_URL_ENV, url_secret_name(name, uid, role), "go"))
    return runner_job(name=job_name(name, uid, role), namespace=namespace, labels=runner_labels(name, role),
                      owner=owner, config=config, args=args, env=env, deadline_seconds=deadline_seconds)
