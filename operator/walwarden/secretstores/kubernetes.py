"""db-info secrets as Kubernetes Secrets in the vault's namespace."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from walwarden.secretstores.base import DbInfoError, changed_keys, check_values, server_text

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api
    from kubernetes.client.rest import ApiException


class KubernetesSecrets:
    """db-info secrets as Kubernetes Secrets in one namespace (a kubernetes CoreV1Api)."""

    kind = "Kubernetes Secret"

    def __init__(self, core_v1_api: CoreV1Api, namespace: str) -> None:
        self.core = core_v1_api
        self.namespace = namespace

    def read(self, name: str) -> dict[str, str] | None:
        from kubernetes.client.rest import ApiException

        try:
            secret = self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise self._error(error, name, "read", ()) from None
        return {
            key: base64.b64decode(value).decode("utf-8", errors="replace") for key, value in (secret.data or {}).items()
        }

    def update(self, name: str, values: dict[str, str]) -> None:
        from kubernetes.client.rest import ApiException

        check_values(values)
        current = self.read(name)
        if current is None:
            raise DbInfoError("SecretNotFound", f"Kubernetes Secret {self.namespace}/{name} does not exist")
        if not changed_keys(current, values):
            return
        try:
            # A strategic-merge patch of stringData: only these keys change, the others stay.
            self.core.patch_namespaced_secret(name, self.namespace, {"stringData": dict(values)})
        except ApiException as error:
            raise self._error(error, name, "patch", [*values.values(), *current.values()]) from None

    def _error(self, error: ApiException, name: str, verb: str, secrets: Iterable[str]) -> DbInfoError:
        where = f"Kubernetes Secret {self.namespace}/{name}"
        status = error.status or 0
        detail = _kubernetes_message(error, secrets)
        if status == 404:
            return DbInfoError("SecretNotFound", f"{where} does not exist")
        if status in (401, 403):
            return DbInfoError(
                "AccessDenied",
                f"the operator may not {verb} {where} (HTTP {status}): grant its "
                f"service account {verb} on secrets in {self.namespace}{detail}",
            )
        retryable = status in (0, 409, 429) or status >= 500
        return DbInfoError("KubernetesApiError", f"{verb} {where} failed (HTTP {status}){detail}", retryable=retryable)


def _kubernetes_message(error: ApiException, secrets: Iterable[str]) -> str:
    """The API server's message of `error`, scrubbed, as ": <message>" (or "" without one)."""
    text = ""
    try:
        text = json.loads(error.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        text = error.reason or ""
    text = server_text(text, secrets) if text else ""
    return f": {text}" if text else ""
