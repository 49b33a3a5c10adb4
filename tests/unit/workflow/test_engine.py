"""The step engine: order, records, waiting, skipping, dry runs, and the failure path with undos."""

from __future__ import annotations

import pytest

from walwarden.api import BackupRequestStatus
from walwarden.workflow.engine import Run, Skip, Step, StepFailed, StepTable, UndoCause, Wait, advance


def make_run(status: BackupRequestStatus | None = None, dry_run: bool = False) -> Run:
    return Run(
        kind="BackupRequest",
        namespace="ns",
        name="r",
        uid="u",
        generation=3,
        owner={},
        spec=None,
        status=status or BackupRequestStatus(),
        kube=None,
        settings=None,
        dry_run=dry_run,
    )


def table(*steps: Step) -> StepTable:
    return StepTable(tuple(steps))


def recorder(log: list[str], name: str, result=None):
    def run(_run):
        log.append(name)
        if isinstance(result, Exception):
            raise result
        return result

    return run


def states(run: Run) -> dict[str, str]:
    return {entry.name: entry.state for entry in run.status.steps}


def reasons(run: Run) -> list[str]:
    return [event.reason for event in run.events]


def test_steps_run_in_table_order_and_are_recorded():
    log = []
    steps = [Step("A", recorder(log, "A", "did a")), Step("B", recorder(log, "B"))]
    run = make_run()
    outcome = advance(table(*steps), run)
    assert outcome.finished and outcome.result == "Succeeded"
    assert log == ["A", "B"]
    assert states(run) == {"A": "Succeeded", "B": "Succeeded"}
    assert run.status.steps[0].message == "did a"
    assert all(entry.started_at and entry.finished_at for entry in run.status.steps)
    assert reasons(run) == ["AStarted", "ASucceeded", "BStarted", "BSucceeded"]


def test_a_waiting_step_stops_the_pass_and_resumes_without_rerunning_finished_steps():
    log = []
    waiting = {"left": 1}

    def b(_run):
        log.append("B")
        if waiting["left"]:
            waiting["left"] -= 1
            raise Wait("not yet", delay=2)
        return "done"

    steps = [Step("A", recorder(log, "A")), Step("B", b), Step("C", recorder(log, "C"))]
    run = make_run()
    first = advance(table(*steps), run)
    assert not first.finished and first.waiting.delay == 2
    assert states(run) == {"A": "Succeeded", "B": "Running"}
    assert run.status.current_step == "B" and run.status.message == "B: not yet"
    second_run = make_run(run.status)
    second = advance(table(*steps), second_run)
    assert second.finished and second.result == "Succeeded"
    assert log == ["A", "B", "B", "C"]  # A never again
    assert reasons(second_run).count("BStarted") == 0  # started once, in the first pass


def test_a_failure_skips_ordinary_steps_but_runs_the_always_steps():
    log = []
    steps = [
        Step("A", recorder(log, "A", StepFailed("Broken", "A broke; fix X"))),
        Step("B", recorder(log, "B")),
        Step("Cleanup", recorder(log, "Cleanup"), cleanup=True),
    ]
    run = make_run()
    outcome = advance(table(*steps), run)
    assert outcome.finished and outcome.result == "Failed"
    assert log == ["A", "Cleanup"]
    assert states(run) == {"A": "Failed", "B": "Skipped", "Cleanup": "Succeeded"}
    failed = run.status.failure
    assert (failed.reason, failed.message, failed.observed_generation) == ("Broken", "A broke; fix X", 3)
    assert run.status.message == "A broke; fix X"


def test_a_later_failure_does_not_hide_the_first():
    steps = [
        Step("A", recorder([], "A", StepFailed("First", "first problem"))),
        Step("Cleanup", recorder([], "C", StepFailed("Second", "cleanup problem")), cleanup=True),
    ]
    run = make_run()
    advance(table(*steps), run)
    assert run.status.failure.reason == "First"
    assert states(run)["Cleanup"] == "Failed"


def test_skip_records_why():
    run = make_run()
    advance(table(Step("Quiesce", recorder([], "Q", Skip("spec.quiesce is false")))), run)
    assert (run.status.steps[0].state, run.status.steps[0].message) == ("Skipped", "spec.quiesce is false")


def test_a_step_that_skips_itself_or_does_not_apply_posts_no_event():
    steps = (
        Step("A", recorder([], "A", StepFailed("X", "x"))),
        Step("Quiesce", recorder([], "Q", Skip("spec.quiesce is false")), cleanup=True),
        Step("Rollback", None, rollback=True),  # nothing to undo: skips itself
    )
    run = make_run()
    advance(table(*steps), run)
    assert states(run) == {"A": "Failed", "Quiesce": "Skipped", "Rollback": "Skipped"}
    assert reasons(run) == ["AStarted", "X"]


def test_a_steps_own_events_follow_its_started_event():
    def a(run):
        run.event("Made", "made something")
        return "done"

    run = make_run()
    advance(table(Step("A", a)), run)
    assert reasons(run) == ["AStarted", "Made", "ASucceeded"]


def test_the_rollback_step_runs_the_undo_of_every_step_that_ran_last_first_and_only_after_a_failure():
    log = []

    def undo(name):
        def run(_run, cause):
            log.append(f"undo {name} ({cause})")
            return f"put back {name}"

        return run

    steps = (
        Step("A", recorder(log, "A"), undo=undo("A")),
        Step("B", recorder(log, "B"), undo=undo("B")),
        Step("C", recorder(log, "C", StepFailed("X", "x"))),
        Step("D", recorder(log, "D"), undo=undo("D")),
        Step("Rollback", None, rollback=True),
        Step("Release", recorder(log, "Release"), cleanup=True),
    )
    run = make_run()
    outcome = advance(table(*steps), run)
    assert log == ["A", "B", "C", "undo B (Failure)", "undo A (Failure)", "Release"]  # D never ran: no undo
    assert outcome.result == "RolledBack"
    assert run.status.step("Rollback").message == "put back B; put back A"
    log.clear()
    happy = make_run()
    ok_steps = tuple(s for s in steps if s.name != "C")
    assert advance(table(*ok_steps), happy).result == "Succeeded"
    assert "undo A (Failure)" not in log and states(happy)["Rollback"] == "Skipped"


def test_a_rollback_with_nothing_to_undo_is_skipped_and_the_request_failed():
    steps = (Step("A", recorder([], "A", StepFailed("X", "x"))), Step("Rollback", None, rollback=True))
    run = make_run()
    assert advance(table(*steps), run).result == "Failed"
    assert states(run)["Rollback"] == "Skipped"


def test_a_deletion_undoes_what_ran_with_its_cause():
    causes = []
    steps = table(
        Step("A", recorder([], "A"), undo=lambda run, cause: causes.append(cause) or "a"),
        Step("B", recorder([], "B", Wait("later"))),
    )
    run = make_run()
    advance(steps, run)
    assert steps.undo(run, UndoCause.DELETION) == ["a"] and causes == [UndoCause.DELETION]


def test_a_dry_run_runs_only_the_steps_the_table_allows():
    log = []
    steps = table(
        Step("Validate", recorder(log, "Validate"), in_dry_run=True),
        Step("Change", recorder(log, "Change")),
        Step("Release", recorder(log, "Release"), cleanup=True),
    )
    run = make_run(dry_run=True)
    assert advance(steps, run).result == "Succeeded"
    assert log == ["Validate"]
    assert states(run) == {"Validate": "Succeeded", "Change": "Skipped", "Release": "Skipped"}
    assert run.status.step("Change").message == "dry run: nothing changed"


class FakeClock:
    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def waits_then_finishes(log: list[str], waits: int):
    def run(_run):
        log.append("B")
        if len(log) <= waits:
            raise Wait("not yet", delay=5)
        return "done"

    return run


def test_a_first_wait_ends_the_pass_at_once_so_status_shows_the_step_running():
    log, clock = [], FakeClock()
    run = make_run()
    outcome = advance(
        table(Step("B", waits_then_finishes(log, 3))), run, settle_seconds=5, clock=clock, sleep=clock.sleep
    )
    assert not outcome.finished and log == ["B"] and clock.sleeps == []
    assert outcome.waiting.delay == pytest.approx(0.2)  # come back soon: the pass only wrote status
    assert states(run) == {"B": "Running"}


def two_passes(waits: int, settle_seconds: float):
    """A step that waits `waits` times: a first pass (it starts), then a second (it settles)."""
    log, clock = [], FakeClock()
    step = Step("B", waits_then_finishes(log, waits))
    first = make_run()
    advance(table(step), first, settle_seconds=settle_seconds, clock=clock, sleep=clock.sleep)
    second = make_run(first.status)
    outcome = advance(table(step), second, settle_seconds=settle_seconds, clock=clock, sleep=clock.sleep)
    return outcome, second, log, clock


def test_a_step_already_running_is_looked_at_again_within_the_pass_until_it_finishes():
    outcome, second, log, clock = two_passes(waits=3, settle_seconds=5)
    assert outcome.finished and outcome.result == "Succeeded"
    assert log == ["B", "B", "B", "B"] and clock.sleeps == [0.1, 0.2]  # noticed within 0.3 s, not 5
    assert states(second) == {"B": "Succeeded"}


def test_settling_ends_the_pass_with_the_steps_own_delay_when_the_window_is_used_up():
    outcome, _, _, clock = two_passes(waits=1000, settle_seconds=3)
    assert not outcome.finished and outcome.waiting.delay == 5
    assert sum(clock.sleeps) <= 3 and len(clock.sleeps) >= 4


def test_without_a_settle_window_every_wait_ends_the_pass_with_its_delay():
    log = []
    first = make_run()
    step = Step("B", waits_then_finishes(log, 2))
    assert advance(table(step), first).waiting.delay == 5
    assert advance(table(step), make_run(first.status)).waiting.delay == 5
    assert log == ["B", "B"]


def test_a_checkpoint_step_starts_on_a_pass_of_its_own_after_the_steps_before_it_are_recorded():
    log = []
    steps = [
        Step("A", recorder(log, "A", "did a")),
        Step("B", recorder(log, "B", "did b"), checkpoint=True, cleanup=True),
    ]
    run = make_run()
    first = advance(table(*steps), run, settle_seconds=5)
    assert not first.finished and log == ["A"]  # the pass ends before B: status now records A
    assert states(run) == {"A": "Succeeded", "B": "Running"}
    assert first.waiting is not None and first.waiting.delay <= 1
    second = advance(table(*steps), run, settle_seconds=5)
    assert second.finished and log == ["A", "B"]
    assert states(run) == {"A": "Succeeded", "B": "Succeeded"}
    assert reasons(run).count("BStarted") == 1
    # On the failure path too: a clean-up checkpoint waits its own pass.
    log.clear()
    failing = [Step("A", recorder(log, "A", StepFailed("Broken", "a broke"))), *steps[1:]]
    run = make_run()
    assert not advance(table(*failing), run).finished and states(run)["B"] == "Running"
    assert advance(table(*failing), run).finished and log == ["A", "B"]
