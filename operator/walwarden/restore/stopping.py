"""SafetyBackup and ScaleDown: a backup of what is about to be overwritten, then the services
stopped tier by tier and no application session left on the target."""

from __future__ import annotations

from walwarden import postgres as database
from walwarden.workflow import tiers
from walwarden.api import format_timestamp, parse_timestamp, utcnow
from walwarden.api.common import GROUP, VERSION
from walwarden.workflow.steps import meta
from walwarden.workflow.engine import Run, Skip, StepFailed, Wait
from walwarden.kube.api import Conflict, call, owner_reference
from walwarden.restore.common import (
    RECONNECT_GRACE_SECONDS,
    not_in_dry_run,
    poll,
    source,
    spec_of,
    target_database,
    target_secret,
    target_secret_name,
    topology,
)


# -- SafetyBackup -------------------------------------------------------------------------------------

def safety_backup(run: Run) -> str:
    not_in_dry_run(run)
    spec = spec_of(run)
    if not spec.wants_safety_backup():
        raise Skip("spec.safetyBackup is false" if spec.safety_backup is False else "Redirected: the original "
                   "database is left untouched, so rollback is a secret switch")
    namespace, name, uid = meta(run)
    child = f"{name[:40]}-safety-{uid.replace('-', '')[:8]}"
    custom = run.context.kube.custom
    existing = call(custom.get_namespaced_custom_object, GROUP, VERSION, namespace, "backuprequests", child)
    if existing is None:
        found = source(run)
        storage_spec = found.storage.to_dict()
        storage_spec["prefix"] = f"{found.storage.prefix.strip('/')}/safety".strip("/")
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BackupRequest",
                "metadata": {"name": child, "ownerReferences": [owner_reference(run.body)],
                             "labels": {"walwarden.io/safety-backup-of": name}},
                "spec": {"database": {"secretRef": {"name": target_secret_name(run)},
                                      "databases": [target_database(run)]},
                         "storage": {"s3": storage_spec},
                         "encryptorSecrets": [e.to_dict() for e in spec.encryptor_secrets],
                         "topology": topology(run).to_dict()}}
        try:
            call(custom.create_namespaced_custom_object, GROUP, VERSION, namespace, "backuprequests", body)
        except Conflict:
            pass
        run.status["safetyBackup"] = child
        raise Wait(f"safety backup {child} of the target started", delay=poll(run))
    run.status["safetyBackup"] = child
    status = existing.get("status") or {}
    if status.get("phase") == "Failed":
        raise StepFailed("SafetyBackupFailed", f"the safety backup {child} failed ({status.get('message')}); "
                                               "nothing was touched. Fix it, or set safetyBackup: false knowingly")
    if status.get("phase") != "Succeeded":
        raise Wait(f"safety backup {child} is {status.get('phase') or 'starting'}", delay=poll(run))
    return f"safety backup {child}: {status['artifact']['uri']}"


# -- ScaleDown ------------------------------------------------------------------------------------------

def scale_down(run: Run) -> str:
    not_in_dry_run(run)
    run.status.setdefault("scaledDownAt", format_timestamp(utcnow()))
    stopped = tiers.stop_in_order(run, run.context.kube, meta(run)[0], topology(run), poll(run),
                                  stuck_after=run.context.config.stop_timeout_seconds)
    return f"{stopped}; {check_sessions(run)}"


def check_sessions(run: Run) -> str:
    """No application may still be connected to the database about to be overwritten."""
    spec, secret, dbname = spec_of(run), target_secret(run), target_database(run)
    try:
        if not database.database_exists(secret, dbname):
            return "no sessions (the target database does not exist yet)"
        sessions = database.application_sessions(secret, dbname)
    except database.DatabaseError as error:
        raise StepFailed(error.reason, f"cannot check sessions on the target: {error.message}") from None
    if not sessions:
        return "no application sessions left"
    listed = "; ".join(s.describe() for s in sessions[:5])
    policy = spec.session_policy
    if policy.on_remaining == "Fail":
        raise StepFailed("SessionsRemain", f"{len(sessions)} session(s) still connected to {dbname}: {listed}. "
                                           "Stop those clients, or use sessionPolicy.onRemaining Wait or Terminate")
    seen = run.status.setdefault("sessionsSeenAt", format_timestamp(utcnow()))
    waited = (utcnow() - parse_timestamp(seen)).total_seconds()
    if waited < policy.wait_seconds:
        raise Wait(f"{len(sessions)} session(s) still connected to {dbname}, waiting up to "
                   f"{policy.wait_seconds}s: {listed}", delay=poll(run))
    if policy.on_remaining == "Wait":
        raise StepFailed("SessionsRemain", f"{len(sessions)} session(s) still connected to {dbname} after "
                                           f"{policy.wait_seconds}s: {listed}")
    if waited > policy.wait_seconds + RECONNECT_GRACE_SECONDS:
        # Terminated and back again: a client that was not stopped keeps reconnecting. Never loop.
        raise StepFailed("SessionsRemain", f"clients keep reconnecting to {dbname} after being terminated: "
                                           f"{listed}. Stop them (add their service to spec.topology's stop "
                                           "tiers) and create a new request")
    database.terminate_sessions(secret, sessions)
    run.event("SessionsTerminated", f"terminated {len(sessions)} session(s) on {dbname}: {listed}", warning=True)
    raise Wait(f"terminated {len(sessions)} session(s); checking again", delay=1)


