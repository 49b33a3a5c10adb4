"""ScaleUp (restore/steps/scale_up.py): the services started in reverse stop order with their
original counts, each tier Ready before the next; the downtime and when every service was Ready."""

from __future__ import annotations

import pytest

from tests.unit.fakes import ago, running_since
from walwarden.api import ConditionType, RestoreStep, parse_timestamp
from walwarden.restore.steps.scale_down import scale_down
from walwarden.restore.steps.scale_up import scale_up
from walwarden.workflow.engine import StepFailed, Wait

POLICY = ("policy-node0", "policy-node1", "policy-node2")


def stopped(vault, **spec):
    """A restore whose ScaleDown stopped every service five minutes ago."""
    run = vault.restore_run(vault.restore_spec(**spec))
    vault.until_done(lambda: scale_down(run))
    run.status.scaled_down_at = ago(300)
    running_since(run, RestoreStep.SCALE_UP, 1)
    return vault.next_pass(run)


def started(vault, run) -> str:
    return vault.until_done(lambda: scale_up(run))


def test_nats_starts_first_and_the_policy_nodes_wait_for_it_to_be_ready(vault):
    run = stopped(vault)
    with pytest.raises(Wait) as waiting:
        scale_up(run)
    assert vault.kube.replicas() == {"wallet": 0, **{p: 0 for p in POLICY}, "nats": 3, "orchestrator": 1}
    assert "waiting for Ready pods: nats 0/3" in waiting.value.message
    vault.kube.settle("nats")
    with pytest.raises(Wait):
        scale_up(run)
    assert [vault.kube.workload(p).replicas for p in POLICY] == [1, 1, 1]
    assert vault.kube.workload("wallet").replicas == 0  # last: it needs the policy nodes


def test_every_service_gets_its_original_count_back(vault):
    run = stopped(vault)
    assert started(vault, run) == (
        "started nats, policy-node0, policy-node1, policy-node2, wallet with their original replica counts"
    )
    assert vault.kube.replicas() == {"wallet": 2, **{p: 1 for p in POLICY}, "nats": 3, "orchestrator": 1}
    assert all("walwarden.io/original-replicas" not in w.annotations for w in vault.kube.workloads.values())


def test_the_downtime_and_the_ready_time_are_recorded_once_everything_is_ready(vault):
    run = stopped(vault)
    with pytest.raises(Wait):
        scale_up(run)
    assert run.status.services_ready_at is None and run.status.downtime_seconds is None
    started(vault, run)
    assert 299 <= run.status.downtime_seconds <= 305
    assert abs((parse_timestamp(run.status.services_ready_at) - parse_timestamp(ago(0))).total_seconds()) <= 2


def test_with_rollback_policy_manual_services_still_not_ready_after_the_stop_timeout_are_loud_and_then_cleared(
    vault,
):
    run = stopped(vault, rollbackPolicy="Manual")
    running_since(run, RestoreStep.SCALE_UP, vault.settings.stop_timeout_seconds + 1)
    with pytest.raises(Wait):
        scale_up(run)
    condition = run.status.condition(ConditionType.SERVICES_NOT_READY)
    assert condition.status == "True" and "nats 0/3" in condition.message
    assert [e.reason for e in run.events if e.warning] == ["ServicesNotReady"]
    started(vault, run)
    assert run.status.condition(ConditionType.SERVICES_NOT_READY).status == "False"


def test_a_slow_start_within_the_stop_timeout_is_not_loud(vault):
    run = stopped(vault)
    running_since(run, RestoreStep.SCALE_UP, vault.settings.stop_timeout_seconds - 10)
    with pytest.raises(Wait):
        scale_up(run)
    assert run.status.condition(ConditionType.SERVICES_NOT_READY) is None


def wallet_crashing(vault, **spec):
    """Everything Ready but the wallet, whose pod crashes on the restored data."""
    run = stopped(vault, **spec)
    for tier in ("nats", ("policy-node0", "policy-node1", "policy-node2")):
        with pytest.raises(Wait):
            scale_up(run)
        vault.kube.settle(*([tier] if isinstance(tier, str) else tier))
    with pytest.raises(Wait):
        scale_up(run)
    selector = vault.kube.workload("wallet").selector
    vault.kube.add_pod(
        "wallet-0", selector, ready=False, waiting_reason="CrashLoopBackOff", last_exit_code=3, restarts=4
    )
    vault.kube.add_pod("wallet-1", selector)  # Ready: not named
    return run


def test_services_not_ready_by_the_ready_timeout_fail_the_step_naming_each_and_its_pods_last_state(vault):
    run = wallet_crashing(vault, verify={"readyTimeoutSeconds": 120})
    running_since(run, RestoreStep.SCALE_UP, 121)
    with pytest.raises(StepFailed) as failed:
        scale_up(run)
    assert failed.value.reason == "ServicesNotReady"
    assert failed.value.message == (
        "wallet did not become Ready within 120s of being started (pod wallet-0: main not Ready: "
        "waiting (CrashLoopBackOff); last exit 3 (Error); restarted 4 time(s))"
    )


def test_before_the_ready_timeout_a_slow_service_is_waited_for(vault):
    run = wallet_crashing(vault, verify={"readyTimeoutSeconds": 120})
    running_since(run, RestoreStep.SCALE_UP, 119)
    with pytest.raises(Wait):
        scale_up(run)


def test_with_rollback_policy_manual_the_ready_timeout_never_fails_the_step(vault):
    run = wallet_crashing(vault, verify={"readyTimeoutSeconds": 120}, rollbackPolicy="Manual")
    running_since(run, RestoreStep.SCALE_UP, 86400)
    with pytest.raises(Wait):
        scale_up(run)
    assert run.status.condition(ConditionType.SERVICES_NOT_READY).status == "True"
