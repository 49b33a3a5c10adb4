"""Stopping the services tier by tier and starting them in reverse order (workflow/tiers.py)."""

from __future__ import annotations

import pytest

from tests.unit.fakes import running_since
from walwarden.api import ConditionType, RestoreStep, Topology
from walwarden.kube.workloads import ORIGINAL_REPLICAS
from walwarden.workflow import tiers
from walwarden.workflow.engine import StepFailed, Wait

TOPOLOGY = Topology()
POLICY = ("policy-node0", "policy-node1", "policy-node2")


def stop(vault, run, stuck_after=None):
    return tiers.stop_in_order(run, vault.kube, vault.namespace, TOPOLOGY, poll=1, stuck_after=stuck_after)


def start(vault, run, loud_after=None):
    return tiers.start_in_order(run, vault.kube, vault.namespace, TOPOLOGY, poll=1, loud_after=loud_after)


def started(vault, run, loud_after=None):
    """Start the services, the cluster catching up after each look; what the start said."""
    return vault.until_done(lambda: start(vault, run, loud_after))


def stopped_vault(vault):
    """Every tier stopped by a run whose status recorded the counts."""
    run = vault.restore_run()
    vault.until_done(lambda: stop(vault, run))
    return run


# --- looking for the services -------------------------------------------------------------------


def test_missing_services_are_the_stop_tiers_names_without_a_workload_in_tier_order(vault):
    del vault.kube.workloads[(vault.namespace, "nats")]
    del vault.kube.workloads[(vault.namespace, "policy-node1")]
    del vault.kube.workloads[(vault.namespace, "orchestrator")]  # not in a stop tier: not needed
    assert tiers.missing_services(vault.kube, vault.namespace, TOPOLOGY) == ["policy-node1", "nats"]


def test_a_statefulset_counts_as_a_service(vault):
    del vault.kube.workloads[(vault.namespace, "nats")]
    vault.kube.add_workload("nats", replicas=3, kind="StatefulSet", pods=0)
    assert tiers.missing_services(vault.kube, vault.namespace, TOPOLOGY) == []


def test_stopping_a_tier_whose_service_is_gone_fails_naming_it(vault):
    del vault.kube.workloads[(vault.namespace, "wallet")]
    with pytest.raises(StepFailed) as failed:
        stop(vault, vault.restore_run())
    assert failed.value.reason == "ServiceNotFound" and "wallet" in failed.value.message


# --- stopping -----------------------------------------------------------------------------------


def test_the_first_tier_stops_first_and_the_next_waits_while_its_pods_remain(vault):
    run = vault.restore_run()
    with pytest.raises(Wait) as waiting:
        stop(vault, run)
    assert vault.kube.replicas() == {"wallet": 0, **{p: 1 for p in POLICY}, "nats": 3, "orchestrator": 1}
    assert "tier 1 (wallet)" in waiting.value.message and "wallet-0, wallet-1" in waiting.value.message
    assert waiting.value.delay == 1
    # A second look while wallet's pods are still there (terminating) stops nothing more.
    with pytest.raises(Wait):
        stop(vault, run)
    assert vault.kube.workload("policy-node0").replicas == 1


def test_a_tier_stops_together_once_the_tier_before_is_gone_and_the_last_tier_last(vault):
    run = vault.restore_run()
    with pytest.raises(Wait):
        stop(vault, run)
    vault.kube.settle("wallet")
    with pytest.raises(Wait) as waiting:
        stop(vault, run)
    assert [vault.kube.workload(p).replicas for p in POLICY] == [0, 0, 0]
    assert vault.kube.workload("nats").replicas == 3
    assert "tier 2 (policy-node0, policy-node1, policy-node2)" in waiting.value.message
    vault.kube.settle()
    with pytest.raises(Wait):
        stop(vault, run)
    vault.kube.settle()
    assert stop(vault, run) == "stopped wallet → policy-node0/policy-node1/policy-node2 → nats"
    assert vault.kube.workload("orchestrator").replicas == 1  # not in a stop tier


def test_the_original_counts_are_kept_on_the_workloads_and_in_the_status(vault):
    run = stopped_vault(vault)
    assert run.status.original_replicas == {"wallet": 2, **{p: 1 for p in POLICY}, "nats": 3}
    assert vault.kube.workload("wallet").annotations[ORIGINAL_REPLICAS] == "2"
    assert vault.kube.workload("nats").annotations[ORIGINAL_REPLICAS] == "3"


def test_the_first_record_wins_when_a_stopped_service_is_scaled_up_meanwhile(vault):
    run = vault.restore_run()
    with pytest.raises(Wait):
        stop(vault, run)
    vault.kube.workload("wallet").replicas = 5  # someone (an HPA, a person) scales it back up
    with pytest.raises(Wait):
        stop(vault, run)
    assert vault.kube.workload("wallet").replicas == 0
    assert run.status.original_replicas["wallet"] == 2
    assert vault.kube.workload("wallet").annotations[ORIGINAL_REPLICAS] == "2"


def test_a_lost_status_is_recovered_from_the_workloads(vault):
    run = vault.restore_run()
    with pytest.raises(Wait):
        stop(vault, run)
    vault.kube.settle()
    resumed = vault.restore_run()  # the status patch of the first pass was lost
    with pytest.raises(Wait):
        stop(vault, resumed)
    assert resumed.status.original_replicas["wallet"] == 2


def test_a_service_already_at_zero_is_recorded_as_zero_and_left_at_zero(vault):
    vault.kube.workload("policy-node2").replicas = 0
    vault.kube.settle("policy-node2")
    run = stopped_vault(vault)
    assert run.status.original_replicas["policy-node2"] == 0
    started(vault, run)
    assert vault.kube.workload("policy-node2").replicas == 0
    assert vault.kube.workload("policy-node1").replicas == 1


def test_pods_that_do_not_go_fail_the_step_after_stuck_after_seconds(vault):
    run = vault.restore_run()
    running_since(run, RestoreStep.SCALE_DOWN, 599)
    with pytest.raises(Wait):
        stop(vault, run, stuck_after=600)
    running_since(run, RestoreStep.SCALE_DOWN, 601)
    with pytest.raises(StepFailed) as stuck:
        stop(vault, run, stuck_after=600)
    assert stuck.value.reason == "ServicesStuckStopping"
    assert "wallet-0" in stuck.value.message and "600s" in stuck.value.message
    with pytest.raises(Wait):
        stop(vault, run)  # without stuck_after (a rollback's stop): it keeps waiting


def test_a_tier_that_is_gone_in_time_is_not_stuck(vault):
    run = stopped_vault(vault)
    running_since(run, RestoreStep.SCALE_DOWN, 10_000)
    assert stop(vault, run, stuck_after=600).startswith("stopped")


# --- starting -----------------------------------------------------------------------------------


def test_tiers_start_in_reverse_order_each_ready_before_the_next(vault):
    run = stopped_vault(vault)
    with pytest.raises(Wait) as waiting:
        start(vault, run)
    assert vault.kube.workload("nats").replicas == 3
    assert vault.kube.workload("policy-node0").replicas == 0 and vault.kube.workload("wallet").replicas == 0
    assert "tier 1 (nats)" in waiting.value.message and "nats 0/3" in waiting.value.message
    vault.kube.settle("nats")
    with pytest.raises(Wait) as waiting:
        start(vault, run)
    assert [vault.kube.workload(p).replicas for p in POLICY] == [1, 1, 1]
    assert vault.kube.workload("wallet").replicas == 0
    vault.kube.settle()
    with pytest.raises(Wait):
        start(vault, run)
    vault.kube.settle()
    assert start(vault, run) == (
        "started nats, policy-node0, policy-node1, policy-node2, wallet with their original replica counts"
    )
    assert vault.kube.replicas() == {"wallet": 2, **{p: 1 for p in POLICY}, "nats": 3, "orchestrator": 1}


def test_a_tier_keeps_its_record_until_it_is_ready(vault):
    run = stopped_vault(vault)
    with pytest.raises(Wait):
        start(vault, run)
    assert vault.kube.workload("nats").annotations[ORIGINAL_REPLICAS] == "3"  # not Ready yet
    vault.kube.settle("nats")
    with pytest.raises(Wait):
        start(vault, run)
    assert ORIGINAL_REPLICAS not in vault.kube.workload("nats").annotations
    assert vault.kube.workload("wallet").annotations[ORIGINAL_REPLICAS] == "2"


def test_the_status_record_brings_back_a_service_whose_annotation_was_lost(vault):
    run = stopped_vault(vault)
    vault.kube.workload("nats").annotations.clear()
    with pytest.raises(Wait):
        start(vault, run)
    assert vault.kube.workload("nats").replicas == 3


def test_what_was_never_stopped_is_left_alone(vault):
    run = vault.restore_run()  # nothing recorded, no annotation
    vault.kube.workload("wallet").replicas = 0
    assert start(vault, run) == "nothing was stopped"
    assert vault.kube.workload("wallet").replicas == 0


def test_services_still_not_ready_after_loud_after_raise_services_not_ready_once(vault):
    run = stopped_vault(vault)
    running_since(run, RestoreStep.SCALE_UP, 30)
    with pytest.raises(Wait):
        start(vault, run, loud_after=600)
    assert run.status.condition(ConditionType.SERVICES_NOT_READY) is None

    running_since(run, RestoreStep.SCALE_UP, 601)
    for _ in range(2):
        with pytest.raises(Wait):
            start(vault, run, loud_after=600)
    condition = run.status.condition(ConditionType.SERVICES_NOT_READY)
    assert condition.status == "True" and condition.reason == "StartTooSlow" and "nats 0/3" in condition.message
    warnings = [e for e in run.events if e.reason == "ServicesNotReady"]
    assert len(warnings) == 1 and warnings[0].warning  # one Event, not one per look

    started(vault, run, loud_after=600)
    condition = run.status.condition(ConditionType.SERVICES_NOT_READY)
    assert condition.status == "False" and condition.reason == "ServicesReady"


def test_without_loud_after_a_slow_start_only_waits(vault):
    run = stopped_vault(vault)
    running_since(run, RestoreStep.ROLLBACK, 10_000)
    with pytest.raises(Wait):
        start(vault, run)
    assert run.status.condition(ConditionType.SERVICES_NOT_READY) is None and run.events == []
