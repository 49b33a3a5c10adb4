"""A schedule's restore drills (spec.drill): when one is due (its own cron, and/or once after each
new successful backup), creating it as an ordinary RestoreRequest of mode Drill of the newest
successful backup, what the newest drills said, and keeping only the newest few.

Like the backups, a drill's name is fixed by what it is for (the cron time, or the backup), so a
pass repeated after a crash finds it instead of starting a second one; everything is read from
the API server on each pass. Drills of one schedule never overlap: they share a scratch database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from walwarden.api import RestoreRequest, format_timestamp, parse_timestamp
from walwarden.api import restore as restore_api
from walwarden.api.common import GROUP, VERSION, Condition, ConditionType, set_condition
from walwarden.api.schedule import (
    DRILL_LABEL,
    SCHEDULE_LABEL,
    SCHEDULED_AT_ANNOTATION,
    BackupSchedule,
    DrillSchedule,
    DrillScheduleStatus,
)
from walwarden.kube.api import Conflict, Kube, call
from walwarden.schedule import timing

Say = Callable[..., None]  # Pass.say(reason, message, warning=False)


@dataclass(frozen=True)
class Drill:
    """One of the schedule's drills, as the API server has it."""

    name: str
    backup: str | None
    created_at: datetime
    phase: str | None  # Succeeded or Failed once finished; None while it runs
    completed_at: str | None
    duration_seconds: float | None
    message: str | None
    failed_reason: str | None

    @property
    def finished(self) -> bool:
        return self.phase is not None


def drill_name(schedule: str, run_at: datetime | None, backup: str | None) -> str:
    """The drill of a cron time (<schedule>-drill-<YYYYMMDD-HHMM>) or of a new backup (<backup>-drill)."""
    if run_at is not None:
        return timing.run_name(f"{schedule[:41]}-drill", run_at)
    assert backup is not None
    return f"{backup[:57]}-drill"


def run_drills(
    kube: Kube,
    schedule: BackupSchedule,
    newest_backup: str | None,
    conditions: list[Condition],
    now: datetime,
    say: Say,
) -> tuple[DrillScheduleStatus, list[Condition]]:
    """One pass over the schedule's drills: its drill status and conditions afterwards."""
    spec = schedule.spec.drill
    assert spec is not None
    previous = (schedule.status.drill if schedule.status else None) or DrillScheduleStatus()
    status = previous.model_copy(deep=True)
    drills = sorted((_as_drill(item) for item in _drills_of(kube, schedule)), key=lambda d: d.created_at)
    conditions = _record(status, drills, conditions, say)

    wanted: tuple[str, datetime] | None = None
    if schedule.spec.suspend:
        status.next_drill_time, status.last_schedule_time = None, format_timestamp(now)
    else:
        try:
            wanted = _due(schedule, spec, status, drills, newest_backup, now)
        except timing.ScheduleInvalid as error:  # the drills stop, loudly; the backups go on
            was = next((c for c in conditions if c.type == ConditionType.DRILL_FAILED), None)
            if was is None or was.message != str(error):
                say("DrillScheduleInvalid", f"no drills until it is fixed: {error}", warning=True)
            status.next_drill_time = None
            conditions = set_condition(conditions, ConditionType.DRILL_FAILED, True, "DrillScheduleInvalid", str(error))
    if wanted is not None:
        _start(kube, schedule, spec, status, drills, newest_backup, wanted, say)
    _keep_newest(kube, schedule.namespace, drills, spec.history_limit)
    return status, conditions


def _due(
    schedule: BackupSchedule,
    spec: DrillSchedule,
    status: DrillScheduleStatus,
    drills: list[Drill],
    newest_backup: str | None,
    now: datetime,
) -> tuple[str, datetime] | None:
    """The drill to start now (its name and time), if any: by cron first, else after a new backup."""
    if spec.schedule:
        created = parse_timestamp(schedule.metadata.get("creationTimestamp") or format_timestamp(now))
        last = parse_timestamp(status.last_schedule_time) if status.last_schedule_time else created
        deadline = timedelta(seconds=schedule.spec.starting_deadline_seconds)
        timing.check(spec.schedule, schedule.spec.time_zone, "spec.drill.schedule")  # the field, if unusable
        due = timing.due(spec.schedule, schedule.spec.time_zone, last, now, deadline)
        status.next_drill_time = format_timestamp(due.next_at)
        status.last_schedule_time = format_timestamp(due.handled_until)
        if due.run_at is not None:
            return drill_name(schedule.name, due.run_at, None), due.run_at
    drilled = {d.backup for d in drills} | {status.last_drilled_backup}
    if spec.after_each_backup and newest_backup and newest_backup not in drilled:
        return drill_name(schedule.name, None, newest_backup), now
    return None


def _start(
    kube: Kube,
    schedule: BackupSchedule,
    spec: DrillSchedule,
    status: DrillScheduleStatus,
    drills: list[Drill],
    newest_backup: str | None,
    wanted: tuple[str, datetime],
    say: Say,
) -> None:
    name, run_at = wanted
    if newest_backup is None:
        say("DrillSkipped", f"drill {name} not started: the schedule has no successful backup yet", warning=True)
        return
    running = [d.name for d in drills if not d.finished and d.name != name]
    if running:
        if name != drill_name(schedule.name, None, newest_backup):  # a cron time, now passed: say so
            say("DrillSkipped", f"drill {name} not started: {', '.join(running)} is still running", warning=True)
        return  # after a new backup: started on a later pass, once the running one finished
    body = _drill_body(schedule, spec, name, newest_backup, run_at)
    try:
        call(kube.custom.create_namespaced_custom_object, GROUP, VERSION, schedule.namespace, restore_api.PLURAL, body)
        say("DrillCreated", f"RestoreRequest {name} created: a drill of BackupRequest {newest_backup}")
    except Conflict:
        pass  # created by a pass whose status was lost
    status.last_drill, status.last_drill_time, status.last_result = name, format_timestamp(run_at), "Running"
    status.last_drilled_backup = newest_backup
    status.last_duration_seconds = status.last_message = None


def _drill_body(
    schedule: BackupSchedule, spec: DrillSchedule, name: str, backup: str, run_at: datetime
) -> dict[str, Any]:
    settings = spec.model_dump(
        by_alias=True, exclude_none=True, include={"database", "checks", "statement_timeout_seconds", "job"}
    )
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": restore_api.KIND,
        "metadata": {
            "name": name,
            "namespace": schedule.namespace,
            "labels": {SCHEDULE_LABEL: schedule.name, DRILL_LABEL: "true"},
            "annotations": {SCHEDULED_AT_ANNOTATION: format_timestamp(run_at)},
        },
        "spec": {
            "mode": restore_api.RestoreMode.DRILL.value,
            "source": {"backupRef": {"name": backup}},
            "target": spec.target.to_dict(),
            "drill": settings,
        },
    }
    RestoreRequest.model_validate(body)  # our own body must be one the API accepts
    return body


def _drills_of(kube: Kube, schedule: BackupSchedule) -> list[dict[str, Any]]:
    listing: Any = kube.custom.list_namespaced_custom_object(
        GROUP,
        VERSION,
        schedule.namespace,
        restore_api.PLURAL,
        label_selector=f"{SCHEDULE_LABEL}={schedule.name},{DRILL_LABEL}=true",
    )
    return [item for item in listing.get("items", []) if not item["metadata"].get("deletionTimestamp")]


def _as_drill(item: dict[str, Any]) -> Drill:
    metadata, status = item["metadata"], item.get("status") or {}
    phase = status.get("phase")
    failed = next(
        (
            c.get("reason")
            for c in status.get("conditions") or []
            if c.get("type") == "Failed" and c.get("status") == "True"
        ),
        None,
    )
    return Drill(
        name=metadata["name"],
        backup=((item.get("spec") or {}).get("source") or {}).get("backupRef", {}).get("name"),
        # The time it was made for (set on every drill this module creates), else its creation.
        created_at=parse_timestamp(
            (metadata.get("annotations") or {}).get(SCHEDULED_AT_ANNOTATION) or metadata["creationTimestamp"]
        ),
        phase=phase if phase in ("Succeeded", "Failed", "RolledBack") else None,
        completed_at=status.get("completedAt"),
        duration_seconds=status.get("durationSeconds"),
        message=status.get("message"),
        failed_reason=failed,
    )


def _record(status: DrillScheduleStatus, drills: list[Drill], conditions: list[Condition], say: Say) -> list[Condition]:
    """The newest drill and the newest successful one into status; DrillFailed (condition, and a
    Warning Event once) while the newest finished drill failed."""
    if drills:
        newest = drills[-1]
        status.last_drill, status.last_drilled_backup = newest.name, newest.backup
        status.last_drill_time = format_timestamp(newest.created_at)
        status.last_result = newest.phase or "Running"
        status.last_duration_seconds, status.last_message = newest.duration_seconds, newest.message
    succeeded = [d for d in drills if d.phase == "Succeeded"]
    if succeeded:
        status.last_successful_drill = succeeded[-1].name
        status.last_successful_time = succeeded[-1].completed_at
    finished = [d for d in drills if d.finished]
    if not finished:
        return conditions
    last = finished[-1]
    if last.phase == "Succeeded":
        return set_condition(conditions, ConditionType.DRILL_FAILED, False, "DrillSucceeded", f"{last.name} succeeded")
    message = f"{last.name}: {last.message or 'failed'}"
    was = next((c for c in conditions if c.type == ConditionType.DRILL_FAILED), None)
    if was is None or was.status != "True" or was.message != message:
        say("DrillFailed", f"the restore drill {message}", warning=True)
    return set_condition(conditions, ConditionType.DRILL_FAILED, True, last.failed_reason or "DrillFailed", message)


def _keep_newest(kube: Kube, namespace: str, drills: list[Drill], limit: int) -> None:
    """Delete finished drills beyond the newest `limit` (their scratch databases are long dropped)."""
    finished = [d for d in drills if d.finished]
    for old in finished[: max(0, len(finished) - limit)]:
        call(kube.custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, restore_api.PLURAL, old.name)
