"""ScaleUp: the services started in start order (nats → policy nodes → wallet) with their
original replica counts, each tier Ready before the next.

Never stranded: with rollbackPolicy Automatic, services that are not Ready within
spec.verify.readyTimeoutSeconds fail the step, naming each and its pods' last state, and the
rollback puts back what the stop window changed (secrets, or the databases renamed back) and
starts the services on the original. Manual keeps waiting, loudly."""

from __future__ import annotations

from walwarden.api import RollbackPolicy, format_timestamp, utcnow
from walwarden.restore.run import RestoreRun
from walwarden.workflow import tiers


def scale_up(run: RestoreRun) -> str:
    automatic = run.spec.rollback_policy == RollbackPolicy.AUTOMATIC
    started = tiers.start_in_order(
        run,
        run.kube,
        run.namespace,
        run.topology,
        run.poll_seconds,
        loud_after=run.settings.stop_timeout_seconds,
        give_up_after=run.spec.verify.ready_timeout_seconds if automatic else None,
    )
    run.status.record_downtime()
    run.status.services_ready_at = format_timestamp(utcnow())
    return started
