"""Which of a schedule's backups are kept (grandfather-father-son) and which are pruned: a pure
function of the backups, the policy and now, so tests generate months of history in memory."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from walwarden.api.schedule import Retention


class Outcome(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    RUNNING = "Running"  # not finished: never pruned


@dataclass(frozen=True)
class Backup:
    """One BackupRequest of the schedule, as retention sees it."""

    name: str
    scheduled_at: datetime  # the cron time it is the run of (aware)
    outcome: Outcome
    finished_at: datetime | None = None
    in_use_by: str | None = None  # a RestoreRequest that still needs it
    locked_until: datetime | None = None  # S3 Object Lock retention of its objects


@dataclass
class Decision:
    keep: dict[str, list[str]] = field(default_factory=dict)  # name -> why
    prune: list[str] = field(default_factory=list)  # newest first
    blocked: dict[str, str] = field(default_factory=dict)  # due for pruning, but cannot be yet: why

    @property
    def kept_successful(self) -> int:
        return len(self.keep)


def decide(backups: Iterable[Backup], policy: Retention, time_zone: ZoneInfo, now: datetime) -> Decision:
    """What to keep and what to prune. Successful backups: kept when a rule keeps them (the
    newest N; the newest of each of the last D days, W ISO weeks, M months in the schedule's time
    zone), unless older than maxAgeDays; the newest successful one always. Failed ones: pruned
    keepFailedHours after they finished. Running ones: left alone."""
    decision = Decision()
    successful = sorted(
        (b for b in backups if b.outcome == Outcome.SUCCEEDED), key=lambda b: b.scheduled_at, reverse=True
    )
    reasons: dict[str, list[str]] = {b.name: [] for b in successful}
    if successful:
        reasons[successful[0].name].append("newest")
    for backup in successful[: policy.keep_last]:
        reasons[backup.name].append(f"last {policy.keep_last}")
    buckets: list[tuple[str, int, Callable[[datetime], Hashable]]] = [
        ("daily", policy.keep_daily, lambda t: t.date()),
        ("weekly", policy.keep_weekly, lambda t: t.isocalendar()[:2]),
        ("monthly", policy.keep_monthly, lambda t: (t.year, t.month)),
    ]
    for label, count, bucket_of in buckets:
        seen: set[Hashable] = set()
        for backup in successful:  # newest first: the first of each bucket is its newest
            bucket = bucket_of(backup.scheduled_at.astimezone(time_zone))
            if bucket in seen:
                continue
            if len(seen) == count:
                break
            seen.add(bucket)
            reasons[backup.name].append(label)
    if policy.max_age_days is not None:
        oldest = now - timedelta(days=policy.max_age_days)
        for backup in successful[1:]:
            if backup.scheduled_at < oldest:
                reasons[backup.name] = []
    due = [b for b in successful if not reasons[b.name]]
    decision.keep = {name: why for name, why in reasons.items() if why}
    failed_after = timedelta(hours=policy.keep_failed_hours)
    due += [
        b for b in backups if b.outcome == Outcome.FAILED and now - (b.finished_at or b.scheduled_at) >= failed_after
    ]
    for backup in sorted(due, key=lambda b: b.scheduled_at, reverse=True):
        if backup.in_use_by:
            decision.blocked[backup.name] = f"needed by RestoreRequest {backup.in_use_by}"
        elif backup.locked_until and backup.locked_until > now:
            decision.blocked[backup.name] = f"under S3 Object Lock until {backup.locked_until.isoformat()}"
        else:
            decision.prune.append(backup.name)
    return decision
