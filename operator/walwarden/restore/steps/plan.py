"""Plan: what the restore will do — its steps, the services and their replicas, the secrets it
repoints, the history it loses. A dry run ends with this in status.plan."""

from __future__ import annotations

from walwarden import postgres
from walwarden.api import (
    DataLossWindow,
    PlannedService,
    RestoreMode,
    RestorePlan,
    RestoreStep,
    RestoreStrategy,
    format_timestamp,
    parse_timestamp,
    utcnow,
)
from walwarden.api.common import ADMIN_SECRET_KEYS
from walwarden.kube import workloads
from walwarden.postgres import databases
from walwarden.restore import dbinfo
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import source_of
from walwarden.restore.switch import switch_names
from walwarden.restore.target import target_database, target_secret
from walwarden.workflow.engine import StepFailed
from walwarden.workflow.steps import require_secret_keys


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


# What each step inside the stop window costs, as the plan says it (the downtime's components).
DOWNTIME: dict[str, str] = {
    RestoreStep.SCALE_DOWN: "stop the services tier by tier (their own shutdown time)",
    RestoreStep.BUILD: "pg_restore of {size} bytes into {restored} (spec.stopServicesFirst)",
    RestoreStep.RESTORE: "pg_restore --clean of {size} bytes into the live database: grows with the database",
    RestoreStep.SWITCH: "refuse connections, end the sessions left, two renames: seconds, whatever the size",
    RestoreStep.RECONFIGURE: "repoint {secrets} db-info secrets, restart the orchestrator: seconds",
    RestoreStep.SCALE_UP: "start the services tier by tier until Ready",
}


PLANNING = (RestoreStep.VALIDATE, RestoreStep.PLAN, RestoreStep.ACQUIRE_LOCK)  # not worth saying in the summary


def stop_window(steps: list[str]) -> tuple[list[str], list[str]]:
    """The steps before the stop, and those inside it (ScaleDown through ScaleUp)."""
    if RestoreStep.SCALE_DOWN not in steps or RestoreStep.SCALE_UP not in steps:
        return steps, []
    down, up = steps.index(RestoreStep.SCALE_DOWN), steps.index(RestoreStep.SCALE_UP)
    return steps[:down], steps[down : up + 1]


def plan(run: RestoreRun) -> str:
    found, spec = source_of(run), run.spec
    services = planned_services(run)
    now = utcnow()
    strategy = spec.effective_strategy
    restored = previous = None
    if strategy == RestoreStrategy.SWITCH:
        names = switch_names(run)
        restored, previous = names.restored, names.previous
    elif spec.mode == RestoreMode.REDIRECTED:
        restored = target_database(run)
    window = DataLossWindow(
        backup_time=found.taken_at,
        restore_time=format_timestamp(now),
        seconds=round((now - parse_timestamp(found.taken_at)).total_seconds()),
        kept_in=(
            f"the previous database {previous}"
            if previous
            else "the original database (untouched)"
            if spec.mode == RestoreMode.REDIRECTED
            else None
        ),
    )
    secrets = dbinfo.secret_names(run) if spec.mode == RestoreMode.REDIRECTED else []
    before, inside = stop_window(list(run.step_names))
    values = {"size": found.dump.size_bytes, "restored": restored, "secrets": len(secrets)}
    run.status.plan = RestorePlan(
        strategy=str(strategy or "Redirected"),
        steps=list(run.step_names),
        before_stop=before,
        stop_window=inside,
        downtime=[f"{step}: {DOWNTIME[step].format(**values)}" for step in inside if step in DOWNTIME],
        restored_database=restored,
        previous_database=previous,
        space_bytes=_space(run) if restored else None,
        services=services,
        secrets=secrets,
        data_loss_window=window,
    )
    if run.status.data_loss_window is None:
        run.status.data_loss_window = window
    run.status.strategy = run.status.plan.strategy
    stopped = ", ".join(f"{s.name}×{s.replicas}" for s in services)
    checks_and_builds = [step for step in before if step not in PLANNING] or ["checks"]
    history = f"history after {found.taken_at} ({window.seconds} s)"
    history += f" is kept in {window.kept_in}" if window.kept_in else " is lost"
    return (
        f"{'dry run: ' if run.dry_run else ''}{run.status.plan.strategy}: {', '.join(checks_and_builds)} before "
        f"the stop, {', '.join(inside)} inside it; stops {stopped}; {history}"
    )


def _space(run: RestoreRun) -> int | None:
    """About what the restored database will take: the vault's database now (unknown when it cannot
    be read — the plan is not refused for it)."""
    found = source_of(run)
    try:
        if run.spec.mode == RestoreMode.REDIRECTED:
            if not found.backup_secret:
                return None
            secret = require_secret_keys(run, found.backup_secret, ADMIN_SECRET_KEYS, "the backup's database")
            return databases.size_bytes(secret, found.dump.name)
        return databases.size_bytes(target_secret(run), target_database(run))
    except (postgres.DatabaseError, StepFailed):
        return None
