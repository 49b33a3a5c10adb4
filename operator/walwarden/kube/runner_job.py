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
    pod_labels = {**labels, **config.runner_pod_labels}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]},
        "spec": {
            "backoffLimit": 0,  # a dump is retried by a new request, never silently
            "activeDeadlineSeconds": deadline_seconds,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,  # the runner never talks to the API
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUNNER_UID,
                        "runAsGroup": RUNNER_UID,
                        "fsGroup": RUNNER_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "runner",
                            "image": config.runner_image,
                            "command": list(RUNNER_COMMAND),
                            "args": args,
                            "env": [*env, {"name": "HOME", "value": "/tmp"}],
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "256Mi"},
                                "limits": {"memory": "512Mi"},
                            },
                        }
                    ],
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
