"""Runner Jobs (`walwarden runner ...`), built as plain manifests: no API calls, easy to test.

Credentials reach the runner only by reference — secretKeyRef env entries — never as arguments,
so nothing secret shows in `kubectl get job -o yaml`, in events or in the operator's log.
"""

from __future__ import annotations

from typing import Any

from walwarden.runner.contract import RUNNER_COMMAND, Env
from walwarden.settings import OperatorConfig

RUNNER_UID = 10001
REQUEST_LABEL = "walwarden.io/request"
ROLE_LABEL = "walwarden.io/role"


def short_uid(uid: str) -> str:
    return uid.replace("-", "")[:8]


def secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def database_env(secret: str) -> list[dict[str, Any]]:
    """libpq's own variables, from the admin connection Secret's keys."""
    return [
        secret_env(Env.PG_HOST, secret, "host"),
        secret_env(Env.PG_PORT, secret, "port"),
        secret_env(Env.PG_USER, secret, "user"),
        secret_env(Env.PG_PASSWORD, secret, "password"),
        secret_env(Env.PG_SSLMODE, secret, "sslmode", optional=True),
    ]


def storage_env(credentials_secret: str | None) -> list[dict[str, Any]]:
    if not credentials_secret:
        return []  # the ambient identity (IRSA, instance profile)
    return [
        secret_env(Env.AWS_ACCESS_KEY_ID, credentials_secret, "accessKeyId"),
        secret_env(Env.AWS_SECRET_ACCESS_KEY, credentials_secret, "secretAccessKey"),
    ]


def runner_job(
    *,
    name: str,
    namespace: str,
    labels: dict[str, str],
    owner: dict,
    config: OperatorConfig,
    args: list[str],
    env: list[dict[str, Any]],
    deadline_seconds: int,
) -> dict[str, Any]:
    """A hardened, single-attempt Job running `walwarden runner ...`."""
    container = {
        "name": "runner",
        "image": config.runner_image,
        "command": list(RUNNER_COMMAND),
        "args": args,
        "env": env,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    }
    return hardened_job(
        name=name,
        namespace=namespace,
        labels=labels,
        owner=owner,
        pod_labels=config.runner_pod_labels,
        container=container,
        deadline_seconds=deadline_seconds,
    )


def hardened_job(
    *,
    name: str,
    namespace: str,
    labels: dict[str, str],
    owner: dict,
    pod_labels: dict[str, str],
    container: dict[str, Any],
    deadline_seconds: int,
) -> dict[str, Any]:
    """A single-attempt Job of one container, which gets every restriction the runner has: a
    non-root user, a read-only root filesystem with an empty /tmp, no privilege escalation, no
    capability, no service-account token, no other volume. The runner Jobs and a drill's check Job
    (whose image and command are the request author's) are built only through this."""
    hardened = {
        **container,
        "env": [*container.get("env", []), {"name": "HOME", "value": "/tmp"}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]},
        "spec": {
            "backoffLimit": 0,  # a dump is retried by a new request, never silently
            "activeDeadlineSeconds": deadline_seconds,
            "template": {
                "metadata": {"labels": {**labels, **pod_labels}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,  # a Job never talks to the API
                    "enableServiceLinks": False,  # no other Service's address in its environment
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUNNER_UID,
                        "runAsGroup": RUNNER_UID,
                        "fsGroup": RUNNER_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [hardened],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def job_name(name: str, uid: str, role: str) -> str:
    # Job names become pod label values: at most 63 characters.
    return f"{name[: 63 - len(role) - 11]}-{role}-{short_uid(uid)}"


def runner_labels(name: str, role: str) -> dict[str, str]:
    return {REQUEST_LABEL: name, ROLE_LABEL: role, "app.kubernetes.io/managed-by": "walwarden"}
