"""Prometheus metrics of the operator (served on WALWARDEN_METRICS_PORT at /metrics).

Recorded when a request finishes, from what its status says, so the numbers are the ones users
see in `kubectl get`: results by kind, step durations, restore downtime, backup size, and the
time of the last successful backup per namespace (alert when it gets old).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from walwarden.api import BackupPhase, BackupRequestStatus, RestoreRequestStatus, StepState, parse_timestamp
from walwarden.api.common import ConditionType, RequestStatus
from walwarden.api.schedule import BackupScheduleStatus

REQUESTS = Counter(
    "walwarden_requests_total", "Finished requests, by kind and result (phase)", ["kind", "namespace", "result"]
)
STEP_SECONDS = Histogram(
    "walwarden_step_duration_seconds",
    "Duration of workflow steps",
    ["kind", "step"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
DOWNTIME_SECONDS = Histogram(
    "walwarden_restore_downtime_seconds",
    "Seconds the vault's services were stopped by a restore",
    ["namespace"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
BACKUP_BYTES = Gauge("walwarden_backup_size_bytes", "Size of the last successful backup", ["namespace"])
LAST_BACKUP = Gauge(
    "walwarden_last_successful_backup_timestamp_seconds", "Unix time of the last successful backup", ["namespace"]
)


def serve(port: int, address: str) -> None:
    start_http_server(port, addr=address)


def record_finished(kind: str, namespace: str, status: RequestStatus) -> None:
    REQUESTS.labels(kind, namespace, status.phase_name or "Unknown").inc()
    for step in status.steps:
        if step.started_at and step.finished_at and step.state != StepState.SKIPPED:
            seconds = (parse_timestamp(step.finished_at) - parse_timestamp(step.started_at)).total_seconds()
            STEP_SECONDS.labels(kind, step.name).observe(seconds)
    if isinstance(status, RestoreRequestStatus) and status.downtime_seconds is not None:
        DOWNTIME_SECONDS.labels(namespace).observe(status.downtime_seconds)
    if isinstance(status, BackupRequestStatus):
        remember_backup(namespace, status)


_latest_backup: dict[str, float] = {}  # namespace → completion time of the newest successful backup


def remember_backup(namespace: str, status: BackupRequestStatus) -> None:
    """Set the backup gauges from a Succeeded BackupRequest unless a newer one is known. Also
    called for the finished requests an operator finds at start-up, so a restart does not make the
    'last successful backup' series vanish (an alert on its age would go silent)."""
    if status.phase != BackupPhase.SUCCEEDED or not status.completed_at or status.artifact is None:
        return
    completed = parse_timestamp(status.completed_at).timestamp()
    if completed < _latest_backup.get(namespace, 0):
        return
    _latest_backup[namespace] = completed
    BACKUP_BYTES.labels(namespace).set(status.artifact.size_bytes)
    LAST_BACKUP.labels(namespace).set(completed)


# --- BackupSchedule ------------------------------------------------------------------------------
_SCHEDULE_LABELS = ["namespace", "schedule"]
SCHEDULE_NEXT_RUN = Gauge(
    "walwarden_schedule_next_run_timestamp_seconds", "Unix time of the schedule's next run", _SCHEDULE_LABELS
)
SCHEDULE_LAST_RUN = Gauge(
    "walwarden_schedule_last_run_timestamp_seconds", "Unix time (cron time) of the last run handled", _SCHEDULE_LABELS
)
SCHEDULE_LAST_SUCCESS = Gauge(
    "walwarden_schedule_last_successful_backup_timestamp_seconds",
    "Unix time the schedule's newest successful backup completed",
    _SCHEDULE_LABELS,
)
SCHEDULE_MISSED = Gauge(
    "walwarden_schedule_missed_runs", "Runs not started (past the starting deadline, or forbidden)", _SCHEDULE_LABELS
)
SCHEDULE_KEPT = Gauge("walwarden_schedule_backups_kept", "Successful backups the retention keeps", _SCHEDULE_LABELS)
SCHEDULE_PRUNED = Counter(
    "walwarden_schedule_pruned_backups_total", "Backups pruned by the schedule's retention", _SCHEDULE_LABELS
)
SCHEDULE_LAST_DRILL = Gauge(
    "walwarden_schedule_last_drill_timestamp_seconds",
    "Unix time the schedule's newest drill is for (its cron time, or when its backup was drilled)",
    _SCHEDULE_LABELS,
)
SCHEDULE_LAST_DRILL_SUCCESS = Gauge(
    "walwarden_schedule_last_successful_drill_timestamp_seconds",
    "Unix time the schedule's newest successful restore drill completed",
    _SCHEDULE_LABELS,
)
SCHEDULE_DRILL_DURATION = Gauge(
    "walwarden_schedule_last_drill_duration_seconds", "Seconds the newest finished drill took", _SCHEDULE_LABELS
)
SCHEDULE_DRILL_FAILED = Gauge(
    "walwarden_schedule_drill_failed", "1 while the schedule's newest finished drill failed", _SCHEDULE_LABELS
)
_SCHEDULE_GAUGES = (
    SCHEDULE_NEXT_RUN,
    SCHEDULE_LAST_RUN,
    SCHEDULE_LAST_SUCCESS,
    SCHEDULE_MISSED,
    SCHEDULE_KEPT,
    SCHEDULE_LAST_DRILL,
    SCHEDULE_LAST_DRILL_SUCCESS,
    SCHEDULE_DRILL_DURATION,
    SCHEDULE_DRILL_FAILED,
)


def record_schedule(namespace: str, name: str, status: BackupScheduleStatus, pruned: int) -> None:
    """The schedule's gauges from its status after a pass (the suspended one has no next run)."""
    drill = status.drill
    moments = (
        (SCHEDULE_NEXT_RUN, status.next_schedule_time),
        (SCHEDULE_LAST_RUN, status.last_schedule_time),
        (SCHEDULE_LAST_SUCCESS, status.last_successful_time),
        (SCHEDULE_LAST_DRILL, drill.last_drill_time if drill else None),
        (SCHEDULE_LAST_DRILL_SUCCESS, drill.last_successful_time if drill else None),
    )
    for gauge, moment in moments:
        if moment:
            gauge.labels(namespace, name).set(parse_timestamp(moment).timestamp())
        else:
            _forget(gauge, namespace, name)
    SCHEDULE_MISSED.labels(namespace, name).set(status.missed_runs)
    if status.retention is not None:
        SCHEDULE_KEPT.labels(namespace, name).set(status.retention.kept)
    if pruned:
        SCHEDULE_PRUNED.labels(namespace, name).inc(pruned)
    if drill is None:
        for gauge in (SCHEDULE_DRILL_DURATION, SCHEDULE_DRILL_FAILED):
            _forget(gauge, namespace, name)
        return
    if drill.last_duration_seconds is not None:
        SCHEDULE_DRILL_DURATION.labels(namespace, name).set(drill.last_duration_seconds)
    failing = any(c.type == ConditionType.DRILL_FAILED and c.status == "True" for c in status.conditions)
    SCHEDULE_DRILL_FAILED.labels(namespace, name).set(1 if failing else 0)


def forget_schedule(namespace: str, name: str) -> None:
    for series in (*_SCHEDULE_GAUGES, SCHEDULE_PRUNED):
        _forget(series, namespace, name)


def _forget(gauge: Gauge | Counter, namespace: str, name: str) -> None:
    try:
        gauge.remove(namespace, name)
    except KeyError:
        pass  # never set
