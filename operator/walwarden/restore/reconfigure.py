"""Reconfigure (Redirected): snapshot and repoint every db-info secret, in Kubernetes or AWS
Secrets Manager, and restart the consumers that kept running."""

from __future__ import annotations

from walwarden import secretstores as dbinfo
from walwarden.api import RestoreMode, SecretBackend
from walwarden.workflow.steps import meta
from walwarden.workflow.engine import Run, Skip, StepFailed, Wait
from walwarden.kube import workloads
from walwarden.kube.api import owner_reference
from walwarden.kube.secrets import ensure_secret
from walwarden.restore.common import (
    DB_INFO_KEYS,
    db_info_secret_names,
    not_in_dry_run,
    secret_backend,
    spec_of,
    topology,
)


# -- Reconfigure ----------------------------------------------------------------------------------------

def snapshot_secret_name(run: Run) -> str:
    _, name, uid = meta(run)
    return f"{name[:40]}-snapshot-{uid.replace('-', '')[:8]}"


def reconfigure(run: Run) -> str:
    not_in_dry_run(run)
    spec = spec_of(run)
    if spec.mode != RestoreMode.REDIRECTED:
        raise Skip("InPlace: the services keep their database")
    namespace, kube = meta(run)[0], run.context.kube
    backend, synced = db_info_backends(run)
    names = db_info_secret_names(run)
    # The originals are kept once, before the first patch; a second pass reuses that snapshot.
    current = {name: db_info_call(lambda name=name: backend.read(name)) or {} for name in names}
    snapshot = {f"{name}.{key}": current[name][key] for name in names for key in DB_INFO_KEYS if key in current[name]}
    ensure_secret(kube, namespace, snapshot_secret_name(run), snapshot, owner_reference(run.body),
                  labels={"walwarden.io/snapshot-of": meta(run)[1]})
    new = {"DB_HOST": spec.redirect.db_host}
    if spec.redirect.db_port:
        new["DB_PORT"] = str(spec.redirect.db_port)
    if spec.redirect.db_name:
        new["DB_NAME"] = spec.redirect.db_name
    run.status["secretsRepointed"] = True
    not_synced = write_db_info(backend, synced, names, lambda name: new)
    restarted = restart_consumers(run)
    waiting = f"; no synced Kubernetes copy yet of {', '.join(not_synced)}" if not_synced else ""
    return (f"repointed {len(names)} db-info secrets ({secret_backend(run)}) to {spec.redirect.db_host}"
            f"{waiting}; restarted {restarted or 'nothing'}")


def db_info_backends(run: Run) -> tuple[dbinfo.DbInfoBackend, dbinfo.KubernetesSecrets | None]:
    """Where the db-info secrets are written, and the synced Kubernetes copy (AWS only)."""
    spec, namespace = spec_of(run), meta(run)[0]
    kubernetes_secrets = dbinfo.KubernetesSecrets(run.context.kube.core, namespace)
    if secret_backend(run) == SecretBackend.AWS_SECRETS_MANAGER:
        aws = spec.redirect.aws
        client = db_info_call(lambda: dbinfo.make_aws_client(aws.region if aws else None, aws.endpoint if aws else None))
        return dbinfo.AwsSecretsManager(client), kubernetes_secrets
    return kubernetes_secrets, None


def db_info_call(action):
    """Run a db-info backend call; its errors become a wait (retryable) or a failure."""
    try:
        return action()
    except dbinfo.DbInfoError as error:
        if error.retryable:
            raise Wait(f"db-info backend: {error.message}", delay=5) from None
        raise StepFailed(error.reason, error.message) from None


def write_db_info(backend, synced, names: list[str], values_for) -> list[str]:
    """Write each secret's values (idempotent), and refresh its synced Kubernetes copy at once
    so restarted consumers read the change; returns the names that have no synced copy yet."""
    not_synced = []
    for name in names:
        values = values_for(name)
        db_info_call(lambda: backend.update(name, values))
        if synced is not None and not db_info_call(lambda: dbinfo.refresh_synced_copy(synced, name, values)):
            not_synced.append(name)
    return not_synced


def restart_consumers(run: Run, services: list[str] | None = None, marker: str = "reconfigure") -> str:
    """Services that were not stopped read their db-info only at start: roll them. The marker is
    fixed per request, so doing it again changes nothing."""
    namespace, _, uid = meta(run)
    stopped = {name for tier in topology(run).stop_tiers for name in tier} if services is None else set()
    marker = f"walwarden-{marker}-{uid}"
    names = []
    for name in services if services is not None else topology(run).restart_after_reconfigure:
        if name in stopped:
            continue  # it starts with the new secret anyway
        workload = workloads.find_workload(run.context.kube, namespace, name)
        if workload is None:
            continue
        workloads.restart(run.context.kube, workload, marker)
        names.append(name)
    return ", ".join(names)


