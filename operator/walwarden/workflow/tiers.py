"""Stopping the vault's services tier by tier, and starting them again in the reverse order.

Stop order (default profile): wallet → policy-node0/1/2 (together) → nats; each tier's pods are
gone before the next tier stops. Start order is the reverse, each tier Ready before the next.
Both are steps of the engine: they look at the world, act where it is not yet right, and wait.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from walwarden import failpoints
from walwarden.api import ConditionType, Topology
from walwarden.kube import workloads
from walwarden.kube.api import Kube
from walwarden.workflow.engine import Run, StepFailed, Wait


def _tier_workloads(kube: Kube, namespace: str, tier: list[str]) -> list[workloads.Workload]:
    found = {name: workloads.find_workload(kube, namespace, name) for name in tier}
    missing = [name for name, workload in found.items() if workload is None]
    if missing:
        raise StepFailed(
            "ServiceNotFound",
            f"no Deployment or StatefulSet named {', '.join(missing)} in namespace {namespace}; "
            "fix spec.topology (or the operator's default profile) to name the vault's services",
        )
    return [workload for workload in found.values() if workload is not None]


def missing_services(kube: Kube, namespace: str, topology: Topology) -> list[str]:
    names = [name for tier in topology.stop_tiers for name in tier]
    return [name for name in names if workloads.find_workload(kube, namespace, name) is None]


def stop_in_order(
    run: Run[Any, Any], kube: Kube, namespace: str, topology: Topology, poll: float, stuck_after: float | None = None
) -> str:
    """With `stuck_after`, a step that has waited that long for pods to go fails instead of
    waiting for ever (a pod stuck Terminating: a finalizer, a node that is gone)."""
    try:
        return _stop_in_order(run, kube, namespace, topology, poll)
    except Wait as wait:
        if stuck_after is not None and run.seconds_in_current_step() > stuck_after:
            raise StepFailed(
                "ServicesStuckStopping",
                f"{wait.message} — for more than {stuck_after:g}s. A pod that does not go away may "
                "still hold the database; the stopped services are started again. Find out why the "
                "pods stay (kubectl describe pod: finalizers, an unreachable node), then create a "
                "new request",
            ) from None
        raise


def _stop_in_order(run: Run[Any, Any], kube: Kube, namespace: str, topology: Topology, poll: float) -> str:
    recorded = run.status.original_replicas
    for index, tier in enumerate(topology.stop_tiers, start=1):
        remaining = []
        for workload in _tier_workloads(kube, namespace, tier):
            if workload.original_replicas is None and workload.name in recorded:
                # Our annotation was lost while we held it down (a GitOps replace?): the first
                # record wins, or ScaleUp would "start" it with 0 replicas.
                workloads.scale_to_zero(kube, replace(workload, original_replicas=recorded[workload.name]))
            elif workload.replicas != 0 or workload.original_replicas is None:
                recorded[workload.name] = workloads.scale_to_zero(kube, workload)
            elif workload.name not in recorded:
                recorded[workload.name] = workload.original_replicas
            remaining += workloads.pods_of(kube, workload)
        if remaining:
            raise Wait(
                f"stopping tier {index} ({', '.join(tier)}): waiting for {len(remaining)} pod(s) "
                f"to stop: {', '.join(sorted(remaining)[:5])}",
                delay=poll,
            )
    return "stopped " + " → ".join("/".join(tier) for tier in topology.stop_tiers)


def check_still_stopped(
    run: Run[Any, Any], kube: Kube, namespace: str, topology: Topology, doing: str = "the restore"
) -> None:
    """Inside the stop window, before what must not run under live services (pg_restore, the
    switch, the repoint): every stopped service is still at 0 replicas with no pod. Something that
    scaled one back up (Argo CD self-heal, an HPA, a person) fails the step, naming who did it, so
    the rollback starts the services again instead of restoring under them."""
    failpoints.reached("stop-window:check")
    back = []
    for tier in topology.stop_tiers:
        for workload in _tier_workloads(kube, namespace, tier):
            pods = workloads.pods_of(kube, workload)
            if workload.replicas == 0 and not pods:
                continue
            who = f"set by {workload.replicas_set_by}" if workload.replicas_set_by else "by an unknown writer"
            argocd = (
                f", tracked by Argo CD Application {workload.argocd_application}" if workload.argocd_application else ""
            )
            back.append(f"{workload.name} ({workload.replicas} replica(s) {who}{argocd}; {len(pods)} pod(s))")
    if back:
        raise StepFailed(
            "ServicesScaledUp",
            f"stopped services were scaled back up while the vault was stopped for {doing}: {'; '.join(back)}. "
            f"{doing[0].upper()}{doing[1:]} does not run under live services. Stop what scales them meanwhile — "
            "Argo CD self-heal (ignoreDifferences on /spec/replicas with RespectIgnoreDifferences=true, or suspend "
            "automated sync), an autoscaler, a person — then create a new request",
        )


class TierNotReady(Wait):
    """A tier's services are started but not all Ready yet."""

    def __init__(self, message: str, delay: float, not_ready: list[workloads.Workload]):
        super().__init__(message, delay)
        self.not_ready = not_ready


def start_in_order(
    run: Run[Any, Any],
    kube: Kube,
    namespace: str,
    topology: Topology,
    poll: float,
    loud_after: float | None = None,
    give_up_after: float | None = None,
) -> str:
    """With `loud_after`, services that are still not Ready after that long in the step raise the
    condition ServicesNotReady (and one Warning Event): the step keeps waiting, but nobody can miss
    that the vault is not back. With `give_up_after`, the step fails after that long instead
    (ServicesNotReady), naming each service that did not come up and why, so the workflow rolls
    back to what ran before rather than leave the vault down."""
    try:
        started = _start_in_order(run, kube, namespace, topology, poll)
    except TierNotReady as wait:
        waited = run.seconds_in_current_step()
        if give_up_after is not None and waited > give_up_after:
            why = [line for workload in wait.not_ready for line in workloads.unready_pods(kube, workload)]
            raise StepFailed(
                "ServicesNotReady",
                f"{', '.join(w.name for w in wait.not_ready)} did not become Ready within {give_up_after:g}s "
                f"of being started ({'; '.join(why) or 'no pod yet'})",
            ) from None
        if loud_after is not None and waited > loud_after:
            _say_services_not_ready(run, f"{wait.message} — for more than {loud_after:g}s")
        raise
    if run.status.condition_is_true(ConditionType.SERVICES_NOT_READY):
        run.condition(ConditionType.SERVICES_NOT_READY, False, "ServicesReady", "every service is Ready again")
    return started


def _say_services_not_ready(run: Run[Any, Any], message: str) -> None:
    if not run.status.condition_is_true(ConditionType.SERVICES_NOT_READY):
        run.event("ServicesNotReady", message, warning=True)
    run.condition(ConditionType.SERVICES_NOT_READY, True, "StartTooSlow", message)


def _start_in_order(run: Run[Any, Any], kube: Kube, namespace: str, topology: Topology, poll: float) -> str:
    recorded = run.status.original_replicas
    started = []
    for index, tier in enumerate(topology.start_tiers(), start=1):
        tier_workloads = []
        for name in tier:
            workload = workloads.find_workload(kube, namespace, name)
            if workload is None:
                continue  # never found, so never stopped
            original = workload.original_replicas
            if original is None:
                original = recorded.get(name)
            if original is None:
                continue  # we never stopped it
            if workload.replicas != original:
                workloads.scale_to(kube, workload, original)
            tier_workloads.append((workload, original))
        not_ready, counts = [], []
        for workload, wanted in tier_workloads:
            now = workloads.find_workload(kube, namespace, workload.name)
            ready = now.ready_replicas if now is not None else 0
            if ready < wanted:
                not_ready.append(workload)
                counts.append(f"{workload.name} {ready}/{wanted}")
        if not_ready:
            raise TierNotReady(
                f"starting tier {index} ({', '.join(tier)}): waiting for Ready pods: {', '.join(counts)}",
                delay=poll,
                not_ready=not_ready,
            )
        for workload, _ in tier_workloads:
            if workload.original_replicas is not None:
                workloads.forget_original_replicas(kube, workload)
        started += [w.name for w, _ in tier_workloads]
    return f"started {', '.join(started)} with their original replica counts" if started else "nothing was stopped"
