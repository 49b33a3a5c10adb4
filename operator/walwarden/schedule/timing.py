"""When a schedule's runs are due: pure functions of the cron expression, its time zone, the
last run handled and now, so tests drive the clock by passing `now`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

# Counting missed runs after a long outage walks the cron times one by one: stop counting here
# (a schedule every minute down for a year is "at least this many", not a minute of CPU).
MISSED_COUNT_LIMIT = 10_000


class ScheduleInvalid(ValueError):
    """The schedule or time zone cannot be used; the message says what to change."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleInvalid(
            f"spec.timeZone {name!r} is not an IANA time zone: use a name such as UTC or Europe/Zurich"
        ) from None


def check(expression: str, time_zone: str, field: str = "spec.schedule") -> ZoneInfo:
    """The schedule's time zone, once both it and the cron expression (of `field`) are usable."""
    tz = zone(time_zone)
    if not croniter.is_valid(expression):
        raise ScheduleInvalid(
            f"{field} {expression!r} is not a cron expression: five fields (minute hour day-of-month "
            "month day-of-week), e.g. '30 2 * * *' for 02:30 every day, or @daily, @hourly, @weekly"
        )
    try:  # valid, but a day that never comes (30 February) would leave the schedule silently dead
        croniter(expression, datetime(2000, 1, 1, tzinfo=tz)).get_next(datetime)
    except CroniterBadDateError:
        raise ScheduleInvalid(
            f"{field} {expression!r} never fires (its day-of-month never falls in its month, as 30 February): "
            "choose a day that exists, e.g. '0 0 28 2 *' or '0 0 L 2 *' for the last day of February"
        ) from None
    return tz


def next_run(expression: str, time_zone: str, after: datetime) -> datetime:
    """The first cron time strictly after `after` (aware), in UTC."""
    tz = check(expression, time_zone)
    return next(_times_after(expression, tz, after))


def _times_after(expression: str, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """The cron times strictly after `after`, in UTC. When clocks go back (autumn), a time in the
    repeated hour comes twice; a job at a fixed hour runs at the first only (as cron does: 02:30
    every night is once, not twice, that night), a job of every hour runs in both."""
    walker = croniter(expression, after.astimezone(tz))
    fixed_hour = _hour_field(expression) != "*"
    while True:
        moment = walker.get_next(datetime)
        if fixed_hour and _second_of_a_repeated_time(moment):
            continue
        yield _utc(moment)


def _latest_until(expression: str, tz: ZoneInfo, now: datetime) -> datetime:
    """The newest cron time at or before `now`, in UTC (with the rule of `_times_after`)."""
    # get_prev is strictly before its start: start a microsecond later so a run due exactly now counts.
    walker = croniter(expression, (now + timedelta(microseconds=1)).astimezone(tz))
    fixed_hour = _hour_field(expression) != "*"
    while True:
        moment = walker.get_prev(datetime)
        if not (fixed_hour and _second_of_a_repeated_time(moment)):
            return _utc(moment)


def _hour_field(expression: str) -> str:
    fields = expression.split()
    if len(fields) == 1:  # a macro: only @hourly has no fixed hour
        return "*" if fields[0] == "@hourly" else "0"
    return fields[1]


def _second_of_a_repeated_time(moment: datetime) -> bool:
    """A local time that also happened an hour earlier (fold=1 of an ambiguous wall time)."""
    first = moment.replace(fold=0)
    return moment.utcoffset() != first.utcoffset() and _utc(moment) != _utc(first)


@dataclass(frozen=True)
class Due:
    """What a pass should do now."""

    run_at: datetime | None  # the cron time to start a run for now, or None
    missed: int  # cron times since the last handled one that will never run (past the deadline)
    handled_until: datetime  # the newest cron time now accounted for (run or missed)
    next_at: datetime  # the next cron time after now


def due(expression: str, time_zone: str, last: datetime, now: datetime, deadline: timedelta) -> Due:
    """The runs between `last` (the newest cron time already handled, or the schedule's creation)
    and `now`: only the newest is started, if it is at most `deadline` old; every other one is
    missed. So an operator back after an outage starts one catch-up run, never a burst."""
    tz = check(expression, time_zone)
    next_at = next(_times_after(expression, tz, now))
    latest = _latest_until(expression, tz, now)
    if latest <= last:
        return Due(run_at=None, missed=0, handled_until=last, next_at=next_at)
    times = _count_between(expression, tz, last, latest)  # cron times in (last, latest]
    if now - latest <= deadline:
        return Due(run_at=latest, missed=times - 1, handled_until=latest, next_at=next_at)
    return Due(run_at=None, missed=times, handled_until=latest, next_at=next_at)


def _count_between(expression: str, tz: ZoneInfo, after: datetime, until: datetime) -> int:
    count = 0
    for moment in _times_after(expression, tz, after):
        if moment > until or count >= MISSED_COUNT_LIMIT:
            break
        count += 1
    return count


def run_name(schedule: str, run_at: datetime) -> str:
    """The BackupRequest of the run at `run_at`: <schedule>-<YYYYMMDD-HHMM> (UTC), the same name
    on every pass, so a crash between creating it and recording it never starts a second one."""
    return f"{schedule[:48]}-{run_at.astimezone(UTC):%Y%m%d-%H%M}"


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(fold=0)  # croniter sets fold; UTC has none
