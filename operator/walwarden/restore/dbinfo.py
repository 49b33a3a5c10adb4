"""The services' db-info secrets, as a restore uses them: where they live (Kubernetes, AWS
Secrets Manager or Azure Key Vault, the last two with their synced Kubernetes copy), the snapshot
kept before the first change, repointing, putting back, and rolling the consumers that read them
only at start."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from walwarden import secretstores
from walwarden.api import SecretBackend
from walwarden.kube import workloads
from walwarden.kube.secrets import read_secret
from walwarden.restore import opted_in_secrets
from walwarden.restore.run import RestoreRun
from walwarden.workflow.engine import StepFailed, Wait
from walwarden.workflow.steps import ensure_own_secret, require_secret_keys

# What a restore may change in a db-info secret (and so snapshots and puts back): where the
# database is, always; the login only of the services spec.redirect.credentials names.
REPOINTED_KEYS = ("DB_HOST", "DB_PORT", "DB_NAME")
CREDENTIAL_KEYS = ("DB_USER", "DB_PASSWORD")

T = TypeVar("T")


def secret_of(run: RestoreRun) -> dict[str, str]:
    """Each database service's db-info secret name (none for an InPlace restore)."""
    redirect = run.spec.redirect
    if redirect is None:
        return {}
    return {
        service: run.topology.db_info_secret_name(redirect.environment, run.namespace, service)
        for service in run.topology.database_services
    }


def secret_names(run: RestoreRun) -> list[str]:
    return list(secret_of(run).values())


def new_login(run: RestoreRun, service: str) -> dict[str, str]:
    """The DB_USER and DB_PASSWORD spec.redirect.credentials gives `service` ({} when none), from a
    Secret labelled for it (opted_in_secrets): Validate, Preflight and Reconfigure all read it here."""
    credentials = run.spec.redirect.credentials_of(service) if run.spec.redirect else None
    if credentials is None:
        return {}
    keys = (credentials.user_key, credentials.password_key)
    data = opted_in_secrets.new_login_secret(run, credentials.secret_ref.name, keys, service)
    return {"DB_USER": data[credentials.user_key], "DB_PASSWORD": data[credentials.password_key]}


def repointed_values(run: RestoreRun) -> dict[str, dict[str, str]]:
    """What the repoint writes into each db-info secret (by secret name)."""
    redirect = run.spec.redirect
    if redirect is None:
        return {}
    where = {"DB_HOST": redirect.db_host}
    if redirect.db_port:
        where["DB_PORT"] = str(redirect.db_port)
    if redirect.db_name:
        where["DB_NAME"] = redirect.db_name
    return {name: {**where, **new_login(run, service)} for service, name in secret_of(run).items()}


def backends(run: RestoreRun) -> tuple[secretstores.DbInfoBackend, secretstores.KubernetesSecrets | None]:
    """Where the db-info secrets are written, and their synced Kubernetes copy (AWS and Azure)."""
    kubernetes_secrets = secretstores.KubernetesSecrets(run.kube.core, run.namespace)
    if run.secret_backend == SecretBackend.AWS_SECRETS_MANAGER:
        aws = run.spec.redirect.aws if run.spec.redirect else None
        client = backend_call(
            lambda: secretstores.make_aws_client(aws.region if aws else None, aws.endpoint if aws else None)
        )
        return secretstores.AwsSecretsManager(client), kubernetes_secrets
    if run.secret_backend == SecretBackend.AZURE_KEY_VAULT:
        return secretstores.AzureKeyVault(azure_client(run)), kubernetes_secrets
    return kubernetes_secrets, None


AZURE_PRINCIPAL_KEYS = ("tenantId", "clientId", "clientSecret")


def azure_client(run: RestoreRun) -> secretstores.azure.SecretClient:
    """A Key Vault client for spec.redirect.azureKeyVault, signed in as the service principal of its
    credentials Secret (or the operator's ambient Azure identity)."""
    settings = run.spec.redirect.azure_key_vault if run.spec.redirect else None
    if settings is None:
        raise StepFailed(
            "AzureKeyVaultNotConfigured",
            "the db-info secrets are in Azure Key Vault (the operator's default secret backend) but "
            "spec.redirect.azureKeyVault is unset: set its vaultUrl (and credentialsSecretRef)",
        )
    principal = None
    if settings.credentials_secret_ref:
        data = require_secret_keys(
            run,
            settings.credentials_secret_ref.name,
            AZURE_PRINCIPAL_KEYS,
            "the Azure service principal of spec.redirect.azureKeyVault",
        )
        principal = secretstores.ServicePrincipal(*(data[key] for key in AZURE_PRINCIPAL_KEYS))
    return backend_call(lambda: secretstores.make_azure_client(settings.vault_url, principal, settings.authority_host))


def backend_call(action: Callable[[], T]) -> T:
    """Run a db-info backend call; its errors become a wait (retryable) or a failure."""
    try:
        return action()
    except secretstores.DbInfoError as error:
        if error.retryable:
            raise Wait(f"db-info backend: {error.message}", delay=5) from None
        raise StepFailed(error.reason, error.message) from None


def read_all(run: RestoreRun) -> dict[str, dict[str, str] | None]:
    backend, _ = backends(run)
    return {name: backend_call(lambda name=name: backend.read(name)) for name in secret_names(run)}  # type: ignore[misc]


def snapshot_secret_name(run: RestoreRun) -> str:
    return f"{run.name[:40]}-snapshot-{run.uid.replace('-', '')[:8]}"


def keep_snapshot(run: RestoreRun, repointed: dict[str, dict[str, str]]) -> None:
    """The originals, kept once before the first change (the login only where `repointed` changes
    it); a second pass reuses that snapshot."""
    current = read_all(run)
    snapshot = {
        f"{name}.{key}": values[key]
        for name, values in current.items()
        if values
        for key in REPOINTED_KEYS + tuple(key for key in CREDENTIAL_KEYS if key in repointed.get(name, {}))
        if key in values
    }
    ensure_own_secret(run, snapshot_secret_name(run), snapshot, labels={"walwarden.io/snapshot-of": run.name})


def write(run: RestoreRun, values_for: Callable[[str], dict[str, str]]) -> list[str]:
    """Write each secret's values (idempotent), and refresh its synced Kubernetes copy at once
    so restarted consumers read the change; returns the names that have no synced copy yet."""
    backend, synced = backends(run)
    not_synced = []
    for name in secret_names(run):
        values = values_for(name)
        backend_call(lambda: backend.update(name, values))  # noqa: B023 (called at once)
        if synced is not None and not backend_call(lambda: secretstores.refresh_synced_copy(synced, name, values)):  # noqa: B023
            not_synced.append(name)
    return not_synced


def put_back(run: RestoreRun) -> None:
    """Every db-info secret as the snapshot holds it."""
    snapshot = read_secret(run.kube, run.namespace, snapshot_secret_name(run)) or {}
    keys = REPOINTED_KEYS + CREDENTIAL_KEYS
    write(run, lambda name: {key: snapshot[f"{name}.{key}"] for key in keys if f"{name}.{key}" in snapshot})


def restart_consumers(run: RestoreRun, services: list[str], marker: str) -> str:
    """Services that keep running read their db-info only at start: roll them. The marker is
    fixed per request and purpose, so doing it again changes nothing."""
    names = []
    for name in services:
        workload = workloads.find_workload(run.kube, run.namespace, name)
        if workload is None:
            continue
        workloads.restart(run.kube, workload, f"walwarden-{marker}-{run.uid}")
        names.append(name)
    return ", ".join(names)
