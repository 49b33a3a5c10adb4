"""A schedule's gauges follow its status after each pass, and go when it is deleted."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import REGISTRY

from walwarden.api.common import Condition
from walwarden.api.schedule import BackupScheduleStatus, DrillScheduleStatus, RetentionStatus
from walwarden.handlers import metrics

LABELS = {"namespace": "vault", "schedule": "nightly-metrics"}


def unix(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


def sample(name: str) -> float | None:
    return REGISTRY.get_sample_value(name, LABELS)


def test_a_pass_sets_the_schedule_gauges_and_a_deletion_removes_them():
    status = BackupScheduleStatus(
        next_schedule_time="2026-12-02T02:30:00Z",
        last_schedule_time="2026-12-01T02:30:00Z",
        last_successful_time="2026-12-01T02:35:00Z",
        missed_runs=3,
        retention=RetentionStatus(kept=11),
    )
    metrics.record_schedule("vault", "nightly-metrics", status, pruned=2)
    assert sample("walwarden_schedule_next_run_timestamp_seconds") == unix(2026, 12, 2, 2, 30)
    assert sample("walwarden_schedule_last_run_timestamp_seconds") == unix(2026, 12, 1, 2, 30)
    assert sample("walwarden_schedule_last_successful_backup_timestamp_seconds") == unix(2026, 12, 1, 2, 35)
    assert sample("walwarden_schedule_missed_runs") == 3
    assert sample("walwarden_schedule_backups_kept") == 11
    assert sample("walwarden_schedule_pruned_backups_total") == 2

    suspended = status.model_copy(update={"next_schedule_time": None})
    metrics.record_schedule("vault", "nightly-metrics", suspended, pruned=0)
    assert sample("walwarden_schedule_next_run_timestamp_seconds") is None  # no next run while suspended

    metrics.forget_schedule("vault", "nightly-metrics")
    assert sample("walwarden_schedule_last_successful_backup_timestamp_seconds") is None
    assert sample("walwarden_schedule_pruned_backups_total") is None


def test_the_drill_gauges_say_when_a_backup_was_last_proven_to_restore_and_whether_the_newest_drill_failed():
    drill = DrillScheduleStatus(
        last_drill_time="2026-12-06T04:00:00Z",
        last_successful_time="2026-11-29T04:03:00Z",
        last_duration_seconds=41.5,
    )
    failing = Condition(
        type="DrillFailed",
        status="True",
        reason="DrillCheckFailed",
        message="x",
        lastTransitionTime="2026-12-06T04:01:00Z",
    )
    status = BackupScheduleStatus(drill=drill, conditions=[failing])
    metrics.record_schedule("vault", "nightly-metrics", status, pruned=0)
    assert sample("walwarden_schedule_last_drill_timestamp_seconds") == unix(2026, 12, 6, 4)
    assert sample("walwarden_schedule_last_successful_drill_timestamp_seconds") == unix(2026, 11, 29, 4, 3)
    assert sample("walwarden_schedule_last_drill_duration_seconds") == 41.5
    assert sample("walwarden_schedule_drill_failed") == 1
    passed = status.model_copy(update={"conditions": [failing.model_copy(update={"status": "False"})]})
    metrics.record_schedule("vault", "nightly-metrics", passed, pruned=0)
    assert sample("walwarden_schedule_drill_failed") == 0
    metrics.record_schedule("vault", "nightly-metrics", BackupScheduleStatus(), pruned=0)  # spec.drill removed
    assert sample("walwarden_schedule_drill_failed") is None
    assert sample("walwarden_schedule_last_successful_drill_timestamp_seconds") is None
    metrics.forget_schedule("vault", "nightly-metrics")
