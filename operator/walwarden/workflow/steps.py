"""What both workflows share: the namespace lock steps, the Secrets a request names, the S3 client
the operator itself uses, the request's topology, and running a runner Job to its outcome."""

from __future__ import annotations

from typing import Any

from walwarden.api import ConditionType, S3Storage, Topology
from walwarden.kube import jobs, leases
from walwarden.kube.api import Kube, StillConflicting
from walwarden.kube.secrets import SecretNotOurs, ensure_secret, read_secret
from walwarden.storage import s3 as storage
from walwarden.workflow.engine import Run, StepFailed, Wait

AnyRun = Run[Any, Any]


def holder(run: AnyRun) -> leases.Holder:
    return leases.Holder(run.kind, run.name, run.uid)


def controller_holder(run: AnyRun) -> leases.Holder | None:
    """The request that created this one (a restore's safety backup), which may hold the lock."""
    owner = run.controller
    if owner and owner.get("kind") in leases.PLURALS:
        return leases.Holder(owner["kind"], owner["name"], owner["uid"])
    return None


def acquire_lock(run: AnyRun) -> str:
    try:
        other = leases.acquire(run.kube, run.namespace, holder(run), parent=controller_holder(run))
    except StillConflicting as busy:  # others keep writing the lease: look again later, quietly
        raise Wait(f"the namespace lock is busy ({busy}); looking again", delay=run.poll_seconds) from None
    if other is not None:
        message = (
            f"waiting for {other.kind} {other.name} to finish: one backup or restore at a time "
            f"in namespace {run.namespace}"
        )
        run.condition(ConditionType.WAITING, True, "LockHeld", message)
        raise Wait(message, delay=run.poll_seconds)
    run.condition(ConditionType.WAITING, False, "LockAcquired", "holding the namespace lock")
    run.status.mark_running(f"{run.kind} running", run.generation)
    return f"holding the lock of namespace {run.namespace}"


def release_lock(run: AnyRun) -> str:
    leases.release(run.kube, run.namespace, holder(run))
    return "namespace lock released"


def require_secret_keys(run: AnyRun, name: str, keys: tuple[str, ...], purpose: str) -> dict[str, str]:
    """The Secret's values, or a failure that names what is missing (never a value)."""
    data = read_secret(run.kube, run.namespace, name)
    if data is None:
        raise StepFailed(
            "SecretNotFound",
            f"Secret {run.namespace}/{name} ({purpose}) does not exist; create it with keys {', '.join(keys)}",
        )
    missing = [key for key in keys if not data.get(key)]
    if missing:
        raise StepFailed(
            "SecretIncomplete", f"Secret {run.namespace}/{name} ({purpose}) lacks the keys {', '.join(missing)}"
        )
    return data


def s3_client(run: AnyRun, s3: S3Storage) -> Any:
    """An S3 client for the operator itself, with the request's credentials Secret (or the
    operator's ambient identity, where its configuration allows the namespace that). Runner Jobs
    get presigned URLs or their own references instead."""
    return namespace_s3_client(run.kube, run.namespace, s3, run.settings.ambient_identity_allowed(run.namespace))


def require_storage_allowed(run: AnyRun, s3: S3Storage, what: str) -> None:
    """`s3` must be a location the operator's configuration gives the request's namespace: the
    vault's dump goes there, and a request may not choose a bucket or server of its own."""
    if run.settings.storage_allowed(run.namespace, s3):
        return
    endpoint = f" on {s3.endpoint}" if s3.endpoint else " on AWS S3"
    raise StepFailed(
        "StorageNotAllowed",
        f"{what} is bucket {s3.bucket}{endpoint} under prefix {s3.prefix or '(none)'}, which the operator's "
        f"storageLocations do not give namespace {run.namespace}: use a location they list, or have the operator's "
        "admin add this one (operator.storageLocations). Nothing was touched",
    )


def namespace_s3_client(kube: Kube, namespace: str, s3: S3Storage, ambient_identity_allowed: bool) -> Any:
    """An S3 client with the credentials Secret `s3` names in `namespace`; without one, the
    operator's ambient identity, only where `ambient_identity_allowed` (else StepFailed: a request
    never reads or writes a bucket with the operator's own rights unless its admin said so)."""
    access_key = secret_key = None
    if not s3.credentials_secret_ref and not ambient_identity_allowed:
        raise StepFailed(
            "AmbientIdentityNotAllowed",
            f"spec.storage.s3 names no credentialsSecretRef, and the operator's own cloud identity is not for "
            f"namespace {namespace}'s requests: create a Secret with accessKeyId and secretAccessKey in {namespace} "
            "and name it in credentialsSecretRef (or have the operator's admin list the namespace in "
            "ambientIdentityNamespaces). Nothing was touched",
        )
    if s3.credentials_secret_ref:
        data = read_secret(kube, namespace, s3.credentials_secret_ref.name) or {}
        access_key, secret_key = data.get("accessKeyId"), data.get("secretAccessKey")
    return storage.make_client(
        region=s3.region,
        endpoint=s3.endpoint,
        force_path_style=s3.force_path_style,
        access_key=access_key,
        secret_key=secret_key,
    )


def ensure_own_secret(
    run: AnyRun, name: str, data: dict[str, str], labels: dict[str, str] | None = None
) -> dict[str, str]:
    """The request's Secret `name`: created with `data` the first time, read back after; one that
    exists and is not the request's own is refused, never used."""
    try:
        return ensure_secret(run.kube, run.namespace, name, data, run.owner, labels)
    except SecretNotOurs as error:
        raise StepFailed(
            "SecretNotOurs",
            f"{error}: Walwarden makes that Secret for this request and uses no other under its name. Nothing was "
            "touched; delete it if it is not yours to keep, and create a new request",
        ) from None


def topology_of(run: AnyRun) -> Topology:
    """The request's services: its spec.topology, else the operator's default profile."""
    topology: Topology | None = run.spec.topology
    return topology or run.settings.default_topology


def run_job(run: AnyRun, manifest: dict[str, Any], prepare: Any, what: str) -> jobs.JobOutcome:
    """Create the Job once (after `prepare()` made its inputs) and return its outcome once it ended;
    wait while it runs."""
    name = manifest["metadata"]["name"]
    outcome = jobs.job_outcome(run.kube, run.namespace, name, run.uid)
    if outcome is None:
        prepare()
        jobs.ensure_job(run.kube, run.namespace, manifest)
        raise Wait(f"Job {name} started: {what}", delay=run.poll_seconds)
    if outcome.state == jobs.JobState.RUNNING:
        raise Wait(f"Job {name}: {what}", delay=run.poll_seconds)
    return outcome
