"""Grandfather-father-son retention over generated history (one backup a day for four months)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from walwarden.api.schedule import Retention
from walwarden.schedule.retention import Backup, Outcome, decide

NOW = datetime(2026, 12, 1, 3, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")


def nightly(first: date, last: date, outcome: Outcome = Outcome.SUCCEEDED) -> list[Backup]:
    days = (last - first).days + 1
    backups = []
    for n in range(days):
        at = datetime.combine(first + timedelta(days=n), datetime.min.time(), UTC).replace(hour=2)
        backups.append(Backup(f"nightly-{at:%Y%m%d}", at, outcome, finished_at=at + timedelta(minutes=5)))
    return backups


HISTORY = nightly(date(2026, 8, 1), date(2026, 11, 30))
GFS = Retention(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=3)


def names(*days: str) -> set[str]:
    return {f"nightly-2026{day}" for day in days}


def test_gfs_keeps_the_last_days_the_newest_of_each_week_and_month_and_prunes_the_rest():
    decision = decide(HISTORY, GFS, UTC_ZONE, NOW)
    days = names("1124", "1125", "1126", "1127", "1128", "1129", "1130")
    weeks = names("1130", "1129", "1122", "1115")  # ISO weeks 49 (Mon 30th), 48, 47, 46: their Sundays
    months = names("1130", "1031", "0930")
    assert set(decision.keep) == days | weeks | months
    assert decision.keep["nightly-20261130"] == ["newest", "last 3", "daily", "weekly", "monthly"]
    assert decision.keep["nightly-20261031"] == ["monthly"]
    assert set(decision.prune) == {b.name for b in HISTORY} - set(decision.keep)
    assert len(decision.prune) == len(HISTORY) - 11 and decision.prune[0] == "nightly-20261123"


def test_the_buckets_follow_the_schedules_time_zone():
    # 02:00 UTC on 1 Nov is still 31 Oct in America/Los_Angeles: October's newest there.
    decision = decide(HISTORY, Retention(keep_last=1, keep_monthly=2), ZoneInfo("America/Los_Angeles"), NOW)
    assert set(decision.keep) == names("1130", "1101")


def test_max_age_overrides_the_buckets_but_never_the_newest_success():
    decision = decide(HISTORY, GFS.model_copy(update={"max_age_days": 60}), UTC_ZONE, NOW)
    assert "nightly-20260930" in decision.prune and "nightly-20261031" in decision.keep
    old = nightly(date(2026, 1, 1), date(2026, 1, 3))
    decision = decide(old, Retention(max_age_days=30), UTC_ZONE, NOW)
    assert list(decision.keep) == ["nightly-20260103"] and decision.prune == ["nightly-20260102", "nightly-20260101"]


def test_failed_requests_are_kept_a_while_for_their_message_and_running_ones_always():
    failed = nightly(date(2026, 11, 29), date(2026, 11, 30), Outcome.FAILED)
    running = [Backup("nightly-20261201", NOW - timedelta(hours=1), Outcome.RUNNING)]
    ok = nightly(date(2026, 11, 20), date(2026, 11, 20))
    decision = decide(failed + running + ok, Retention(keep_failed_hours=48), UTC_ZONE, NOW)
    assert decision.prune == ["nightly-20261129"]  # failed 49 h ago; the one of 25 h ago stays
    assert list(decision.keep) == ["nightly-20261120"]  # the only success: newest


def test_a_backup_a_restore_needs_or_under_object_lock_is_never_pruned():
    history = nightly(date(2026, 11, 25), date(2026, 11, 30))
    history[0] = Backup(**{**history[0].__dict__, "in_use_by": "restore-incident-42"})
    history[1] = Backup(**{**history[1].__dict__, "locked_until": NOW + timedelta(days=3)})
    history[2] = Backup(**{**history[2].__dict__, "locked_until": NOW - timedelta(days=1)})  # lock over
    decision = decide(history, Retention(keep_last=2), UTC_ZONE, NOW)
    assert decision.blocked == {
        "nightly-20261125": "needed by RestoreRequest restore-incident-42",
        "nightly-20261126": f"under S3 Object Lock until {(NOW + timedelta(days=3)).isoformat()}",
    }
    assert decision.prune == ["nightly-20261128", "nightly-20261127"]
