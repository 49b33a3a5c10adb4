"""The Kubernetes copy a syncer keeps of a secret that lives elsewhere (AWS Secrets Manager, Azure
Key Vault).

A syncer (External Secrets Operator, the Secrets Store CSI driver...) refreshes that copy on its
own schedule. Writing the same keys into it at once, right after the source changed, is what the
syncer would do on its next refresh: the consumers restarted next read the new values instead of
a stale copy, and the syncer's next refresh writes the same values again.
"""

from __future__ import annotations

from walwarden.secretstores.base import DbInfoBackend, DbInfoError


def refresh_synced_copy(kube_backend: DbInfoBackend, name: str, values: dict[str, str]) -> bool:
    """After `values` went into Secrets Manager or Key Vault, write them into the Kubernetes Secret of the same
    name, if the syncer made one, at once — what the syncer would do on its next refresh — so the
    consumers restarted next read the new database. Returns whether that Secret existed (if not,
    the consumers read the store themselves, or the syncer has yet to create it)."""
    if kube_backend.read(name) is None:
        return False
    try:
        kube_backend.update(name, values)
    except DbInfoError as error:
        if error.reason == "SecretNotFound":  # deleted in between
            return False
        raise
    return True
