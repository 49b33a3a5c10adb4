"""Validate: the source backup, the target, the secrets, the services and the approval token are
right, before anything else happens."""

from __future__ import annotations

from walwarden.api import RestoreMode, SecretBackend
from walwarden.restore import dbinfo, history
from walwarden.restore.approvals import check_approval
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import source_of
from walwarden.restore.target import target_secret
from walwarden.workflow import tiers
from walwarden.workflow.engine import StepFailed
from walwarden.workflow.steps import require_secret_keys


def check_new_logins(run: RestoreRun) -> None:
    """spec.redirect.credentials: each names a database service, and its Secret has both keys."""
    redirect = run.spec.redirect
    services = run.topology.database_services
    for entry in redirect.credentials if redirect else []:
        if entry.service not in services:
            raise StepFailed(
                "UnknownService",
                f"spec.redirect.credentials names {entry.service!r}, which is not a database service of the "
                f"topology ({', '.join(services)}): fix the service name",
            )
        dbinfo.new_login(run, entry.service)


def check_secret_names_stay_in_namespace(run: RestoreRun) -> None:
    """Outside Kubernetes the operator reads db-info secrets with its own cloud identity: a
    template must not name another namespace's."""
    if run.secret_backend == SecretBackend.KUBERNETES or run.topology.names_keep_their_namespace():
        return
    raise StepFailed(
        "SecretNameLeavesNamespace",
        f"spec.topology.secretNameTemplate {run.topology.secret_name_template!r} does not hold {{namespace}} as a "
        f"whole dot-separated part: with {run.secret_backend}, the operator reads secrets with its own identity, "
        "so a restore may name only its own namespace's (as in {environment}.{namespace}.{service}.db-info). "
        "Nothing was touched",
    )


def validate(run: RestoreRun) -> str:
    spec = run.spec
    run.status.source = spec.source.label
    found = source_of(run)
    target_secret(run)
    for emp in spec.encryptor_secrets:
        require_secret_keys(run, emp.name, (emp.key,), "an Encryptor Master Password")
    missing = tiers.missing_services(run.kube, run.namespace, run.topology)
    if missing:
        raise StepFailed(
            "ServiceNotFound",
            f"no Deployment or StatefulSet named {', '.join(missing)} in namespace "
            f"{run.namespace}; fix spec.topology to name the vault's services",
        )
    if spec.mode == RestoreMode.REDIRECTED:
        check_secret_names_stay_in_namespace(run)
        for name, values in dbinfo.read_all(run).items():
            if not values or not values.get("DB_HOST"):
                raise StepFailed(
                    "SecretNotFound", f"db-info secret {name} does not exist in {run.secret_backend} or has no DB_HOST"
                )
        check_new_logins(run)
    check_approval(run, found)  # first: a replayed token says TokenReused, whatever else is wrong
    history.check_not_a_repeat(run, found)
    run.status.origin = found.origin
    checked = f"source {found.label} ({found.dump.name}, {found.dump.size_bytes} bytes) and target checked"
    if found.origin is not None:
        return f"{checked}; origin {found.origin.describe()}"
    if spec.source.artifact:
        signed = f" (its manifest names key {found.manifest.origin.key_id})" if found.manifest.origin else ""
        return f"{checked}; origin not checked{signed}: no trusted keys (spec.source.trustedKeys) are configured"
    return checked
