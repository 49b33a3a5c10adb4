"""BackupSchedule: BackupRequests created on a cron schedule, and pruned by a retention policy
(grandfather-father-son). The requests it creates are ordinary BackupRequests: everything that
works for one (status, Argo CD health, restores by backupRef) works for them."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from walwarden.api.backup import BackupRequestSpec
from walwarden.api.common import (
    AGE_COLUMN,
    CelRule,
    Condition,
    CrdInfo,
    PrinterColumn,
    ResourceModel,
    SpecModel,
    StatusModel,
    Timestamp,
    cel_validations,
)
from walwarden.api.restore import ONE_NAME_PER_CHECK, DrillSettings, RestoreTarget

KIND = "BackupSchedule"
PLURAL = "backupschedules"
SINGULAR = "backupschedule"
SHORT_NAMES = ("wwschedule", "bksched")

# On every BackupRequest a schedule creates: which schedule, and the cron time it is the run of
# (retention buckets by that time, in the schedule's time zone, not by when the request ran).
SCHEDULE_LABEL = "walwarden.io/schedule"
SCHEDULED_AT_ANNOTATION = "walwarden.io/scheduled-at"
# On every drill (a RestoreRequest of mode Drill) a schedule creates, beside SCHEDULE_LABEL.
DRILL_LABEL = "walwarden.io/drill"

# Five cron fields (minute hour day-of-month month day-of-week) or a macro (@daily ...); the
# operator checks the fields themselves (croniter) and says what is wrong.
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"


class ConcurrencyPolicy(StrEnum):
    """What a run does while the schedule's previous backup is still going."""

    FORBID = "Forbid"  # skip this run (counted as missed, with an Event)
    ALLOW = "Allow"  # create it anyway; it waits for the namespace lock like any request


class BackupTemplateSpec(BackupRequestSpec):
    """The spec of every BackupRequest the schedule creates (a BackupRequest's spec; editable
    here, each created request's copy is immutable)."""

    # The template is not one-shot: no immutability rule on it (a request's spec has one).
    model_config = ConfigDict(json_schema_extra=None)


class BackupTemplateMetadata(SpecModel):
    labels: dict[str, str] = Field(default_factory=dict, description="Labels added to each request.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations added to each request.")


class BackupTemplate(SpecModel):
    metadata: BackupTemplateMetadata = Field(
        default_factory=BackupTemplateMetadata, description="Labels and annotations of each request."
    )
    spec: BackupTemplateSpec = Field(description="The BackupRequest spec of each run.")


class Retention(SpecModel):
    """Which successful backups are kept: a backup is kept when any rule keeps it. The newest
    successful backup, one a RestoreRequest still needs and one under S3 Object Lock are never
    pruned. Without a retention, nothing is pruned."""

    keep_last: int = Field(1, ge=1, le=1000, description="The newest N successful backups.")
    keep_daily: int = Field(0, ge=0, le=3660, description="The newest backup of each of the last N days that have one.")
    keep_weekly: int = Field(
        0, ge=0, le=520, description="The newest backup of each of the last N ISO weeks that have one."
    )
    keep_monthly: int = Field(0, ge=0, le=1200, description="The newest backup of each of the last N months with one.")
    max_age_days: int | None = Field(
        None,
        ge=1,
        le=36600,
        description="Nothing older than this is kept by the rules above (the newest successful backup still is).",
    )
    keep_failed_hours: int = Field(
        24, ge=0, le=8760, description="A failed request is kept this long after it finished, for its message."
    )
    dry_run: bool = Field(
        False, description="Only say what would be pruned (status.retention.wouldPrune); delete nothing."
    )


DRILL_NEEDS_A_TRIGGER = CelRule(
    "has(self.schedule) || self.afterEachBackup",
    "spec.drill needs schedule (a cron expression) or afterEachBackup: true, or both",
    reason="FieldValueRequired",
)


class DrillSchedule(DrillSettings):
    """Restore drills of the schedule's newest successful backup: each is a RestoreRequest of
    mode Drill (restored into a scratch database, proven, dropped; the vault is never touched)."""

    model_config = ConfigDict(json_schema_extra=cel_validations(ONE_NAME_PER_CHECK, DRILL_NEEDS_A_TRIGGER))

    schedule: str | None = Field(
        None,
        pattern=CRON_PATTERN,
        max_length=200,
        description="When to drill (cron, in spec.timeZone), e.g. '0 4 * * 0' for Sundays at 04:00.",
    )
    after_each_backup: bool = Field(False, description="Also drill each new successful backup once.")
    target: RestoreTarget = Field(
        description=(
            "The server the scratch database is made on (its admin Secret) and its name (default <db>_drill); "
            "the vault's own server is fine. Never one of the backup's databases."
        )
    )
    history_limit: int = Field(3, ge=1, le=100, description="Finished drills kept (the newest); older ones deleted.")

    @model_validator(mode="after")
    def _has_a_trigger(self) -> DrillSchedule:
        DRILL_NEEDS_A_TRIGGER.require(self.schedule is not None or self.after_each_backup)
        return self


class BackupScheduleSpec(SpecModel):
    """When to back up, what, and how long to keep it."""

    schedule: str = Field(
        pattern=CRON_PATTERN,
        max_length=200,
        description="Cron expression (minute hour day-of-month month day-of-week), or @daily, @hourly, ...",
    )
    time_zone: str = Field(
        "UTC", min_length=1, max_length=64, description="IANA time zone of the schedule, e.g. Europe/Zurich."
    )
    suspend: bool = Field(False, description="No new runs while true (retention still prunes).")
    concurrency_policy: ConcurrencyPolicy = Field(
        ConcurrencyPolicy.FORBID, description="Forbid (default): skip a run while the previous one is running."
    )
    starting_deadline_seconds: int = Field(
        3600,
        ge=10,
        le=2678400,
        description=(
            "A run missed (operator down) is still started this long after its time; after an outage only the "
            "newest missed run is started, once. Older missed runs are counted in status.missedRuns."
        ),
    )
    backup_template: BackupTemplate = Field(description="The BackupRequest each run creates.")
    retention: Retention | None = Field(None, description="Which backups are kept. Unset: all are kept.")
    drill: DrillSchedule | None = Field(None, description="Restore drills that prove the backups restore.")


class RetentionStatus(StatusModel):
    kept: int = Field(0, ge=0, description="Successful backups kept.")
    would_prune: list[str] = Field(default_factory=list, description="What the next pass would prune (dry run).")
    last_pruned: list[str] = Field(default_factory=list, description="What the last pruning removed.")
    last_pruned_at: Timestamp | None = Field(None, description="When the last pruning removed something.")
    blocked: list[str] = Field(
        default_factory=list, description="Due for pruning but kept: needed by a restore, or under Object Lock."
    )


class DrillScheduleStatus(StatusModel):
    """The schedule's drills: the answer to "when did you last prove a backup restores?"."""

    last_schedule_time: Timestamp | None = Field(None, description="The cron time of the last drill handled.")
    next_drill_time: Timestamp | None = Field(None, description="When the next drill by spec.drill.schedule is due.")
    last_drill: str | None = Field(None, description="The newest drill (a RestoreRequest).")
    last_drill_time: Timestamp | None = Field(None, description="When it was created.")
    last_drilled_backup: str | None = Field(None, description="The BackupRequest it drilled.")
    last_result: str | None = Field(None, description="Its phase: Running, Succeeded or Failed.")
    last_duration_seconds: float | None = Field(None, description="How long it took, once finished.")
    last_message: str | None = Field(None, description="Its status.message, once finished.")
    last_successful_drill: str | None = Field(None, description="The newest drill that Succeeded.")
    last_successful_time: Timestamp | None = Field(None, description="When it completed.")


class BackupScheduleStatus(StatusModel):
    observed_generation: int | None = Field(None, description="metadata.generation last acted on.")
    next_schedule_time: Timestamp | None = Field(None, description="When the next run is due.")
    last_schedule_time: Timestamp | None = Field(None, description="The cron time of the last run handled.")
    last_backup: str | None = Field(None, description="The newest BackupRequest created.")
    last_backup_phase: str | None = Field(None, description="The phase of lastBackup: Succeeded, Failed or Running.")
    last_successful_backup: str | None = Field(None, description="The newest Succeeded BackupRequest.")
    last_successful_time: Timestamp | None = Field(None, description="When it completed.")
    active: list[str] = Field(default_factory=list, description="Its BackupRequests still running.")
    missed_runs: int = Field(0, ge=0, description="Runs not started: past their starting deadline, or forbidden.")
    retention: RetentionStatus | None = Field(None, description="The retention's last pass.")
    drill: DrillScheduleStatus | None = Field(None, description="The restore drills (spec.drill).")
    message: str | None = Field(None, description="What the schedule did last.")
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description=(
            "Ready; Failed when the schedule or time zone is unusable; DrillFailed while the newest drill failed."
        ),
    )


class BackupSchedule(ResourceModel):
    """BackupRequests on a schedule, pruned by a retention policy."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind=KIND,
        plural=PLURAL,
        singular=SINGULAR,
        short_names=SHORT_NAMES,
        description=(
            "BackupSchedule creates a BackupRequest from its template on a cron schedule (with a time "
            "zone) and prunes them, with their artifacts in S3, by a grandfather-father-son retention."
        ),
        printer_columns=(
            PrinterColumn("Schedule", ".spec.schedule", description="Cron expression."),
            PrinterColumn("Suspended", ".spec.suspend", "boolean", "No new runs while true."),
            PrinterColumn("Last Backup", ".status.lastBackup", description="The newest BackupRequest created."),
            PrinterColumn("Last Success", ".status.lastSuccessfulTime", "date", "When the newest success completed."),
            PrinterColumn("Next Run", ".status.nextScheduleTime", description="When the next run is due."),
            PrinterColumn("Kept", ".status.retention.kept", "integer", "Successful backups kept."),
            PrinterColumn(
                "Last Drill", ".status.drill.lastResult", description="The newest drill's phase.", priority=1
            ),
            PrinterColumn(
                "Drill OK",
                ".status.drill.lastSuccessfulTime",
                "date",
                "When the newest successful drill completed.",
                priority=1,
            ),
            PrinterColumn("Message", ".status.message", description="What the schedule did last.", priority=1),
            AGE_COLUMN,
        ),
    )

    kind: Literal["BackupSchedule"] = Field("BackupSchedule", description="BackupSchedule.")
    spec: BackupScheduleSpec = Field(description="When to back up, what, and how long to keep it.")
    status: BackupScheduleStatus | None = Field(None, description="Written by the operator.")
