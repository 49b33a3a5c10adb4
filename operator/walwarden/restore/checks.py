"""Validate, Plan and Preflight: everything checked before anything is touched — source, target,
secrets, services, approval token, the artifact's sha256 (a verify Job), the target server's
version, the Encryptor Master Passwords."""

from __future__ import annotations

import time

from walwarden import postgres as database
from walwarden.workflow import tiers
from walwarden.api import RestoreMode, format_timestamp, parse_timestamp, utcnow
from walwarden.workflow.steps import meta, require_secret_keys
from walwarden.workflow.engine import Run, StepFailed, Wait
from walwarden.kube import workloads
from walwarden.kube.api import Conflict, call, owner_reference
from walwarden.kube.secrets import read_secret
from walwarden.restore import job as restore_jobs
from walwarden.restore.common import (
    Source,
    USED_TOKENS_CONFIGMAP,
    db_info_secret_names,
    not_in_dry_run,
    run_job,
    secret_backend,
    source,
    spec_of,
    target_database,
    target_secret,
    topology,
    url_secret,
)
from walwarden.restore.reconfigure import db_info_backends, db_info_call
from walwarden.security import fingerprints, tokens


# -- Validate ---------------------------------------------------------------------------------------

def validate(run: Run) -> str:
    spec, namespace = spec_of(run), meta(run)[0]
    found = source(run)
    target_secret(run)
    for emp in spec.encryptor_secrets:
        require_secret_keys(run, emp.name, (emp.key,), "an Encryptor Master Password")
    missing = tiers.missing_services(run.context.kube, namespace, topology(run))
    if missing:
        raise StepFailed("ServiceNotFound", f"no Deployment or StatefulSet named {', '.join(missing)} in namespace "
                                            f"{namespace}; fix spec.topology to name the vault's services")
    if spec.mode == RestoreMode.REDIRECTED:
        backend, _ = db_info_backends(run)
        for name in db_info_secret_names(run):
            values = db_info_call(lambda: backend.read(name))
            if not values or not values.get("DB_HOST"):
                raise StepFailed("SecretNotFound", f"db-info secret {name} does not exist in "
                                                   f"{secret_backend(run)} or has no DB_HOST")
    check_approval(run, found)
    return f"source {found.label} ({found.dump.name}, {found.dump.size_bytes} bytes) and target checked"


def check_approval(run: Run, found: Source) -> None:
    spec, config = spec_of(run), run.context.config
    if run.status.get("approvalTokenId"):
        return  # consumed by this request already (a resumed pass)
    if not spec.approval_token:
        if config.approvals_required and not spec.dry_run:
            raise StepFailed("ApprovalRequired", "this operator requires an approval token: run `walwarden token "
                                                 "issue` and set spec.approvalToken in a new request")
        return
    key = (read_secret(run.context.kube, config.operator_namespace, config.approval_key_secret) or {}).get("key")
    if not key:
        raise StepFailed("ApprovalKeyMissing", f"Secret {config.operator_namespace}/{config.approval_key_secret} "
                                               "with the approval key (key 'key') does not exist")
    namespace = meta(run)[0]
    try:
        claims = tokens.verify_token(key.encode(), spec.approval_token, backup=found.label,
                                     sha256=found.dump.sha256, mode=str(spec.mode), namespace=namespace)
    except tokens.TokenError as error:
        raise StepFailed(str(error.reason), f"approval token refused: {error.message}") from None
    except ValueError as error:  # e.g. a key too short to be safe
        raise StepFailed("ApprovalKeyInvalid", f"the approval key in Secret {config.operator_namespace}/"
                                               f"{config.approval_key_secret} is not usable: {error}") from None
    if not spec.dry_run:
        _consume_token(run, claims)
    run.status["approvalTokenId"] = claims.token_id


def prune_expired_tokens(used: dict[str, str], now: float) -> dict[str, str]:
    """Used token ids whose token has expired can go: an expired token is refused anyway. Keeps the
    ConfigMap from growing with every restore."""
    def expired(record: str) -> bool:
        _, _, expires = record.rpartition(" expires ")
        return expires.isdigit() and int(expires) < now
    return {token_id: record for token_id, record in used.items() if not expired(record)}


def _consume_token(run: Run, claims) -> None:
    """Single use: the token id is recorded in a ConfigMap; a second request with it is refused."""
    core, namespace = run.context.kube.core, meta(run)[0]
    _, name, uid = meta(run)
    me = f"{run.kind}/{name}/{uid}"
    for _ in range(5):
        existing = call(core.read_namespaced_config_map, USED_TOKENS_CONFIGMAP, namespace)
        used = prune_expired_tokens(dict(existing.data or {}) if existing else {}, time.time())
        user = used.get(claims.token_id)
        if user and not user.startswith(me):
            raise StepFailed("TokenReused", f"approval token {claims.token_id} was already used by {user.split()[0]}; "
                                            "issue a new token")
        used[claims.token_id] = f"{me} expires {claims.expires_at}"
        body = {"apiVersion": "v1", "kind": "ConfigMap", "data": used,
                "metadata": {"name": USED_TOKENS_CONFIGMAP, "labels": {"app.kubernetes.io/managed-by": "walwarden"}}}
        try:
            if existing is None:
                call(core.create_namespaced_config_map, namespace, body)
            else:
                body["metadata"]["resourceVersion"] = existing.metadata.resource_version
                call(core.replace_namespaced_config_map, USED_TOKENS_CONFIGMAP, namespace, body)
            return
        except Conflict:
            continue
    raise Wait("the approvals ConfigMap is busy", delay=1)


# -- Plan -------------------------------------------------------------------------------------------

def plan(run: Run) -> str:
    spec, namespace = spec_of(run), meta(run)[0]
    found = source(run)
    services = []
    for tier_index, tier in enumerate(topology(run).stop_tiers, start=1):
        for name in tier:
            workload = workloads.find_workload(run.context.kube, namespace, name)
            replicas = workload.original_replicas if workload and workload.original_replicas is not None else (
                workload.replicas if workload else 0)
            services.append({"name": name, "tier": tier_index, "replicas": replicas})
    now = utcnow()
    window = {"backupTime": found.taken_at, "restoreTime": format_timestamp(now),
              "seconds": round((now - parse_timestamp(found.taken_at)).total_seconds())}
    from walwarden.restore.workflow import RESTORE_STEPS  # the table imports this module
    run.status["plan"] = {
        "steps": [step.name for step in RESTORE_STEPS if not step.only_on_failure],
        "services": services,
        "secrets": db_info_secret_names(run) if spec.mode == RestoreMode.REDIRECTED else [],
        "dataLossWindow": window,
    }
    run.status.setdefault("dataLossWindow", window)
    stopped = ", ".join(f"{s['name']}×{s['replicas']}" for s in services)
    lost = f"history after {found.taken_at} ({window['seconds']} s) is lost"
    return f"{'dry run: ' if spec.dry_run else ''}stops {stopped}; {lost}"


def preflight(run: Run) -> str:
    not_in_dry_run(run)
    spec = spec_of(run)
    found = source(run)
    namespace, name, uid = meta(run)
    manifest = restore_jobs.verify_job(name=name, namespace=namespace, uid=uid, owner=owner_reference(run.body),
                                       config=run.context.config, sha256=found.dump.sha256,
                                       size=found.dump.size_bytes)
    outcome = run_job(run, manifest, lambda: url_secret(run, "verify", found.bucket, found.dump.key, found.storage),
                       "downloading the artifact and checking its sha256 against the manifest")
    if outcome.state == "Failed":
        raise StepFailed(outcome.reason, f"the artifact failed verification: {outcome.message}. Nothing was "
                                         "touched: every service is still running")
    secret = target_secret(run)
    try:
        version = database.server_version(secret)
        if spec.mode == RestoreMode.IN_PLACE and not database.database_exists(secret, target_database(run)):
            raise StepFailed("DatabaseNotFound", f"the InPlace target database {target_database(run)} does not exist")
    except database.DatabaseError as error:
        raise StepFailed(error.reason, f"the target database is not usable: {error.message}") from None
    check_target_version(version, found.manifest.pg_server_version)
    check_encryptor_fingerprints(run, found)
    return (f"artifact sha256 verified by Job {manifest['metadata']['name']}; target PostgreSQL {version} "
            f"reachable; EMP fingerprints match")


def major_version(version: str) -> int:
    """16 of "16.4 (Debian 16.4-1.pgdg120+1)"; 0 when unreadable (then nothing is refused on it)."""
    head = version.strip().split(".")[0].split()[0] if version.strip() else ""
    return int(head) if head.isdigit() else 0


def check_target_version(target: str, source: str) -> None:
    target_major, source_major = major_version(target), major_version(source)
    if target_major and source_major and target_major < source_major:
        raise StepFailed("TargetServerTooOld", f"the backup is of a PostgreSQL {source} server, the target runs "
                                               f"{target}: a dump restores into the same or a newer major version "
                                               "only. Nothing was touched: restore into a server of that major "
                                               "version or newer")


def check_encryptor_fingerprints(run: Run, found: Source) -> None:
    expected = {entry.secret: entry for entry in found.manifest.encryptor_fingerprints}
    given = {f"{emp.name}/{emp.key}": emp for emp in spec_of(run).encryptor_secrets}
    if expected and not given:
        raise StepFailed("EncryptorSecretsMissing", f"the backup was taken with the Encryptor Master Password(s) "
                                                    f"{', '.join(expected)}; name the target environment's EMP "
                                                    "secrets in spec.encryptorSecrets so they can be compared")
    for secret_name, emp in given.items():
        fingerprint = expected.get(secret_name) or (next(iter(expected.values())) if len(expected) == 1 else None)
        if fingerprint is None:
            raise StepFailed("EncryptorMismatch", f"the backup's manifest has no fingerprint for {secret_name}")
        value = require_secret_keys(run, emp.name, (emp.key,), "an Encryptor Master Password")[emp.key]
        if not fingerprints.matches(value, fingerprint):
            raise StepFailed("EncryptorMismatch", f"the Encryptor Master Password in {secret_name} differs from the "
                                                  "one the backup was taken with: restoring would leave the vault's "
                                                  "key shares and encrypted configuration undecryptable, an "
                                                  "irrecoverable vault. Nothing was changed. Restore into an "
                                                  "environment with the backup's EMP, or choose another backup")


