"""A schedule's restore drills over fake API objects, the clock passed in: due by cron and after
each new backup, never two at once, what the newest said (DrillFailed once), the newest few kept."""

from __future__ import annotations

from typing import Any

from tests.unit.fakes import FakeKube
from tests.unit.schedule.test_reconcile import add_request, at, schedule
from tests.unit.schedule.test_reconcile import requests as kube_requests
from walwarden.api.common import format_timestamp
from walwarden.api.schedule import DRILL_LABEL, SCHEDULE_LABEL, SCHEDULED_AT_ANNOTATION
from walwarden.schedule import reconcile as reconciling

TARGET = {"secretRef": {"name": "vault-db-admin"}}
CHECKS = [{"name": "has-accounts", "sql": "SELECT count(*) > 0 FROM accounts", "expected": "t"}]


def drills(kube: FakeKube) -> dict[str, dict]:
    return {name: body for (_, plural, name), body in kube.custom_objects.items() if plural == "restorerequests"}


def finish(kube: FakeKube, name: str, phase: str, message: str = "", reason: str = "DrillCheckFailed") -> None:
    body = kube.custom_objects[(next(iter(kube.custom_objects))[0], "restorerequests", name)]
    completed = format_timestamp(at(4, 10, day=6))
    body["status"] = {"phase": phase, "completedAt": completed, "durationSeconds": 12.5, "message": message}
    if phase == "Failed":
        body["status"]["conditions"] = [{"type": "Failed", "status": "True", "reason": reason, "message": message}]


def weekly(status: dict | None = None, **drill: Any) -> Any:
    spec = {"schedule": "0 4 * * 0", "target": TARGET, "checks": CHECKS} | drill
    return schedule(status, drill=spec)


def test_a_drill_by_cron_restores_the_newest_successful_backup_into_the_scratch_database_and_only_once():
    kube = FakeKube()
    add_request(kube, "nightly-20261205-0230", at(2, 30, day=5), "Succeeded")
    add_request(kube, "nightly-20261206-0230", at(2, 30, day=6), "Failed")
    first = reconciling.reconcile(kube, weekly(), at(4, 0, day=6))  # 2026-12-06 is a Sunday
    [(name, body)] = drills(kube).items()
    assert name == "nightly-drill-20261206-0400"
    assert body["metadata"]["labels"] == {SCHEDULE_LABEL: "nightly", DRILL_LABEL: "true"}
    assert body["metadata"]["annotations"] == {SCHEDULED_AT_ANNOTATION: "2026-12-06T04:00:00Z"}
    assert body["spec"] == {
        "mode": "Drill",
        "source": {"backupRef": {"name": "nightly-20261205-0230"}},  # the newest that succeeded
        "target": {"secretRef": {"name": "vault-db-admin"}, "roles": "Require"},
        "drill": {"checks": CHECKS, "statementTimeoutSeconds": 60},
    }
    assert "DrillCreated" in [e.reason for e in first.events]
    assert first.status.drill.last_result == "Running"
    assert first.status.drill.next_drill_time == "2026-12-13T04:00:00Z"
    again = reconciling.reconcile(
        kube, schedule(first.status.to_dict(), drill=weekly().spec.drill.to_dict()), at(4, 1, day=6)
    )
    assert len(drills(kube)) == 1 and "DrillCreated" not in [e.reason for e in again.events]
    # Its status lost (a crash before the patch): the same name is found, no second drill.
    lost = reconciling.reconcile(kube, weekly(), at(4, 1, day=6))
    assert len(drills(kube)) == 1 and "DrillCreated" not in [e.reason for e in lost.events]


def test_after_each_backup_a_new_successful_backup_is_drilled_once_and_never_two_drills_at_once():
    kube = FakeKube()
    add_request(kube, "nightly-20261201-0230", at(2, 30), "Succeeded")
    spec = {"afterEachBackup": True, "target": TARGET}
    first = reconciling.reconcile(kube, schedule(drill=spec), at(2, 40))
    assert list(drills(kube)) == ["nightly-20261201-0230-drill"]
    again = reconciling.reconcile(kube, schedule(first.status.to_dict(), drill=spec), at(2, 41))
    assert len(drills(kube)) == 1 and not [e for e in again.events if e.reason.startswith("Drill")]
    add_request(kube, "nightly-20261202-0230", at(2, 30, day=2), "Succeeded")
    waiting = reconciling.reconcile(kube, schedule(again.status.to_dict(), drill=spec), at(2, 40, day=2))
    assert len(drills(kube)) == 1  # the first still runs: they share the scratch database
    assert not [e for e in waiting.events if e.reason == "DrillSkipped"]  # it waits, quietly
    finish(kube, "nightly-20261201-0230-drill", "Succeeded", "drill passed")
    done = reconciling.reconcile(kube, schedule(waiting.status.to_dict(), drill=spec), at(2, 41, day=2))
    assert sorted(drills(kube)) == ["nightly-20261201-0230-drill", "nightly-20261202-0230-drill"]
    assert done.status.drill.last_successful_drill == "nightly-20261201-0230-drill"


def test_without_a_successful_backup_a_drill_due_by_cron_is_skipped_and_said():
    kube = FakeKube()
    done = reconciling.reconcile(kube, weekly(), at(4, 0, day=6))
    assert not drills(kube)
    assert [e.message for e in done.events if e.reason == "DrillSkipped"] == [
        "drill nightly-drill-20261206-0400 not started: the schedule has no successful backup yet"
    ]


def test_a_failed_drill_raises_drill_failed_once_and_a_later_success_clears_it():
    kube = FakeKube()
    add_request(kube, "nightly-20261205-0230", at(2, 30, day=5), "Succeeded")
    started = reconciling.reconcile(kube, weekly(), at(4, 0, day=6))
    finish(kube, "nightly-drill-20261206-0400", "Failed", "1 of 1 check(s) failed")
    failed = reconciling.reconcile(kube, weekly(started.status.to_dict()), at(4, 20, day=6))
    [condition] = [c for c in failed.status.conditions if c.type == "DrillFailed"]
    assert (condition.status, condition.reason) == ("True", "DrillCheckFailed")
    assert condition.message == "nightly-drill-20261206-0400: 1 of 1 check(s) failed"
    assert [e.warning for e in failed.events if e.reason == "DrillFailed"] == [True]
    assert failed.status.drill.last_result == "Failed" and failed.status.drill.last_duration_seconds == 12.5
    quiet = reconciling.reconcile(kube, weekly(failed.status.to_dict()), at(4, 21, day=6))
    assert not [e for e in quiet.events if e.reason == "DrillFailed"]  # said once
    nextweek = reconciling.reconcile(kube, weekly(quiet.status.to_dict()), at(4, 0, day=13))
    finish(kube, "nightly-drill-20261213-0400", "Succeeded", "ok")
    cleared = reconciling.reconcile(kube, weekly(nextweek.status.to_dict()), at(4, 20, day=13))
    [condition] = [c for c in cleared.status.conditions if c.type == "DrillFailed"]
    assert condition.status == "False" and cleared.status.drill.last_successful_drill == "nightly-drill-20261213-0400"


def test_only_the_newest_finished_drills_are_kept():
    kube = FakeKube()
    add_request(kube, "nightly-20261201-0230", at(2, 30), "Succeeded")
    status = None
    for day in (6, 13, 20, 27):
        done = reconciling.reconcile(kube, weekly(status, historyLimit=2), at(4, 0, day=day))
        finish(kube, f"nightly-drill-202612{day:02d}-0400", "Succeeded")
        status = done.status.to_dict()
    reconciling.reconcile(kube, weekly(status, historyLimit=2), at(4, 5, day=27))
    assert sorted(drills(kube)) == ["nightly-drill-20261220-0400", "nightly-drill-20261227-0400"]


def test_suspend_stops_drills_too_and_removing_drill_forgets_its_status():
    kube = FakeKube()
    add_request(kube, "nightly-20261205-0230", at(2, 30, day=5), "Succeeded")
    suspended = schedule(drill={"schedule": "0 4 * * 0", "target": TARGET}, suspend=True)
    done = reconciling.reconcile(kube, suspended, at(4, 0, day=6))
    assert not drills(kube) and done.status.drill.next_drill_time is None
    gone = reconciling.reconcile(kube, schedule(done.status.to_dict()), at(4, 0, day=7))
    assert gone.status.drill is None and not [c for c in gone.status.conditions if c.type == "DrillFailed"]


def test_an_unusable_drill_cron_stops_the_drills_loudly_but_never_the_backups():
    kube = FakeKube()
    add_request(kube, "nightly-20261205-0230", at(2, 30, day=5), "Succeeded")
    done = reconciling.reconcile(kube, weekly(schedule="61 * * * *"), at(2, 30, day=6))
    assert not drills(kube)
    assert "nightly-20261206-0230" in kube_requests(kube)  # the night's backup still runs
    [condition] = [c for c in done.status.conditions if c.type == "DrillFailed"]
    assert (condition.status, condition.reason) == ("True", "DrillScheduleInvalid")
    assert condition.message.startswith("spec.drill.schedule '61 * * * *' is not a cron expression")
    assert [e.reason for e in done.events if e.reason.startswith("Drill")] == ["DrillScheduleInvalid"]
    again = reconciling.reconcile(kube, weekly(done.status.to_dict(), schedule="61 * * * *"), at(2, 31, day=6))
    assert not [e for e in again.events if e.reason == "DrillScheduleInvalid"]  # said once
