"""Steps both workflows share: the namespace lock, and checking the Secrets a request names."""

from __future__ import annotations

from walwarden.api import ConditionType, S3Storage, Topology
from walwarden.workflow.engine import Run, StepFailed, Wait
from walwarden.kube import leases as locks
from walwarden.kube.secrets import read_secret
from walwarden.storage import s3 as storage


def meta(run: Run) -> tuple[str, str, str]:
    metadata = run.body["metadata"]
    return metadata["namespace"], metadata["name"], metadata["uid"]


def holder(run: Run) -> locks.Holder:
    _, name, uid = meta(run)
    return locks.Holder(run.kind, name, uid)


def parent_holder(run: Run) -> locks.Holder | None:
    """The request that created this one (a restore's safety backup), which may hold the lock."""
    for owner in run.body["metadata"].get("ownerReferences") or []:
        if owner.get("controller") and owner.get("kind") in locks.PLURALS:
            return locks.Holder(owner["kind"], owner["name"], owner["uid"])
    return None


def require_secret_keys(run: Run, name: str, keys: tuple[str, ...], purpose: str) -> dict[str, str]:
    namespace = meta(run)[0]
    data = read_secret(run.context.kube, namespace, name)
    if data is None:
        raise StepFailed("SecretNotFound", f"Secret {namespace}/{name} ({purpose}) does not exist; create it "
                                           f"with keys {', '.join(keys)}")
    missing = [key for key in keys if not data.get(key)]
    if missing:
        raise StepFailed("SecretIncomplete", f"Secret {namespace}/{name} ({purpose}) lacks the keys "
                                             f"{', '.join(missing)}")
    return data


def acquire_lock(run: Run) -> str:
    namespace = meta(run)[0]
    other = locks.acquire(run.context.kube, namespace, holder(run), parent=parent_holder(run))
    if other is not None:
        message = (f"waiting for {other.kind} {other.name} to finish: one backup or restore at a time "
                   f"in namespace {namespace}")
        run.condition(ConditionType.WAITING, True, "LockHeld", message)
        raise Wait(message, delay=run.context.config.poll_seconds)
    run.condition(ConditionType.WAITING, False, "LockAcquired", "holding the namespace lock")
    run.condition(ConditionType.PROGRESSING, True, "Running", f"{run.kind} running")
    run.status["phase"] = "Running"
    return f"holding the lock of namespace {namespace}"


def release_lock(run: Run) -> str:
    locks.release(run.context.kube, meta(run)[0], holder(run))
    return "namespace lock released"


def s3_client(run: Run, s3: S3Storage):
    """An S3 client for the operator itself, with the request's credentials Secret (or the
    operator's ambient identity). Runner Jobs get presigned URLs or their own references instead."""
    access_key = secret_key = None
    if s3.credentials_secret_ref:
        data = read_secret(run.context.kube, meta(run)[0], s3.credentials_secret_ref.name) or {}
        access_key, secret_key = data.get("accessKeyId"), data.get("secretAccessKey")
    return storage.make_client(region=s3.region, endpoint=s3.endpoint, force_path_style=s3.force_path_style,
                               access_key=access_key, secret_key=secret_key)


def topology_of(run: Run) -> Topology:
    """The request's services: its spec.topology, else the operator's default profile."""
    return run.spec.topology or run.context.config.default_topology
