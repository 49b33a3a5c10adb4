"""What both kinds' handlers share: parsing a body into its model, and writing status."""

from __future__ import annotations

from typing import Any, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from walwarden.api import ConditionType, format_timestamp, set_condition, utcnow

Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], body: kopf.Body) -> Model:
    """The body as its model; an invalid spec is a permanent, user-facing error."""
    try:
        return model.model_validate(dict(body))
    except ValidationError as error:
        raise InvalidSpec(describe_validation_error(error)) from None


class InvalidSpec(kopf.PermanentError):
    """The request can never succeed as written; the message says what to change."""


def describe_validation_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        problems.append(f"{where}: {item['msg']}")
    return "invalid request: " + "; ".join(problems)


def record_failure(patch: kopf.Patch, status: dict[str, Any], generation: int, reason: str, message: str,
                   failed_phase: str = "Failed") -> None:
    """Phase Failed with a Failed condition that says why and what to do."""
    conditions = status.get("conditions")
    conditions = set_condition(conditions, ConditionType.FAILED, True, reason, message, generation)
    conditions = set_condition(conditions, ConditionType.READY, False, reason, message, generation)
    conditions = set_condition(conditions, ConditionType.PROGRESSING, False, reason, message, generation)
    patch.status["phase"] = failed_phase
    patch.status["message"] = message
    patch.status["completedAt"] = format_timestamp(utcnow())
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = [c.to_dict() for c in conditions]


def announce(body: kopf.Body, reason: str, message: str, warning: bool = False) -> None:
    """An Event on the request. kopf.event, not kopf.info: our events are the audit trail and
    must not depend on the log level that decides which log lines also become events."""
    kopf.event(body, type="Warning" if warning else "Normal", reason=reason, message=message)
