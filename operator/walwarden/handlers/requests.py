"""kopf adapters for both kinds: parse, run the workflow's next steps, write status. Thin on
purpose: the workflows own the logic; these functions translate between kopf and them."""

from __future__ import annotations

import kopf

from walwarden.api import BackupRequest, ConditionType, RestoreRequest, get_condition, is_finished, set_condition
from walwarden.api import backup as backup_api
from walwarden.api import restore as restore_api
from walwarden.api.common import GROUP, VERSION, format_timestamp, parse_timestamp, utcnow
from walwarden.backup.workflow import BACKUP_STEPS
from walwarden.backup.workflow import audit_location as backup_audit_location
from walwarden.restore.workflow import RESTORE_STEPS
from walwarden.restore.workflow import audit_location as restore_audit_location
from walwarden.restore.workflow import failed_phase as restore_failed_phase
from walwarden.handlers import metrics
from walwarden.storage import audit
from walwarden.storage.s3 import s3_uri
from walwarden.workflow import tiers
from walwarden.workflow.steps import release_lock, topology_of
from walwarden.workflow.engine import Run, StepFailed, Wait, advance
from walwarden.restore.rollback import undo_when_deleted
from walwarden.handlers.common import InvalidSpec, announce, parse, record_failure


# An unexpected error (API hiccup, bug) is retried after this many seconds, not kopf's default 60.
ERROR_BACKOFF = 10


def accept(kind: str, model, body: kopf.Body, status, patch: kopf.Patch, logger) -> object | None:
    """First sight of a request: validate it and say so in status (phase Pending).
    Returns the parsed request, or None when it was refused."""
    generation = body.metadata.get("generation", 1)
    try:
        request = parse(model, body)
    except InvalidSpec as error:
        record_failure(patch, status, generation, "InvalidSpec", str(error))
        announce(body, "InvalidSpec", str(error), warning=True)
        logger.warning("%s refused: %s", kind, error)
        return None
    if not status.get("phase"):
        message = f"{kind} validated; waiting to run"
        conditions = set_condition(status.get("conditions"), ConditionType.PROGRESSING, True, "Accepted",
                                   message, generation)
        patch.status["phase"] = "Pending"
        patch.status["message"] = message
        patch.status["observedGeneration"] = generation
        patch.status["conditions"] = [c.to_dict() for c in conditions]
        announce(body, "Accepted", message)
    return request


def finish(run: Run, succeeded: bool, failed_phase: str = "Failed") -> None:
    now = utcnow()
    status = run.status
    status["phase"] = "Succeeded" if succeeded else failed_phase
    status["completedAt"] = format_timestamp(now)
    status["durationSeconds"] = round((now - parse_timestamp(status["startedAt"])).total_seconds(), 1)
    if succeeded:
        status["currentStep"] = "Done"
        dry_run = getattr(run.spec, "dry_run", False)
        status["message"] = ("dry run: the plan is in status.plan; nothing was changed" if dry_run
                             else f"{run.kind} succeeded")
        run.condition(ConditionType.READY, True, "Succeeded", status["message"])
    else:
        # Waits of the clean-up steps overwrote the message meanwhile: the failure is what counts.
        failed = get_condition(status.get("conditions"), ConditionType.FAILED)
        status["currentStep"] = next((s["name"] for s in status["steps"] if s["state"] == "Failed"),
                                     status.get("currentStep"))
        status["message"] = failed.message if failed else "failed"
        rollback = next((s for s in status["steps"] if s["name"] == "Rollback"), {})
        if status["phase"] == "RolledBack":
            status["message"] += " — rolled back: " + rollback.get("message", "")
        elif rollback.get("state") == "Failed":
            # Loud: the first failure stays the reason, but nobody may read this as "nothing happened".
            status["message"] += " — ROLLBACK FAILED, the vault is not back to normal: " + rollback.get("message", "")
            run.condition(ConditionType.VAULT_NOT_RESTORED, True, "RollbackFailed", rollback.get("message", ""))
        run.condition(ConditionType.READY, False, "Failed", status["message"])
    run.condition(ConditionType.PROGRESSING, False, status["phase"], status["message"])
    run.event(status["phase"], status["message"], warning=not succeeded)


def write_audit(run: Run, audit_location, logger) -> None:
    """Append this pass's transitions to the hash-chained log beside the artifact. A log that
    cannot be written is reported loudly but does not stop a restore half-way."""
    if not run.events:
        return
    metadata = run.body["metadata"]
    now = format_timestamp(utcnow())
    records = [{"time": now, "kind": run.kind, "namespace": metadata["namespace"], "name": metadata["name"],
                "uid": metadata["uid"], "reason": reason, "type": "Warning" if warning else "Normal"}
               for reason, _, warning in run.events]
    try:
        location = audit_location(run)
        if location is not None:
            head = audit.append(*location, records)
            _, bucket, key = location
            # Anchors the log: `walwarden audit verify --expect-head` finds it cut short or rewritten.
            run.status["audit"] = {"log": s3_uri(bucket, key), "chainHead": head}
    except Exception as error:
        logger.warning("audit log not written: %s", type(error).__name__)
        run.event("AuditLogUnavailable", f"the audit log beside the artifact could not be written "
                                         f"({type(error).__name__}); Events and status still record this request",
                  warning=True)


def drive(kind: str, steps, request, body: kopf.Body, status, patch: kopf.Patch, memo, logger,
          audit_location, failed_phase=lambda run: "Failed") -> None:
    run = Run(kind, body, request.spec, dict(status), memo.context)
    outcome = advance(steps, run, settle_seconds=memo.context.config.settle_seconds)
    if outcome.finished:
        finish(run, outcome.succeeded, failed_phase(run))
        metrics.record_finished(kind, body["metadata"]["namespace"], run.status)
    write_audit(run, audit_location, logger)
    run.status["observedGeneration"] = run.generation
    for key, value in run.status.items():
        patch.status[key] = value
    for reason, message, warning in run.events:
        announce(body, reason, message, warning)
    if not outcome.finished:
        # Not an error: kopf looks again after the delay, and the step resumes from the world.
        raise kopf.TemporaryError(outcome.waiting.message, delay=outcome.waiting.delay)


@kopf.on.create(GROUP, VERSION, backup_api.PLURAL, id="backup", backoff=ERROR_BACKOFF)
@kopf.on.resume(GROUP, VERSION, backup_api.PLURAL, id="backup-resume", backoff=ERROR_BACKOFF)
def on_backup_request(body, status, patch, memo, logger, **_):
    if is_finished(status.get("phase")):
        metrics.remember_backup(body["metadata"]["namespace"], status)  # found again at start-up
        return
    request = accept(backup_api.KIND, BackupRequest, body, status, patch, logger)
    if request is not None:
        drive(backup_api.KIND, BACKUP_STEPS, request, body, {**status, **patch.status}, patch, memo, logger,
              audit_location=backup_audit_location)


@kopf.on.create(GROUP, VERSION, restore_api.PLURAL, id="restore", backoff=ERROR_BACKOFF)
@kopf.on.resume(GROUP, VERSION, restore_api.PLURAL, id="restore-resume", backoff=ERROR_BACKOFF)
def on_restore_request(body, status, patch, memo, logger, **_):
    if is_finished(status.get("phase")):
        return
    request = accept(restore_api.KIND, RestoreRequest, body, status, patch, logger)
    if request is not None:
        drive(restore_api.KIND, RESTORE_STEPS, request, body, {**status, **patch.status}, patch, memo, logger,
              audit_location=restore_audit_location, failed_phase=restore_failed_phase)


def put_back_on_delete(kind: str, model, body: kopf.Body, status, memo, logger, undo=None) -> None:
    """A request deleted mid-flight must not leave the vault stopped: put back what the kind's
    `undo` puts back (a restore's staged Job and secrets), start what it stopped (in start order)
    and free the lock before the deletion completes (kopf holds a finalizer)."""
    if is_finished(status.get("phase")):
        return
    run = Run(kind, body, model.model_validate(dict(body)).spec, dict(status), memo.context)
    try:
        undone = undo(run) if undo else []
        if run.status.get("originalReplicas"):
            topology = topology_of(run)
            tiers.start_in_order(run, memo.context.kube, body["metadata"]["namespace"], topology,
                                 memo.context.config.poll_seconds)
            undone.append("the services it had stopped were started again with their original replica counts")
    except Wait as wait:
        raise kopf.TemporaryError(f"deleted mid-flight; putting the vault back first: {wait.message}",
                                  delay=wait.delay)
    except StepFailed as failure:  # nothing more can be done here: say so loudly and let it go
        undone = [f"putting the vault back failed ({failure.reason}): {failure.message}"]
    if undone:
        announce(body, "DeletedMidFlight", f"{kind} deleted mid-flight: " + "; ".join(undone), warning=True)
    release_lock(run)
    logger.warning("%s deleted before it finished; the vault was put back as far as possible", kind)


@kopf.on.delete(GROUP, VERSION, backup_api.PLURAL, id="backup-delete", backoff=ERROR_BACKOFF)
def on_backup_deleted(body, status, memo, logger, **_):
    put_back_on_delete(backup_api.KIND, BackupRequest, body, status, memo, logger)


@kopf.on.delete(GROUP, VERSION, restore_api.PLURAL, id="restore-delete", backoff=ERROR_BACKOFF)
def on_restore_deleted(body, status, memo, logger, **_):
    put_back_on_delete(restore_api.KIND, RestoreRequest, body, status, memo, logger,
                       undo=undo_when_deleted)
