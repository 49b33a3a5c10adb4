"""What both kinds' handlers share: a body parsed into its model and a typed Run, one pass of the
workflow, and its status and Events written back. The workflows own the logic; this translates
between kopf and them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import kopf
from pydantic import ValidationError

from walwarden.api.common import RequestStatus, ResourceModel
from walwarden.handlers import metrics
from walwarden.kube.api import owner_reference
from walwarden.workflow.audit import AuditLocation, write_audit
from walwarden.workflow.context import OperatorContext
from walwarden.workflow.engine import Event, Run, StepFailed, StepTable, UndoCause, Wait, advance, finish
from walwarden.workflow.steps import release_lock

Resource = TypeVar("Resource", bound=ResourceModel)
RunT = TypeVar("RunT", bound=Run[Any, Any])
Logger = logging.Logger | logging.LoggerAdapter[Any]

# An unexpected error (API hiccup, bug) is retried after this many seconds, not kopf's default 60.
ERROR_BACKOFF = 10


class InvalidSpec(kopf.PermanentError):
    """The request can never succeed as written; the message says what to change."""

    reason = "InvalidSpec"


class InOperatorNamespace(InvalidSpec):
    """A request in the operator's own namespace, where its keys live: never served."""

    reason = "InOperatorNamespace"


def parse(model: type[Resource], body: kopf.Body) -> Resource:
    """The body as its model; an invalid spec is a permanent, user-facing error."""
    try:
        return model.model_validate(dict(body))
    except ValidationError as error:
        raise InvalidSpec(describe_validation_error(error)) from None


def refuse_the_operators_namespace(kind: str, body: kopf.Body, operator_namespace: str) -> None:
    """Its approval key, origin key and ledger of spent tokens live there: a request made there
    could name them (even with a cluster-wide ClusterRole, the operator never serves it)."""
    if body.metadata.get("namespace") == operator_namespace:
        raise InOperatorNamespace(
            f"{kind}s are not served in {operator_namespace}, the operator's own namespace (its keys live there): "
            "create it in the vault's namespace"
        )


def describe_validation_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        problems.append(f"{where}: {item['msg']}")
    return "invalid request: " + "; ".join(problems)


def announce(body: kopf.Body, reason: str, message: str, warning: bool = False) -> None:
    """An Event on the request. kopf.event, not kopf.info: our events are the audit trail and
    must not depend on the log level that decides which log lines also become events."""
    kopf.event(body, type="Warning" if warning else "Normal", reason=reason, message=message)


def _write_status(patch: kopf.Patch, status: RequestStatus) -> None:
    for key, value in status.to_dict().items():
        patch.status[key] = value


def accept(
    model: type[Resource],
    status_model: type[RequestStatus],
    body: kopf.Body,
    patch: kopf.Patch,
    logger: Logger,
    operator_namespace: str,
) -> Resource | None:
    """First sight of a request: validate it and say so in status (phase Pending).
    Returns the parsed request, or None when it was refused."""
    kind = model.crd.kind
    generation = body.metadata.get("generation", 1)
    status = status_model.model_validate(dict(body.status))
    try:
        refuse_the_operators_namespace(kind, body, operator_namespace)
        request = parse(model, body)
    except InvalidSpec as error:
        status.mark_invalid(error.reason, str(error), generation)
        _write_status(patch, status)
        announce(body, error.reason, str(error), warning=True)
        logger.warning("%s refused: %s", kind, error)
        return None
    if not status.phase_name:
        message = f"{kind} validated; waiting to run"
        status.mark_pending(message, generation)
        _write_status(patch, status)
        announce(body, "Accepted", message)
    return request


def make_run(
    run_type: type[RunT],
    request: ResourceModel,
    body: kopf.Body,
    status: RequestStatus,
    context: OperatorContext,
    dry_run: bool = False,
) -> RunT:
    metadata = body["metadata"]
    controller = next((owner for owner in metadata.get("ownerReferences") or [] if owner.get("controller")), None)
    return run_type(
        kind=body["kind"],
        namespace=metadata["namespace"],
        name=metadata["name"],
        uid=metadata["uid"],
        generation=metadata.get("generation", 1),
        owner=owner_reference(body),
        spec=request.spec,  # type: ignore[attr-defined]  # every kind has one
        status=status,
        kube=context.kube,
        settings=context.config,
        controller=dict(controller) if controller else None,
        created_at=metadata.get("creationTimestamp") or "",
        dry_run=dry_run,
    )


def drive(
    table: StepTable[RunT],
    run: RunT,
    body: kopf.Body,
    patch: kopf.Patch,
    settle_seconds: float,
    audit_location: Callable[[RunT], AuditLocation | None],
    logger: Logger,
) -> None:
    """One pass: the next steps, the status patch, the Events, and a kopf retry while a step waits."""
    outcome = advance(table, run, settle_seconds=settle_seconds)
    if outcome.finished and outcome.result is not None:
        finish(table, run, outcome.result)
        metrics.record_finished(run.kind, run.namespace, run.status)
    write_audit(run, audit_location, logger)
    run.status.observed_generation = run.generation
    numbered = number_events(run)
    _write_status(patch, run.status)
    for event in numbered:
        announce(body, event.reason, event.message, event.warning)
    if not outcome.finished and outcome.waiting is not None:
        # Not an error: kopf looks again after the delay, and the step resumes from the world.
        raise kopf.TemporaryError(outcome.waiting.message, delay=outcome.waiting.delay)


def number_events(run: Run[Any, Any]) -> list[Event]:
    """The pass's Events, each message prefixed with its number for the request ([n]), the count
    kept in status: kubectl describe orders Events by a timestamp of whole seconds, and a step
    often posts several within one."""
    first = run.status.events_posted or 0
    numbered = [replace(event, message=f"[{first + n}] {event.message}") for n, event in enumerate(run.events, 1)]
    run.status.events_posted = first + len(numbered)
    return numbered


def put_back_on_delete(table: StepTable[RunT], run: RunT, body: kopf.Body, patch: kopf.Patch, logger: Logger) -> None:
    """A request deleted mid-flight must not leave the vault stopped: every started step's undo
    (for a deletion), then the lock freed, before the deletion completes (kopf holds a finalizer).
    While an undo waits, what the undos recorded is written to status (kopf applies the patch
    before the retry), so the next try goes on from there instead of repeating a step of it."""
    try:
        undone = table.undo(run, UndoCause.DELETION)
    except Wait as wait:
        _write_status(patch, run.status)
        raise kopf.TemporaryError(
            f"deleted mid-flight; putting the vault back first: {wait.message}", delay=wait.delay
        ) from None
    except StepFailed as failure:  # nothing more can be done here: say so loudly and let it go
        undone = [f"putting the vault back failed ({failure.reason}): {failure.message}"]
    if undone:
        announce(body, "DeletedMidFlight", f"{run.kind} deleted mid-flight: " + "; ".join(undone), warning=True)
    release_lock(run)
    logger.warning("%s deleted before it finished; the vault was put back as far as possible", run.kind)
