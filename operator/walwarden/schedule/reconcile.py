"""One pass over a BackupSchedule: start the run that is due (at most one), account for missed
runs, prune what the retention no longer keeps, and say all of it in status and Events.

The pass reads everything it decides from the API server (the schedule's BackupRequests by
label, the namespace's RestoreRequests), so an operator restarted at any moment picks up where
the last pass left off; a run's request has a name fixed by its cron time, so a pass repeated
after a crash finds it instead of starting a second backup."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from walwarden.api import BackupRequest, is_finished, parse_timestamp
from walwarden.api import backup as backup_api
from walwarden.api import restore as restore_api
from walwarden.api.common import GROUP, VERSION, ConditionType, ObjectLock, format_timestamp, set_condition
from walwarden.api.schedule import (
    SCHEDULE_LABEL,
    SCHEDULED_AT_ANNOTATION,
    BackupSchedule,
    BackupScheduleStatus,
    ConcurrencyPolicy,
    RetentionStatus,
)
from walwarden.backup.job import artifact_prefix
from walwarden.kube.api import Conflict, Kube, call
from walwarden.schedule import drills, retention, timing
from walwarden.storage import audit
from walwarden.storage import s3 as storage
from walwarden.workflow.engine import Event
from walwarden.workflow.steps import namespace_s3_client

SUSPENDED_MESSAGE = "suspended: no new runs (retention still applies)"


@dataclass
class Pass:
    """What one pass decided: the new status, the Events to post, and what it created/pruned."""

    status: BackupScheduleStatus
    events: list[Event] = field(default_factory=list)
    created: str | None = None
    pruned: list[str] = field(default_factory=list)

    def say(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(Event(reason, message, warning))


def reconcile(kube: Kube, schedule: BackupSchedule, now: datetime, ambient_identity_allowed: bool = False) -> Pass:
    status = (schedule.status or BackupScheduleStatus()).model_copy(deep=True)
    result = Pass(status)
    spec, namespace, name = schedule.spec, schedule.namespace, schedule.name
    generation = schedule.generation
    try:
        tz = timing.check(spec.schedule, spec.time_zone)
    except timing.ScheduleInvalid as error:
        if status.message != str(error):
            result.say("ScheduleInvalid", str(error), warning=True)
        status.message, status.next_schedule_time = str(error), None
        status.conditions = set_condition(status.conditions, ConditionType.READY, False, "ScheduleInvalid", str(error))
        status.conditions = set_condition(status.conditions, ConditionType.FAILED, True, "ScheduleInvalid", str(error))
        return result
    was_invalid = any(c.type == ConditionType.FAILED and c.status == "True" for c in status.conditions)
    if was_invalid or (status.message == SUSPENDED_MESSAGE and not spec.suspend):
        status.message = None  # fixed, or resumed: the old words no longer hold
    status.conditions = set_condition(status.conditions, ConditionType.FAILED, False, "ScheduleValid", "")

    requests = _requests_of(kube, namespace, name)
    needed = _needed_by_restores(kube, namespace) if spec.retention is not None else {}
    backups = [_as_backup(item, needed.get(item["metadata"]["name"])) for item in requests]
    _record_results(status, backups)

    if spec.suspend:
        status.next_schedule_time = None
        # A suspended window is not "missed": resuming starts with the next cron time.
        status.last_schedule_time = format_timestamp(now)
        status.message = SUSPENDED_MESSAGE
    else:
        _run_if_due(kube, schedule, status, backups, now, result)

    if spec.retention is not None:
        _apply_retention(kube, schedule, backups, requests, tz, now, result, ambient_identity_allowed)
    if spec.drill is not None:
        status.drill, status.conditions = drills.run_drills(
            kube, schedule, status.last_successful_backup, status.conditions, now, result.say
        )
    else:  # no drills (any more): nothing to say about them
        status.drill = None
        status.conditions = [c for c in status.conditions if c.type != ConditionType.DRILL_FAILED]
    ready = "suspended" if spec.suspend else f"next run at {status.next_schedule_time}"
    status.conditions = set_condition(status.conditions, ConditionType.READY, True, "Scheduled", ready)
    status.observed_generation = generation
    return result


def _run_if_due(
    kube: Kube,
    schedule: BackupSchedule,
    status: BackupScheduleStatus,
    backups: list[retention.Backup],
    now: datetime,
    result: Pass,
) -> None:
    spec = schedule.spec
    created = parse_timestamp(schedule.metadata.get("creationTimestamp") or format_timestamp(now))
    last = parse_timestamp(status.last_schedule_time) if status.last_schedule_time else created
    due = timing.due(spec.schedule, spec.time_zone, last, now, timedelta(seconds=spec.starting_deadline_seconds))
    status.next_schedule_time = format_timestamp(due.next_at)
    if due.missed:
        status.missed_runs += due.missed
        until = (
            f"before {format_timestamp(due.handled_until)}"
            if due.run_at
            else f"up to {format_timestamp(due.handled_until)}"
        )
        result.say(
            "RunsMissed",
            f"{due.missed} run(s) {until} were not started: more than startingDeadlineSeconds "
            f"({spec.starting_deadline_seconds}) late (was the operator down?)"
            + (f"; starting the newest one, of {format_timestamp(due.handled_until)}, now" if due.run_at else ""),
            warning=True,
        )
    status.last_schedule_time = format_timestamp(due.handled_until)
    if due.run_at is None:
        status.message = status.message or f"next run at {status.next_schedule_time}"
        return
    request_name = timing.run_name(schedule.name, due.run_at)
    # This run's own request, created by a pass whose status was lost, is not "the previous one".
    running = [b.name for b in backups if b.outcome == retention.Outcome.RUNNING and b.name != request_name]
    if running and spec.concurrency_policy == ConcurrencyPolicy.FORBID:
        status.missed_runs += 1
        status.message = (
            f"the run of {format_timestamp(due.run_at)} was skipped: {', '.join(running)} is still running "
            "(concurrencyPolicy Forbid)"
        )
        result.say("RunSkipped", status.message, warning=True)
        return
    body = _request_body(schedule, request_name, due.run_at)
    try:
        call(kube.custom.create_namespaced_custom_object, GROUP, VERSION, schedule.namespace, backup_api.PLURAL, body)
        result.say("BackupCreated", f"BackupRequest {request_name} created: the run of {format_timestamp(due.run_at)}")
    except Conflict:
        pass  # created by a pass whose status was lost
    result.created = request_name
    status.last_backup, status.last_backup_phase = request_name, retention.Outcome.RUNNING.value
    status.active = sorted({*status.active, request_name})
    status.message = f"BackupRequest {request_name} created; next run at {status.next_schedule_time}"


def _request_body(schedule: BackupSchedule, name: str, run_at: datetime) -> dict[str, Any]:
    template = schedule.spec.backup_template
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": backup_api.KIND,
        "metadata": {
            "name": name,
            "namespace": schedule.namespace,
            # No ownerReference on purpose: deleting a schedule must not delete its backups.
            "labels": {**template.metadata.labels, SCHEDULE_LABEL: schedule.name},
            "annotations": {**template.metadata.annotations, SCHEDULED_AT_ANNOTATION: format_timestamp(run_at)},
        },
        "spec": template.spec.to_dict(),
    }
    BackupRequest.model_validate(body)  # our own body must be one the API accepts
    return body


def _requests_of(kube: Kube, namespace: str, schedule: str) -> list[dict[str, Any]]:
    listing: Any = kube.custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, backup_api.PLURAL, label_selector=f"{SCHEDULE_LABEL}={schedule}"
    )
    return [item for item in listing.get("items", []) if not item["metadata"].get("deletionTimestamp")]


def _as_backup(item: dict[str, Any], in_use_by: str | None = None) -> retention.Backup:
    metadata, status = item["metadata"], item.get("status") or {}
    scheduled = (metadata.get("annotations") or {}).get(SCHEDULED_AT_ANNOTATION) or metadata["creationTimestamp"]
    phase = status.get("phase")
    outcome = (
        retention.Outcome(phase)
        if phase in (retention.Outcome.SUCCEEDED, retention.Outcome.FAILED)
        else retention.Outcome.RUNNING
    )
    finished = status.get("completedAt")
    lock = ObjectLock.model_validate(lock_spec) if (lock_spec := _object_lock_of(item)) else None
    return retention.Backup(
        name=metadata["name"],
        scheduled_at=parse_timestamp(scheduled),
        outcome=outcome,
        finished_at=parse_timestamp(finished) if finished else None,
        in_use_by=in_use_by,
        # As the backup Job locked its objects (backup/job.py object_lock): from the request's creation.
        locked_until=lock.until(parse_timestamp(metadata["creationTimestamp"])) if lock else None,
    )


def _object_lock_of(item: dict[str, Any]) -> dict[str, Any] | None:
    return (((item.get("spec") or {}).get("storage") or {}).get("s3") or {}).get("objectLock")


def _record_results(status: BackupScheduleStatus, backups: list[retention.Backup]) -> None:
    status.active = sorted(b.name for b in backups if b.outcome == retention.Outcome.RUNNING)
    succeeded = [b for b in backups if b.outcome == retention.Outcome.SUCCEEDED]
    if succeeded:
        newest = max(succeeded, key=lambda b: b.scheduled_at)
        status.last_successful_backup = newest.name
        status.last_successful_time = format_timestamp(newest.finished_at or newest.scheduled_at)
    if backups:
        newest_run = max(backups, key=lambda b: b.scheduled_at)
        status.last_backup, status.last_backup_phase = newest_run.name, newest_run.outcome.value


def _needed_by_restores(kube: Kube, namespace: str) -> dict[str, str]:
    """BackupRequest name -> the unfinished RestoreRequest that names it in spec.source.backupRef."""
    listing: Any = kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, restore_api.PLURAL)
    needed: dict[str, str] = {}
    for item in listing.get("items", []):
        if is_finished((item.get("status") or {}).get("phase")):
            continue
        ref = ((item.get("spec") or {}).get("source") or {}).get("backupRef") or {}
        if ref.get("name"):
            needed[ref["name"]] = item["metadata"]["name"]
    return needed


def _apply_retention(
    kube: Kube,
    schedule: BackupSchedule,
    backups: list[retention.Backup],
    requests: list[dict[str, Any]],
    tz: ZoneInfo,
    now: datetime,
    result: Pass,
    ambient_identity_allowed: bool,
) -> None:
    policy = schedule.spec.retention
    assert policy is not None
    decision = retention.decide(backups, policy, tz, now)
    previous = result.status.retention or RetentionStatus()
    state = RetentionStatus(
        kept=decision.kept_successful,
        last_pruned=previous.last_pruned,
        last_pruned_at=previous.last_pruned_at,
        blocked=[f"{name}: {why}" for name, why in decision.blocked.items()],
    )
    result.status.retention = state
    if policy.dry_run:
        state.would_prune = decision.prune
        return
    by_name = {item["metadata"]["name"]: item for item in requests}
    pruned = []
    for name in decision.prune:
        refused = _prune(kube, schedule.namespace, by_name[name], ambient_identity_allowed)
        if refused:
            state.blocked.append(f"{name}: {refused}")
            if f"{name}: {refused}" not in previous.blocked:  # said once, not on every pass
                result.say("PruneRefused", f"BackupRequest {name} was not pruned: {refused}", warning=True)
        else:
            pruned.append(name)
    if pruned:
        state.last_pruned, state.last_pruned_at = pruned, format_timestamp(now)
        result.pruned = pruned
        kept = ", ".join(f"{n} ({'/'.join(why)})" for n, why in decision.keep.items())
        result.say(
            "Pruned",
            f"retention pruned {len(pruned)} backup(s) and their S3 objects (audit logs kept): {', '.join(pruned)}; "
            f"kept {kept}",
        )


def _prune(kube: Kube, namespace: str, item: dict[str, Any], ambient_identity_allowed: bool) -> str | None:
    """Delete a request's objects in S3 (all but its audit log), then the request (its Job and
    signing-key Secret go with it). Returns why S3 refused, or None when it is gone."""
    request = BackupRequest.model_validate(item)
    s3 = request.spec.storage.s3
    prefix = artifact_prefix(request.spec, namespace, request.name, item["metadata"]["uid"])
    try:
        storage.delete_prefix(
            namespace_s3_client(kube, namespace, s3, ambient_identity_allowed),
            s3.bucket,
            prefix,
            keep=frozenset({audit.audit_key(prefix)}),
        )
    except storage.DeleteRefused as refused:
        return f"S3 kept {refused} (under Object Lock, or the credentials may not delete)"
    except Exception as error:  # S3 down, bucket gone, no rights: keep the request, say why
        return f"S3 error {type(error).__name__}: {error}"
    call(kube.custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, backup_api.PLURAL, request.name)
    return None
