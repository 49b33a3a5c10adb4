"""One backup or restore at a time per namespace: a Lease whose holder is the running request.

The lock has no expiry: it is held for as long as its holder exists and has not finished, which
survives operator restarts. A holder that was deleted or finished is taken over.
"""

from __future__ import annotations

from dataclasses import dataclass

from walwarden.api.common import GROUP, VERSION, is_finished
from walwarden.kube.api import Conflict, Kube, call

LOCK_NAME = "walwarden-lock"
PLURALS = {"BackupRequest": "backuprequests", "RestoreRequest": "restorerequests"}


@dataclass(frozen=True)
class Holder:
    kind: str
    name: str
    uid: str

    @property
    def identity(self) -> str:
        return f"{self.kind}/{self.name}/{self.uid}"

    @classmethod
    def parse(cls, identity: str | None) -> "Holder | None":
        parts = (identity or "").split("/")
        return cls(*parts) if len(parts) == 3 else None


def _holder_active(kube: Kube, namespace: str, holder: Holder) -> bool:
    plural = PLURALS.get(holder.kind)
    if plural is None:
        return False
    found = call(kube.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, holder.name)
    if found is None or found["metadata"]["uid"] != holder.uid:
        return False
    return not is_finished((found.get("status") or {}).get("phase"))


def acquire(kube: Kube, namespace: str, me: Holder, parent: Holder | None = None) -> Holder | None:
    """Take the lock; None when we hold it, else the active holder we have to wait for.
    A request whose `parent` holds the lock (a restore's own safety backup) runs under it."""
    lease = call(kube.coordination.read_namespaced_lease, LOCK_NAME, namespace)
    if lease is None:
        try:
            call(kube.coordination.create_namespaced_lease, namespace, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": LOCK_NAME, "labels": {"app.kubernetes.io/managed-by": "walwarden"}},
                "spec": {"holderIdentity": me.identity}})
            return None
        except Conflict:
            return acquire(kube, namespace, me, parent)
    holder = Holder.parse(lease.spec.holder_identity)
    if holder == me or (parent is not None and holder == parent):
        return None
    if holder is not None and _holder_active(kube, namespace, holder):
        return holder
    # Take over from a deleted or finished holder; the resourceVersion makes it atomic.
    try:
        call(kube.coordination.replace_namespaced_lease, LOCK_NAME, namespace, {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": LOCK_NAME, "resourceVersion": lease.metadata.resource_version,
                         "labels": lease.metadata.labels or {}},
            "spec": {"holderIdentity": me.identity}})
    except Conflict:
        return acquire(kube, namespace, me, parent)
    return None


def release(kube: Kube, namespace: str, me: Holder) -> None:
    lease = call(kube.coordination.read_namespaced_lease, LOCK_NAME, namespace)
    if lease is None or Holder.parse(lease.spec.holder_identity) != me:
        return
    try:
        call(kube.coordination.delete_namespaced_lease, LOCK_NAME, namespace,
             body={"preconditions": {"resourceVersion": lease.metadata.resource_version}})
    except Conflict:
        pass  # changed under us: whoever changed it owns it now
