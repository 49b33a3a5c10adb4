"""When a schedule's runs are due, with the clock driven by `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from walwarden.schedule import timing

HOUR = timedelta(hours=1)


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_a_run_every_minute_is_due_at_each_minute_once():
    last = at(2026, 12, 1, 12, 0)
    assert timing.due("* * * * *", "UTC", last, at(2026, 12, 1, 12, 0, 59), HOUR).run_at is None
    due = timing.due("* * * * *", "UTC", last, at(2026, 12, 1, 12, 1, 5), HOUR)
    assert (due.run_at, due.missed, due.next_at) == (at(2026, 12, 1, 12, 1), 0, at(2026, 12, 1, 12, 2))
    again = timing.due("* * * * *", "UTC", due.handled_until, at(2026, 12, 1, 12, 1, 15), HOUR)
    assert again.run_at is None and again.missed == 0


def test_a_run_due_exactly_now_starts_now():
    due = timing.due("0 12 * * *", "UTC", at(2026, 11, 30, 12), at(2026, 12, 1, 12), HOUR)
    assert due.run_at == at(2026, 12, 1, 12)


def test_after_an_outage_one_catch_up_run_starts_and_the_rest_are_counted_missed():
    due = timing.due("*/5 * * * *", "UTC", at(2026, 12, 1, 10, 0), at(2026, 12, 1, 12, 2), HOUR)
    assert due.run_at == at(2026, 12, 1, 12, 0)  # the newest only
    assert due.missed == 23  # 10:05 ... 11:55
    assert due.handled_until == at(2026, 12, 1, 12, 0)


def test_a_run_later_than_its_starting_deadline_is_missed_not_started():
    due = timing.due("0 2 * * *", "UTC", at(2026, 11, 30, 2), at(2026, 12, 1, 9), HOUR)
    assert due.run_at is None and due.missed == 1 and due.next_at == at(2026, 12, 2, 2)


def test_the_time_zone_decides_the_hour_including_daylight_saving_time():
    # 02:30 Europe/Zurich is 01:30 UTC in winter and 00:30 UTC in summer.
    assert timing.next_run("30 2 * * *", "Europe/Zurich", at(2026, 12, 1)) == at(2026, 12, 1, 1, 30)
    assert timing.next_run("30 2 * * *", "Europe/Zurich", at(2026, 7, 1)) == at(2026, 7, 1, 0, 30)
    # On the night 02:30 does not exist (clocks jump 02:00 -> 03:00), the run is at 03:00 local.
    assert timing.next_run("30 2 * * *", "Europe/Zurich", at(2026, 3, 28, 12)) == at(2026, 3, 29, 1, 0)


def test_when_clocks_go_back_a_fixed_hour_runs_once_and_an_hourly_one_in_both_hours():
    # 25 Oct 2026, Zurich: 03:00 CEST -> 02:00 CET, so 02:30 local happens at 00:30 and 01:30 UTC.
    night = at(2026, 10, 24, 12)
    first = timing.next_run("30 2 * * *", "Europe/Zurich", night)
    assert first == at(2026, 10, 25, 0, 30)
    assert timing.next_run("30 2 * * *", "Europe/Zurich", first) == at(2026, 10, 26, 1, 30)  # not 01:30 that night
    hourly = [timing.next_run("30 * * * *", "Europe/Zurich", at(2026, 10, 25, 0, 0))]
    hourly.append(timing.next_run("30 * * * *", "Europe/Zurich", hourly[-1]))
    assert hourly == [at(2026, 10, 25, 0, 30), at(2026, 10, 25, 1, 30)]  # each real hour
    # Due after the repeated hour: nothing to start and nothing missed for the second 02:30.
    due = timing.due("30 2 * * *", "Europe/Zurich", first, at(2026, 10, 25, 1, 40), timedelta(hours=1))
    assert (due.run_at, due.missed, due.next_at) == (None, 0, at(2026, 10, 26, 1, 30))


def test_a_bad_expression_or_time_zone_says_what_to_write():
    with pytest.raises(timing.ScheduleInvalid, match="five fields"):
        timing.check("61 * * * *", "UTC")
    with pytest.raises(timing.ScheduleInvalid, match="IANA time zone"):
        timing.check("@daily", "Mars/Olympus")


def test_an_expression_that_never_fires_is_refused_rather_than_left_silent():
    """30 February is a valid cron expression that never comes: the schedule would never run, and
    said nothing (croniter raised on every pass)."""
    with pytest.raises(timing.ScheduleInvalid, match="never fires"):
        timing.check("0 0 30 2 *", "UTC")
    with pytest.raises(timing.ScheduleInvalid, match="never fires"):
        timing.due("0 0 30 2 *", "UTC", at(2026, 12, 1, 0, 0), at(2026, 12, 2, 0, 0), timedelta(hours=1))
    assert timing.check("0 0 L 2 *", "UTC")  # the last day of February is fine


def test_missed_runs_are_counted_up_to_a_limit_after_a_very_long_outage():
    due = timing.due("* * * * *", "UTC", at(2020, 1, 1), at(2026, 1, 1, 0, 0, 30), HOUR)
    assert due.run_at == at(2026, 1, 1) and due.missed == timing.MISSED_COUNT_LIMIT - 1


def test_each_run_has_one_name_from_its_cron_time():
    assert timing.run_name("nightly", at(2026, 12, 1, 2, 30)) == "nightly-20261201-0230"
    assert len(timing.run_name("x" * 63, at(2026, 12, 1))) <= 63
