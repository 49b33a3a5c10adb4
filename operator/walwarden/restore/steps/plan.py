"""Plan: what the restore will do — its steps, the services and their replicas, the secrets it
repoints, the history it loses. A dry run ends with this in status.plan."""

from __future__ import annotations

from walwarden.api import (
    DataLossWindow,
    PlannedService,
    RestoreMode,
    RestorePlan,
    format_timestamp,
    parse_timestamp,
    utcnow,
)
from walwarden.kube import workloads
from walwarden.restore import dbinfo
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import source_of


def planned_services(run: RestoreRun) -> list[PlannedService]:
    services = []
    for tier_index, tier in enumerate(run.topology.stop_tiers, start=1):
        for name in tier:
            workload = workloads.find_workload(run.kube, run.namespace, name)
            replicas = 0
            if workload is not None:
                replicas = workload.original_replicas if workload.original_replicas is not None else workload.replicas
            services.append(PlannedService(name=name, tier=tier_index, replicas=replicas))
    return services


def plan(run: RestoreRun) -> str:
    found = source_of(run)
    services = planned_services(run)
    now = utcnow()
    window = DataLossWindow(
        backup_time=found.taken_at,
        restore_time=format_timestamp(now),
        seconds=round((now - parse_timestamp(found.taken_at)).total_seconds()),
    )
    run.status.plan = RestorePlan(
        steps=list(run.step_names),
        services=services,
        secrets=dbinfo.secret_names(run) if run.spec.mode == RestoreMode.REDIRECTED else [],
        data_loss_window=window,
    )
    if run.status.data_loss_window is None:
        run.status.data_loss_window = window
    stopped = ", ".join(f"{s.name}×{s.replicas}" for s in services)
    lost = f"history after {found.taken_at} ({window.seconds} s) is lost"
    return f"{'dry run: ' if run.dry_run else ''}stops {stopped}; {lost}"
