"""The small engine that drives a request's ordered table of steps.

Each call runs steps from the first unfinished one, records every transition in
`status.steps` (and as an Event), and stops when a step has to wait: kopf then calls again after
the delay (TemporaryError). Ordering lives here, in our table, not in kopf's handler lifecycle.

A step that fails puts the workflow into its failure path: the remaining ordinary steps are
skipped and only the `always` steps (put the world back: restart services, release the lock) run.
Steps look at the world before acting, so running one again after an operator restart repeats
nothing destructive.

Settling: a step that is already known to be waiting (its Running state was written by an earlier
pass) is looked at again within the same pass, quickly at first, for up to `settle_seconds`
before the pass ends with a kopf retry. A tier that stops in two seconds or a Job that ends is
then noticed within a fraction of a second instead of a whole poll interval — while the vault is
down, that is downtime. A step's first wait always ends the pass at once, so `status.steps`
shows it Running before the pass settles on it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from walwarden.api import (
    ConditionType,
    StepState,
    format_timestamp,
    get_condition,
    parse_timestamp,
    set_condition,
    utcnow,
)


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


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[["Run"], str | None]  # returns a short message for the record
    always: bool = False  # runs on the failure path too (clean-up steps)
    only_on_failure: bool = False  # runs on the failure path only (rollback)


@dataclass
class Run:
    """One pass over a request: its parsed spec, a working copy of its status, and the world."""

    kind: str
    body: Any                       # the kopf Body of the request
    spec: Any                       # the parsed spec model
    status: dict[str, Any]          # working copy; the handler writes it back as a patch
    context: Any                    # clients and settings (kube, config)
    events: list[tuple[str, str, bool]] = field(default_factory=list)  # (reason, message, warning)
    cache: dict[str, Any] = field(default_factory=dict)  # what one pass looked up once (source, ...)

    @property
    def generation(self) -> int:
        return self.body.get("metadata", {}).get("generation", 1)

    @property
    def failed(self) -> bool:
        return self.has_condition(ConditionType.FAILED)

    def has_condition(self, type: str) -> bool:
        """True when the condition `type` is set and True."""
        condition = get_condition(self.status.get("conditions"), type)
        return condition is not None and condition.status == "True"

    def seconds_in_current_step(self) -> float:
        """How long the step running now has been running (0 before it was recorded)."""
        entry = next((s for s in self.status.get("steps", []) if s["name"] == self.status.get("currentStep")), {})
        started = entry.get("startedAt")
        return (utcnow() - parse_timestamp(started)).total_seconds() if started else 0.0

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append((reason, message, warning))

    def condition(self, type: str, status: bool, reason: str, message: str = "") -> None:
        conditions = set_condition(self.status.get("conditions"), type, status, reason, message, self.generation)
        self.status["conditions"] = [c.to_dict() for c in conditions]


@dataclass(frozen=True)
class Outcome:
    finished: bool
    succeeded: bool = False
    waiting: Wait | None = None


def _record(run: Run, name: str) -> dict[str, Any]:
    steps = run.status.setdefault("steps", [])
    for entry in steps:
        if entry["name"] == name:
            return entry
    entry = {"name": name, "state": StepState.PENDING.value}
    steps.append(entry)
    return entry


def _now() -> str:
    return format_timestamp(utcnow())


def _finish(run: Run, entry: dict, state: StepState, message: str | None) -> None:
    entry.update(state=state.value, finishedAt=_now())
    if message:
        entry["message"] = message


# Settling re-checks a waiting step after these pauses (seconds), the last one repeating: a Job
# that ends is noticed within half a second (two cheap reads a second while a step settles).
SETTLE_PAUSES = (0.1, 0.2, 0.3, 0.5)
# How soon kopf calls again after a step's first wait (its Running state just written).
FIRST_WAIT_DELAY = 0.2


def _run_settling(step: Step, run: Run, settle_seconds: float, clock, sleep) -> str | None:
    """Run `step`; while it waits, look again (shortly, then less often) until `settle_seconds`
    have passed; the last Wait is raised."""
    deadline = clock() + settle_seconds
    pauses = iter(SETTLE_PAUSES)
    while True:
        try:
            return step.run(run)
        except Wait as wait:
            pause = min(next(pauses, SETTLE_PAUSES[-1]), wait.delay)
            if clock() + pause > deadline:
                raise
            sleep(pause)


def advance(steps: list[Step], run: Run, settle_seconds: float = 0.0, clock=time.monotonic,
            sleep=time.sleep) -> Outcome:
    """Run the next unfinished steps; return whether the workflow has finished, or wait."""
    run.status = copy.deepcopy(run.status)
    run.status.setdefault("startedAt", _now())
    for step in steps:
        entry = _record(run, step.name)
        if entry["state"] in (StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED):
            continue
        if run.failed and not (step.always or step.only_on_failure):
            _finish(run, entry, StepState.SKIPPED, "skipped: an earlier step failed")
            continue
        if step.only_on_failure and not run.failed:
            _finish(run, entry, StepState.SKIPPED, "nothing failed")
            continue
        started_now = entry["state"] == StepState.PENDING
        if started_now:
            entry.update(state=StepState.RUNNING.value, startedAt=_now())
            entry.pop("message", None)
            run.event(f"{step.name}Started", f"step {step.name} started")
        run.status["currentStep"] = step.name
        try:
            message = step.run(run) if started_now else _run_settling(step, run, settle_seconds, clock, sleep)
        except Wait as wait:
            entry["message"] = wait.message
            run.status["message"] = f"{step.name}: {wait.message}"
            if started_now and settle_seconds > 0:
                wait = Wait(wait.message, delay=min(wait.delay, FIRST_WAIT_DELAY))
            return Outcome(finished=False, waiting=wait)
        except Skip as skip:
            _finish(run, entry, StepState.SKIPPED, str(skip) or "does not apply")
            continue
        except StepFailed as failure:
            _finish(run, entry, StepState.FAILED, failure.message)
            run.event(failure.reason, f"step {step.name} failed: {failure.message}", warning=True)
            if not run.failed:  # the first failure is the one the user needs to read
                run.condition(ConditionType.FAILED, True, failure.reason, failure.message)
                run.status["message"] = failure.message
            continue
        _finish(run, entry, StepState.SUCCEEDED, message)
        run.event(f"{step.name}Succeeded", message or f"step {step.name} succeeded")
    return Outcome(finished=True, succeeded=not run.failed)
