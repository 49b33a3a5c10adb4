"""Locks as Leases whose holder is the running request: one backup or restore at a time per
namespace (LOCK_NAME), and the drill slots of a database server (in the operator's namespace, held
by requests of any namespace).

A lock has no expiry: it is held for as long as its holder exists and has not finished, which
survives operator restarts. A holder that was deleted or finished is taken over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from walwarden.api import backup as backup_api
from walwarden.api import restore as restore_api
from walwarden.api.common import GROUP, VERSION, is_finished
from walwarden.kube.api import Conflict, Kube, call, retry_on_conflict

LOCK_NAME = "walwarden-lock"
PLURALS = {backup_api.KIND: backup_api.PLURAL, restore_api.KIND: restore_api.PLURAL}


@dataclass(frozen=True)
class Holder:
    kind: str
    name: str
    uid: str
    namespace: str | None = None  # None: the lease's own namespace

    @property
    def identity(self) -> str:
        if self.namespace is None:
            return f"{self.kind}/{self.name}/{self.uid}"
        return f"{self.kind}/{self.namespace}/{self.name}/{self.uid}"

    @classmethod
    def parse(cls, identity: str | None) -> Holder | None:
        parts = (identity or "").split("/")
        if len(parts) == 4:
            return cls(parts[0], parts[2], parts[3], namespace=parts[1])
        return cls(*parts) if len(parts) == 3 else None


def _holder_active(kube: Kube, namespace: str, holder: Holder) -> bool:
    plural = PLURALS.get(holder.kind)
    if plural is None:
        return False
    where = holder.namespace or namespace
    found: Any = call(kube.custom.get_namespaced_custom_object, GROUP, VERSION, where, plural, holder.name)
    if found is None or found["metadata"]["uid"] != holder.uid:
        return False
    return not is_finished((found.get("status") or {}).get("phase"))


def acquire(
    kube: Kube, namespace: str, me: Holder, parent: Holder | None = None, lease_name: str = LOCK_NAME
) -> Holder | None:
    """Take the lock; None when we hold it, else the active holder we have to wait for.
    A request whose `parent` holds the lock (a restore's own safety backup) runs under it.
    Another writer racing us (HTTP 409) makes us read the lease again and decide afresh, at most
    CONFLICT_ATTEMPTS times; then StillConflicting, which ends the pass (kopf retries the handler)."""
    return retry_on_conflict(
        lambda: _try_acquire(kube, namespace, me, parent, lease_name), what=f"Lease {namespace}/{lease_name}"
    )


def _try_acquire(kube: Kube, namespace: str, me: Holder, parent: Holder | None, lease_name: str) -> Holder | None:
    """One read of the lease and at most one write; `Conflict` when another writer got there first."""
    lease = call(kube.coordination.read_namespaced_lease, lease_name, namespace)
    if lease is None:
        call(
            kube.coordination.create_namespaced_lease,
            namespace,
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": lease_name, "labels": {"app.kubernetes.io/managed-by": "walwarden"}},
                "spec": {"holderIdentity": me.identity},
            },
        )
        return None
    holder = Holder.parse(lease.spec.holder_identity if lease.spec else None)
    if holder == me or (parent is not None and holder == parent):
        return None
    if holder is not None and _holder_active(kube, namespace, holder):
        return holder
    # Take over from a deleted or finished holder; the resourceVersion makes it atomic.
    metadata = lease.metadata
    call(
        kube.coordination.replace_namespaced_lease,
        lease_name,
        namespace,
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": lease_name,
                "resourceVersion": metadata.resource_version if metadata else None,
                "labels": (metadata.labels if metadata else None) or {},
            },
            "spec": {"holderIdentity": me.identity},
        },
    )
    return None


def holder_of(kube: Kube, namespace: str, lease_name: str) -> Holder | None:
    """Who holds the lease (None when it does not exist)."""
    lease = call(kube.coordination.read_namespaced_lease, lease_name, namespace)
    return None if lease is None else Holder.parse(lease.spec.holder_identity if lease.spec else None)


def release(kube: Kube, namespace: str, me: Holder, lease_name: str = LOCK_NAME) -> None:
    lease = call(kube.coordination.read_namespaced_lease, lease_name, namespace)
    if lease is None or Holder.parse(lease.spec.holder_identity if lease.spec else None) != me:
        return
    try:
        call(
            kube.coordination.delete_namespaced_lease,
            lease_name,
            namespace,
            body={"preconditions": {"resourceVersion": lease.metadata.resource_version if lease.metadata else None}},
        )
    except Conflict:
        pass  # changed under us: whoever changed it owns it now
