"""The kubernetes clients the operator uses, and the one place API errors become decisions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")


@dataclass(frozen=True)
class Kube:
    core: client.CoreV1Api
    apps: client.AppsV1Api
    batch: client.BatchV1Api
    coordination: client.CoordinationV1Api
    custom: client.CustomObjectsApi

    @classmethod
    def connect(cls, kubeconfig: str | None = None) -> Kube:
        """In a pod: its service account; else the given kubeconfig (or $KUBECONFIG)."""
        if kubeconfig:
            api = config.new_client_from_config(config_file=kubeconfig)
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api = client.ApiClient()
        return cls(
            client.CoreV1Api(api),
            client.AppsV1Api(api),
            client.BatchV1Api(api),
            client.CoordinationV1Api(api),
            client.CustomObjectsApi(api),
        )


class Conflict(Exception):
    """Someone else changed or created the object first (HTTP 409)."""


def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Call the API; a missing object is None, a conflict is `Conflict`, anything else raises."""
    try:
        return function(*args, **kwargs)
    except ApiException as error:
        if error.status == 404:
            return None
        if error.status == 409:
            raise Conflict(error.reason) from None
        raise


def owner_reference(body: Any) -> dict[str, Any]:
    """Makes the request own what it creates, so deleting the request cleans up after it. Not
    blocking the owner's deletion: a request deleted mid-flight must reach its delete handler."""
    return dict(kopf.build_owner_reference(body, controller=True, block_owner_deletion=False))


# As client-go's retry.DefaultRetry: a handful, since each attempt reads the object afresh.
CONFLICT_ATTEMPTS = 5


class StillConflicting(Exception):
    """Others kept changing the object between our read and our write, on every attempt."""


def retry_on_conflict(action: Callable[[], T], attempts: int = CONFLICT_ATTEMPTS, *, what: str = "the object") -> T:
    """Run `action` (which reads, then writes) again while the write meets a conflict (HTTP 409),
    at most `attempts` times in all; then StillConflicting naming `what`, rather than retrying for
    ever. Each run of `action` must read what it writes afresh: a conflict means its read is stale
    (client-go's retry.RetryOnConflict)."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    for _ in range(attempts):
        try:
            return action()
        except Conflict:
            continue
    raise StillConflicting(
        f"{what}: still conflicting after {attempts} attempts (others kept changing it between our read and our write)"
    )
