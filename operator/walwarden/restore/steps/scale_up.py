"""ScaleUp: the services started in start order (nats → policy nodes → wallet) with their
original replica counts, each tier Ready before the next."""

from __future__ import annotations

from walwarden.api import format_timestamp, utcnow
from walwarden.restore.run import RestoreRun
from walwarden.workflow import tiers


def scale_up(run: RestoreRun) -> str:
    started = tiers.start_in_order(
        run, run.kube, run.namespace, run.topology, run.poll_seconds, loud_after=run.settings.stop_timeout_seconds
    )
    run.status.record_downtime()
    run.status.services_ready_at = format_timestamp(utcnow())
    return started
