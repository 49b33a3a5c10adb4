"""The step engine: order, records, waiting, skipping, and the failure path."""

from __future__ import annotations

import pytest

from walwarden.workflow.engine import Run, Skip, Step, StepFailed, Wait, advance


def make_run(status=None) -> Run:
    body = {"metadata": {"name": "r", "namespace": "ns", "uid": "u", "generation": 3}}
    return Run("BackupRequest", body, spec=None, status=status or {}, context=None)


def recorder(log: list[str], name: str, result=None):
    def run(_run):
        log.append(name)
        if isinstance(result, Exception):
            raise result
        return result
    return run


def states(run: Run) -> dict[str, str]:
    return {entry["name"]: entry["state"] for entry in run.status["steps"]}


def test_steps_run_in_table_order_and_are_recorded():
    log = []
    steps = [Step("A", recorder(log, "A", "did a")), Step("B", recorder(log, "B"))]
    run = make_run()
    outcome = advance(steps, run)
    assert outcome.finished and outcome.succeeded
    assert log == ["A", "B"]
    assert states(run) == {"A": "Succeeded", "B": "Succeeded"}
    assert run.status["steps"][0]["message"] == "did a"
    assert all(entry["startedAt"] and entry["finishedAt"] for entry in run.status["steps"])
    assert [reason for reason, _, _ in run.events] == ["AStarted", "ASucceeded", "BStarted", "BSucceeded"]


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
    first = advance(steps, run)
    assert not first.finished and first.waiting.delay == 2
    assert states(run) == {"A": "Succeeded", "B": "Running"}
    assert run.status["currentStep"] == "B" and run.status["message"] == "B: not yet"
    second_run = make_run(run.status)
    second = advance(steps, second_run)
    assert second.finished and second.succeeded
    assert log == ["A", "B", "B", "C"]  # A never again
    assert [r for r, _, _ in second_run.events].count("BStarted") == 0  # started once, in the first pass


def test_a_failure_skips_ordinary_steps_but_runs_the_always_steps():
    log = []
    steps = [Step("A", recorder(log, "A", StepFailed("Broken", "A broke; fix X"))),
             Step("B", recorder(log, "B")),
             Step("Cleanup", recorder(log, "Cleanup"), always=True)]
    run = make_run()
    outcome = advance(steps, run)
    assert outcome.finished and not outcome.succeeded
    assert log == ["A", "Cleanup"]
    assert states(run) == {"A": "Failed", "B": "Skipped", "Cleanup": "Succeeded"}
    [failed] = [c for c in run.status["conditions"] if c["type"] == "Failed"]
    assert (failed["status"], failed["reason"], failed["message"]) == ("True", "Broken", "A broke; fix X")
    assert failed["observedGeneration"] == 3
    assert run.status["message"] == "A broke; fix X"


def test_a_later_failure_does_not_hide_the_first():
    steps = [Step("A", recorder([], "A", StepFailed("First", "first problem"))),
             Step("Cleanup", recorder([], "C", StepFailed("Second", "cleanup problem")), always=True)]
    run = make_run()
    advance(steps, run)
    [failed] = [c for c in run.status["conditions"] if c["type"] == "Failed"]
    assert failed["reason"] == "First"
    assert states(run)["Cleanup"] == "Failed"


def test_skip_records_why():
    run = make_run()
    advance([Step("Quiesce", recorder([], "Q", Skip("spec.quiesce is false")))], run)
    assert run.status["steps"][0] == {**run.status["steps"][0], "state": "Skipped", "message": "spec.quiesce is false"}


def test_the_input_status_is_not_modified():
    status = {"steps": [{"name": "A", "state": "Succeeded"}]}
    advance([Step("A", recorder([], "A")), Step("B", recorder([], "B"))], make_run(status))
    assert status == {"steps": [{"name": "A", "state": "Succeeded"}]}


def test_rollback_steps_run_only_when_something_failed():
    log = []
    steps = [Step("A", recorder(log, "A")), Step("Rollback", recorder(log, "Rollback"), only_on_failure=True)]
    run = make_run()
    advance(steps, run)
    assert log == ["A"] and states(run)["Rollback"] == "Skipped"
    log.clear()
    failing = [Step("A", recorder(log, "A", StepFailed("X", "x"))), steps[1]]
    run = make_run()
    advance(failing, run)
    assert log == ["A", "Rollback"] and states(run)["Rollback"] == "Succeeded"


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
    outcome = advance([Step("B", waits_then_finishes(log, 3))], run, settle_seconds=5, clock=clock, sleep=clock.sleep)
    assert not outcome.finished and log == ["B"] and clock.sleeps == []
    assert outcome.waiting.delay == pytest.approx(0.2)  # come back soon: the pass only wrote status
    assert states(run) == {"B": "Running"}


def two_passes(waits: int, settle_seconds: float):
    """A step that waits `waits` times: a first pass (it starts), then a second (it settles)."""
    log, clock = [], FakeClock()
    step = Step("B", waits_then_finishes(log, waits))
    first = make_run()
    advance([step], first, settle_seconds=settle_seconds, clock=clock, sleep=clock.sleep)
    second = make_run(first.status)
    outcome = advance([step], second, settle_seconds=settle_seconds, clock=clock, sleep=clock.sleep)
    return outcome, second, log, clock


def test_a_step_already_running_is_looked_at_again_within_the_pass_until_it_finishes():
    outcome, second, log, clock = two_passes(waits=3, settle_seconds=5)
    assert outcome.finished and outcome.succeeded
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
    assert advance([step], first).waiting.delay == 5
    assert advance([step], make_run(first.status)).waiting.delay == 5
    assert log == ["B", "B"]
