"""The small engine that drives a request's ordered table of steps.

Each call runs steps from the first unfinished one, records every transition in `status.steps`
(and as an Event), and stops when a step has to wait: kopf then calls again after the delay
(TemporaryError). Ordering lives here, in the table, not in kopf's handler lifecycle.

The table is the whole truth about a step (STYLE: "what runs in a dry run and what a failure must
undo belong in the table's columns"):

- `in_dry_run`: the step runs in a dry run too (the others are Skipped, "dry run: nothing changed");
- `cleanup`: the step runs on the failure path too (release the lock, start what a backup stopped);
- `undo`: what puts back what the step changed, run by the table's `rollback` step after a
  failure (for every step that had started, in reverse table order) and when a request is
  deleted mid-flight;
- `touches_vault`: the step stops services or changes the database or the db-info secrets; the
  tables' unit tests check such steps come after the checks and have an undo;
- `checkpoint`: the step starts on a new pass, once the steps before it are written to status.

A step that fails puts the workflow on its failure path: the remaining ordinary steps are skipped;
the rollback step and the cleanup steps run. Steps look at the world before acting, so running one
again after an operator restart repeats nothing destructive; undos too.

Settling: a step that is already known to be waiting (its Running state was written by an earlier
pass) is looked at again within the same pass, quickly at first, for up to `settle_seconds` before
the pass ends with a kopf retry. A tier that stops in two seconds or a Job that ends is then noticed
within a fraction of a second instead of a whole poll interval — while the vault is down, that is
downtime. A step's first wait always ends the pass at once, so `status.steps` shows it Running
before the pass settles on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from walwarden.api.common import (
    ConditionType,
    RequestStatus,
    Result,
    SpecModel,
    StepState,
    format_timestamp,
    parse_timestamp,
    utcnow,
)
from walwarden.kube.api import Kube
from walwarden.settings import OperatorConfig


class Wait(Exception):
    """The step is not finished yet; look again after `delay` seconds."""

    def __init__(self, message: str, delay: float = 5):
        super().__init__(message)
        self.message, self.delay = message, delay


class StepFailed(Exception):
    """The step cannot succeed. `reason` is CamelCase; `message` says what happened and what to do."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


class Skip(Exception):
    """The step does not apply to this request (e.g. Quiesce when spec.quiesce is false)."""


class UndoCause(StrEnum):
    FAILURE = "Failure"  # a step failed: put everything back, the database included (by policy)
    DELETION = "Deletion"  # the request was deleted mid-flight: put back at once what can be, say the rest


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    warning: bool = False


SpecT = TypeVar("SpecT", bound=SpecModel)
StatusT = TypeVar("StatusT", bound=RequestStatus)


@dataclass
class Run(Generic[SpecT, StatusT]):
    """One pass over a request: who it is, its parsed spec, a working copy of its typed status,
    and the clients and settings steps use. The handler writes `status` back and posts `events`."""

    kind: str
    namespace: str
    name: str
    uid: str
    generation: int
    owner: dict[str, Any]  # owner reference to the request, for what it creates
    spec: SpecT
    status: StatusT
    kube: Kube
    settings: OperatorConfig
    controller: dict[str, Any] | None = None  # the request that created this one (a restore's safety backup)
    created_at: str = ""  # metadata.creationTimestamp: immutable, so names derived from it are stable
    dry_run: bool = False
    events: list[Event] = field(default_factory=list)
    step_names: tuple[str, ...] = ()  # the table's steps in order, for the plan

    @property
    def created(self) -> datetime:
        """When the request was created (now, for a request not stored yet)."""
        return parse_timestamp(self.created_at) if self.created_at else utcnow()

    @property
    def failed(self) -> bool:
        return self.status.failure is not None

    @property
    def poll_seconds(self) -> float:
        return self.settings.poll_seconds

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(Event(reason, message, warning))

    def condition(self, type: str, status: bool, reason: str, message: str = "") -> None:
        self.status.set_condition(type, status, reason, message, self.generation)

    def seconds_in_current_step(self) -> float:
        """How long the step running now has been running (0 before it was recorded)."""
        entry = self.status.step(self.status.current_step or "")
        return entry.seconds_running() if entry else 0.0


RunT = TypeVar("RunT", bound=Run[Any, Any])
StepAction = Callable[[RunT], "str | None"]
UndoAction = Callable[[RunT, UndoCause], "str | None"]


@dataclass(frozen=True)
class Step(Generic[RunT]):
    name: str  # the kind's step enum (a StrEnum)
    run: StepAction[RunT] | None  # None for the rollback step: the engine runs the undos
    in_dry_run: bool = False
    cleanup: bool = False
    undo: UndoAction[RunT] | None = None
    rollback: bool = False  # runs only on the failure path: every started step's undo
    touches_vault: bool = False
    # The step begins on a pass of its own, once what the steps before it did is written to
    # status: a crash inside it cannot lose their results (status is written when a pass ends),
    # for a step after which running them again would not find what they found (the drill's
    # checks, once the scratch database is dropped).
    checkpoint: bool = False


@dataclass(frozen=True)
class Outcome:
    finished: bool
    result: Result | None = None
    waiting: Wait | None = None


@dataclass(frozen=True)
class StepTable(Generic[RunT]):
    """A workflow's steps, in order. The one place to read what a request does."""

    steps: tuple[Step[RunT], ...]

    def __iter__(self) -> Iterator[Step[RunT]]:
        return iter(self.steps)

    def names(self) -> tuple[str, ...]:
        return tuple(str(step.name) for step in self.steps)

    def planned(self) -> list[str]:
        """The steps a request runs when nothing fails (what a plan shows)."""
        return [str(step.name) for step in self.steps if not step.rollback]

    def index(self, name: StrEnum) -> int:
        return next(i for i, step in enumerate(self.steps) if step.name == name)

    def result(self, run: RunT) -> Result:
        """How a finished run ended: RolledBack when it failed and its rollback step put the world back."""
        if not run.failed:
            return Result.SUCCEEDED
        rollback = next((s for s in self.steps if s.rollback), None)
        entry = run.status.step(str(rollback.name)) if rollback else None
        return Result.ROLLED_BACK if entry is not None and entry.state == StepState.SUCCEEDED else Result.FAILED

    def undo(self, run: RunT, cause: UndoCause) -> list[str]:
        """Run the undo of every step that had started, last step first; what each put back.
        Each undo looks at the status and the world first, so calling this again repeats nothing."""
        done = []
        for step in reversed(self.steps):
            if step.undo is not None and run.status.step_ran(str(step.name)):
                message = step.undo(run, cause)
                if message:
                    done.append(message)
        return done


# Settling re-checks a waiting step after these pauses (seconds), the last one repeating: a Job
# that ends is noticed within half a second (two cheap reads a second while a step settles).
SETTLE_PAUSES = (0.1, 0.2, 0.3, 0.5)
# How soon kopf calls again after a step's first wait (its Running state just written).
FIRST_WAIT_DELAY = 0.2


def _perform(table: StepTable[RunT], step: Step[RunT], run: RunT) -> str | None:
    if step.rollback:
        done = table.undo(run, UndoCause.FAILURE)
        if not done:
            raise Skip("nothing had been changed")
        return "; ".join(done)
    assert step.run is not None, f"step {step.name} has nothing to run"
    return step.run(run)


def _run_settling(
    table: StepTable[RunT],
    step: Step[RunT],
    run: RunT,
    settle_seconds: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> str | None:
    """Run `step`; while it waits, look again (shortly, then less often) until `settle_seconds`
    have passed; the last Wait is raised."""
    deadline = clock() + settle_seconds
    pauses = iter(SETTLE_PAUSES)
    while True:
        try:
            return _perform(table, step, run)
        except Wait as wait:
            pause = min(next(pauses, SETTLE_PAUSES[-1]), wait.delay)
            if clock() + pause > deadline:
                raise
            sleep(pause)


def _skip_reason(step: Step[Any], run: Run[Any, Any]) -> str | None:
    """Why the table says `step` does not run in this pass, or None when it runs."""
    if run.dry_run and not step.in_dry_run:
        return "dry run: nothing changed"
    if run.failed and not (step.cleanup or step.rollback):
        return "skipped: an earlier step failed"
    if step.rollback and not run.failed:
        return "nothing failed"
    return None


def advance(
    table: StepTable[RunT],
    run: RunT,
    settle_seconds: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Run the next unfinished steps; return whether the workflow has finished, or wait."""
    run.step_names = tuple(table.planned())
    if run.status.started_at is None:
        run.status.started_at = _now()
    for step in table:
        entry = run.status.step_record(str(step.name))
        if entry.done:
            continue
        skip = _skip_reason(step, run)
        if skip is not None:
            entry.finish(StepState.SKIPPED, skip)
            continue
        started_now = entry.state == StepState.PENDING
        if started_now:
            entry.start()
            if step.checkpoint:
                run.status.current_step = str(step.name)
                _announce_start(run, step, started_now, len(run.events))
                entry.message = "starting once the steps before it are recorded"
                return Outcome(finished=False, waiting=Wait(entry.message, delay=FIRST_WAIT_DELAY))
        events_before = len(run.events)  # where its Started Event goes, once it is known to run
        run.status.current_step = str(step.name)
        try:
            message = (
                _perform(table, step, run)
                if started_now
                else _run_settling(table, step, run, settle_seconds, clock, sleep)
            )
        except Wait as wait:
            _announce_start(run, step, started_now, events_before)
            entry.message = wait.message
            run.status.message = f"{step.name}: {wait.message}"
            if started_now and settle_seconds > 0:
                wait = Wait(wait.message, delay=min(wait.delay, FIRST_WAIT_DELAY))
            return Outcome(finished=False, waiting=wait)
        except Skip as skip_step:
            entry.finish(StepState.SKIPPED, str(skip_step) or "does not apply")
            continue
        except StepFailed as failure:
            _announce_start(run, step, started_now, events_before)
            entry.finish(StepState.FAILED, failure.message)
            run.event(failure.reason, f"step {step.name} failed: {failure.message}", warning=True)
            if not run.failed:  # the first failure is the one the user needs to read
                run.condition(ConditionType.FAILED, True, failure.reason, failure.message)
                run.status.message = failure.message
            continue
        _announce_start(run, step, started_now, events_before)
        entry.finish(StepState.SUCCEEDED, message)
        run.event(f"{step.name}Succeeded", message or f"step {step.name} succeeded")
    return Outcome(finished=True, result=table.result(run))


def _announce_start(run: Run[Any, Any], step: Step[Any], started_now: bool, position: int) -> None:
    """The Started Event, once the step is known to run (a step that skips itself gets none), before
    the Events the step itself posted."""
    if started_now:
        run.events.insert(position, Event(f"{step.name}Started", f"step {step.name} started"))


def finish(table: StepTable[RunT], run: RunT, result: Result) -> None:
    """Close a finished run: phase, conditions, message, and one Event that says how it ended."""
    status = run.status
    if result == Result.SUCCEEDED:
        status.current_step = "Done"
        message = "dry run: the plan is in status.plan; nothing was changed" if run.dry_run else f"{run.kind} succeeded"
    else:
        failed_step = next((s for s in status.steps if s.state == StepState.FAILED), None)
        if failed_step is not None:
            status.current_step = failed_step.name
        # Waits of the clean-up steps overwrote the message meanwhile: the failure is what counts.
        message = status.failure.message if status.failure else "failed"
        rollback = next((status.step(str(s.name)) for s in table if s.rollback), None)
        if result == Result.ROLLED_BACK and rollback is not None:
            message += " — rolled back: " + (rollback.message or "")
        elif rollback is not None and rollback.state == StepState.FAILED:
            # Loud: the first failure stays the reason, but nobody may read this as "nothing happened".
            message += " — ROLLBACK FAILED, the vault is not back to normal: " + (rollback.message or "")
            run.condition(ConditionType.VAULT_NOT_RESTORED, True, "RollbackFailed", rollback.message or "")
    status.mark_finished(result, message, run.generation)
    run.event(result.value, message, warning=result != Result.SUCCEEDED)


def _now() -> str:
    return format_timestamp(utcnow())
