"""kopf decorators for both kinds: parse the body, run the workflow's next steps, write status.
Thin on purpose (STYLE): every decision is in the step tables and their steps."""

from __future__ import annotations

from typing import Any

import kopf

from walwarden.api import BackupRequest, BackupRequestStatus, RestoreRequest, RestoreRequestStatus
from walwarden.api import backup as backup_api
from walwarden.api import restore as restore_api
from walwarden.api.common import GROUP, VERSION
from walwarden.backup.run import BackupRun
from walwarden.backup.steps import audit_location as backup_audit_location
from walwarden.backup.table import BACKUP_TABLE
from walwarden.handlers import metrics
from walwarden.handlers.common import ERROR_BACKOFF, accept, announce, drive, make_run, put_back_on_delete
from walwarden.restore.previous import drop_when_due
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import audit_location as restore_audit_location
from walwarden.restore.table import table_for
from walwarden.workflow.engine import StepFailed


def _status(model: type[Any], body: kopf.Body, patch: kopf.Patch) -> Any:
    """The status as this pass sees it: what is stored, with what accept() just patched."""
    return model.model_validate({**dict(body.status), **dict(patch.status)})


@kopf.on.create(GROUP, VERSION, backup_api.PLURAL, id="backup", backoff=ERROR_BACKOFF)
@kopf.on.resume(GROUP, VERSION, backup_api.PLURAL, id="backup-resume", backoff=ERROR_BACKOFF)
def on_backup_request(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    stored = BackupRequestStatus.model_validate(dict(body.status))
    if stored.finished:
        metrics.remember_backup(body["metadata"]["namespace"], stored)  # found again at start-up
        return
    request = accept(BackupRequest, BackupRequestStatus, body, patch, logger, memo.context.config.operator_namespace)
    if request is not None:
        run = make_run(BackupRun, request, body, _status(BackupRequestStatus, body, patch), memo.context)
        drive(BACKUP_TABLE, run, body, patch, memo.context.config.settle_seconds, backup_audit_location, logger)


@kopf.on.create(GROUP, VERSION, restore_api.PLURAL, id="restore", backoff=ERROR_BACKOFF)
@kopf.on.resume(GROUP, VERSION, restore_api.PLURAL, id="restore-resume", backoff=ERROR_BACKOFF)
def on_restore_request(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    if RestoreRequestStatus.model_validate(dict(body.status)).finished:
        return
    request = accept(RestoreRequest, RestoreRequestStatus, body, patch, logger, memo.context.config.operator_namespace)
    if request is not None:
        run = make_run(
            RestoreRun,
            request,
            body,
            _status(RestoreRequestStatus, body, patch),
            memo.context,
            dry_run=request.spec.dry_run,
        )
        drive(
            table_for(request.spec),
            run,
            body,
            patch,
            memo.context.config.settle_seconds,
            restore_audit_location,
            logger,
        )


@kopf.on.delete(GROUP, VERSION, backup_api.PLURAL, id="backup-delete", backoff=ERROR_BACKOFF)
def on_backup_deleted(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    status = BackupRequestStatus.model_validate(dict(body.status))
    if not status.finished:
        request = BackupRequest.model_validate(dict(body))
        run = make_run(BackupRun, request, body, status, memo.context)
        put_back_on_delete(BACKUP_TABLE, run, body, patch, logger)


@kopf.on.delete(GROUP, VERSION, restore_api.PLURAL, id="restore-delete", backoff=ERROR_BACKOFF)
def on_restore_deleted(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    status = RestoreRequestStatus.model_validate(dict(body.status))
    if not status.finished:
        request = RestoreRequest.model_validate(dict(body))
        run = make_run(RestoreRun, request, body, status, memo.context)
        put_back_on_delete(table_for(request.spec), run, body, patch, logger)


def _previous_database_due(status: kopf.Status, **_: Any) -> bool:
    previous = status.get("previousDatabase") or {}
    return bool(previous.get("dropAt")) and not previous.get("droppedAt")


@kopf.timer(GROUP, VERSION, restore_api.PLURAL, id="drop-previous", interval=60, when=_previous_database_due)
def on_previous_database_due(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """A Switch restore's previous database is dropped once spec.previousDatabase.dropAfterSeconds passed."""
    request = RestoreRequest.model_validate(dict(body))
    run = make_run(RestoreRun, request, body, RestoreRequestStatus.model_validate(dict(body.status)), memo.context)
    try:
        dropped = drop_when_due(run)
    except StepFailed as failure:
        announce(body, failure.reason, failure.message, warning=True)
        return
    if dropped and run.status.previous_database is not None:
        patch.status["previousDatabase"] = run.status.previous_database.to_dict()
        for event in run.events:
            announce(body, event.reason, event.message, event.warning)
        logger.info("%s", dropped)
