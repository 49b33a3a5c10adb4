"""kopf adapters for both kinds: parse, validate, write status. Thin on purpose: the workflows
own the logic; these functions translate between kopf and them."""

from __future__ import annotations

import kopf

from walwarden.api import BackupRequest, ConditionType, RestoreRequest, is_finished, set_condition
from walwarden.api import backup as backup_api
from walwarden.api import restore as restore_api
from walwarden.api.common import GROUP, VERSION
from walwarden.handlers.common import InvalidSpec, announce, parse, record_failure


def accept(kind: str, model, body: kopf.Body, status: kopf.Status, patch: kopf.Patch, logger) -> None:
    """First sight of a request: validate it and say so in status (phase Pending)."""
    if status.get("phase"):
        return  # already seen; a finished request is never run again
    generation = body.metadata.get("generation", 1)
    try:
        parse(model, body)
    except InvalidSpec as error:
        record_failure(patch, status, generation, "InvalidSpec", str(error))
        announce(body, "InvalidSpec", str(error), warning=True)
        logger.warning("%s refused: %s", kind, error)
        return
    message = f"{kind} validated; waiting to run"
    conditions = set_condition(status.get("conditions"), ConditionType.PROGRESSING, True, "Accepted",
                               message, generation)
    patch.status["phase"] = "Pending"
    patch.status["message"] = message
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = [c.to_dict() for c in conditions]
    announce(body, "Accepted", message)


@kopf.on.create(GROUP, VERSION, backup_api.PLURAL, id="backup-accept")
@kopf.on.resume(GROUP, VERSION, backup_api.PLURAL, id="backup-accept-resume")
def on_backup_request(body, status, patch, logger, **_):
    if is_finished(status.get("phase")):
        return
    accept(backup_api.KIND, BackupRequest, body, status, patch, logger)


@kopf.on.create(GROUP, VERSION, restore_api.PLURAL, id="restore-accept")
@kopf.on.resume(GROUP, VERSION, restore_api.PLURAL, id="restore-accept-resume")
def on_restore_request(body, status, patch, logger, **_):
    if is_finished(status.get("phase")):
        return
    accept(restore_api.KIND, RestoreRequest, body, status, patch, logger)
