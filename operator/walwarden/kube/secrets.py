"""Reading Secrets (values stay in memory; never logged) and creating the ones the operator owns;
reading ConfigMaps (the trusted public keys of origin checks) and keeping the operator's ledger
ConfigMaps (used approval tokens, restores that ran)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from walwarden.kube.api import Conflict, Kube, call


def read_secret(kube: Kube, namespace: str, name: str) -> dict[str, str] | None:
    secret = call(kube.core.read_namespaced_secret, name, namespace)
    if secret is None:
        return None
    return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


def read_config_map(kube: Kube, namespace: str, name: str) -> dict[str, str] | None:
    found = call(kube.core.read_namespaced_config_map, name, namespace)
    return None if found is None else dict(found.data or {})


class SecretNotOurs(Exception):
    """A Secret under a name the operator makes for a request exists, and is not that request's."""


def _require_owned(kube: Kube, namespace: str, name: str, owner: dict[str, Any]) -> None:
    """Its name is predictable: whoever may create Secrets could have made it first (a db-info
    snapshot a rollback would put back, a login's password, a signing key)."""
    found = call(kube.core.read_namespaced_secret, name, namespace)
    references = (found.metadata.owner_references or []) if found is not None and found.metadata else []
    if not any(reference.uid == owner.get("uid") for reference in references):
        raise SecretNotOurs(
            f"Secret {namespace}/{name} exists and is not owned by {owner.get('kind')} {owner.get('name')}"
        )


def ensure_secret(
    kube: Kube,
    namespace: str,
    name: str,
    data: dict[str, str],
    owner: dict[str, Any],
    labels: dict[str, str] | None = None,
) -> dict[str, str]:
    """Create the Secret unless it exists; return what it holds (the existing one wins, if it is
    owner's: SecretNotOurs otherwise)."""
    existing = read_secret(kube, namespace, name)
    if existing is not None:
        _require_owned(kube, namespace, name, owner)
        return existing
    try:
        call(
            kube.core.create_namespaced_secret,
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": name, "ownerReferences": [owner], "labels": labels or {}},
                "stringData": data,
            },
        )
    except Conflict:
        return read_secret(kube, namespace, name) or data
    return data


def delete_secret(kube: Kube, namespace: str, name: str) -> None:
    """Delete the Secret if it is there."""
    call(kube.core.delete_namespaced_secret, name, namespace)


LEDGER_ATTEMPTS = 5


def update_ledger(
    kube: Kube, namespace: str, name: str, change: Callable[[dict[str, str]], dict[str, str]]
) -> dict[str, str] | None:
    """Read-modify-replace a ConfigMap the operator keeps as a ledger (created the first time):
    `change` gets its data and returns the new data. A concurrent writer makes it read again;
    None when the ConfigMap stayed busy for LEDGER_ATTEMPTS tries (the caller waits)."""
    for _ in range(LEDGER_ATTEMPTS):
        existing = call(kube.core.read_namespaced_config_map, name, namespace)
        data = change(dict(existing.data or {}) if existing else {})
        metadata: dict[str, object] = {"name": name, "labels": {"app.kubernetes.io/managed-by": "walwarden"}}
        body = {"apiVersion": "v1", "kind": "ConfigMap", "data": data, "metadata": metadata}
        try:
            if existing is None:
                call(kube.core.create_namespaced_config_map, namespace, body)
            else:
                metadata["resourceVersion"] = existing.metadata.resource_version if existing.metadata else None
                call(kube.core.replace_namespaced_config_map, name, namespace, body)
            return data
        except Conflict:
            continue
    return None
