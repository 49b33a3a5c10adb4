"""kopf handlers of BackupSchedule: a timer runs one pass (schedule/reconcile.py) and writes its
status and Events. Thin on purpose: every decision is in walwarden.schedule."""

from __future__ import annotations

from typing import Any

import kopf

from walwarden.api import schedule as schedule_api
from walwarden.api import utcnow
from walwarden.api.common import GROUP, VERSION
from walwarden.api.schedule import BackupSchedule
from walwarden.handlers import metrics
from walwarden.handlers.common import ERROR_BACKOFF, announce, parse
from walwarden.schedule.reconcile import reconcile

# How often each schedule is looked at: cron has minute resolution, so a run starts at most this
# late. Short enough for a run every minute, cheap (two list calls per schedule).
TICK_SECONDS = 10


@kopf.timer(GROUP, VERSION, schedule_api.PLURAL, id="schedule", interval=TICK_SECONDS, backoff=ERROR_BACKOFF)
def on_schedule_tick(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    schedule = parse(BackupSchedule, body)
    allowed = memo.context.config.ambient_identity_allowed(schedule.namespace)
    done = reconcile(memo.context.kube, schedule, utcnow(), allowed)
    stored, written = dict(body.status), done.status.to_dict()
    for key, value in written.items():
        if stored.get(key) != value:  # a pass every 10 s: write only what changed
            patch.status[key] = value
    for key in stored.keys() - written.keys():
        patch.status[key] = None  # e.g. nextScheduleTime of a suspended schedule: gone, not stale
    for event in done.events:
        announce(body, event.reason, event.message, event.warning)
        logger.info("%s: %s", event.reason, event.message)
    metrics.record_schedule(schedule.namespace, schedule.name, done.status, len(done.pruned))


@kopf.on.delete(GROUP, VERSION, schedule_api.PLURAL, id="schedule-delete", optional=True)
def on_schedule_deleted(body: kopf.Body, **_: Any) -> None:
    """Its BackupRequests stay (no ownerReference): deleting a schedule never deletes a backup."""
    metrics.forget_schedule(body["metadata"]["namespace"], body["metadata"]["name"])
