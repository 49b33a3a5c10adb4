"""ScaleDown (restore/steps/scale_down.py): the services stopped tier by tier, then no application
session left on the target (by sessionPolicy); its undo starts them again."""

from __future__ import annotations

import pytest

from tests.unit.fakes import ago, running_since, session
from walwarden import postgres
from walwarden.api import ConditionType, RestoreStep, parse_timestamp
from walwarden.restore.steps.scale_down import RECONNECT_GRACE_SECONDS, scale_down, start_stopped_services
from walwarden.workflow.engine import StepFailed, UndoCause, Wait

POLICY = ("policy-node0", "policy-node1", "policy-node2")


def scaled_down(vault, run):
    """ScaleDown looked at again, the cluster catching up in between, until it is done."""
    return vault.until_done(lambda: scale_down(run))


def with_policy(vault, on_remaining: str, wait_seconds: int = 60):
    return vault.restore_run(
        vault.restore_spec(sessionPolicy={"onRemaining": on_remaining, "waitSeconds": wait_seconds})
    )


def stopped(vault, run):
    """The services already gone (the sessions are what the test looks at)."""
    for _ in range(3):
        with pytest.raises(Wait):
            scale_down(run)
        vault.kube.settle()
    return run


# --- stopping -----------------------------------------------------------------------------------


def test_the_services_stop_tier_by_tier_and_then_the_sessions_are_checked(vault):
    run = vault.restore_run()
    with pytest.raises(Wait) as waiting:
        scale_down(run)
    assert "tier 1 (wallet)" in waiting.value.message
    assert vault.kube.replicas() == {"wallet": 0, **{p: 1 for p in POLICY}, "nats": 3, "orchestrator": 1}
    message = scaled_down(vault, run)
    assert message == "stopped wallet → policy-node0/policy-node1/policy-node2 → nats; no application sessions left"
    assert run.status.original_replicas == {"wallet": 2, **{p: 1 for p in POLICY}, "nats": 3}


def test_the_downtime_starts_at_the_first_pass_and_is_not_moved_by_later_ones(vault):
    run = vault.restore_run()
    with pytest.raises(Wait):
        scale_down(run)
    first = run.status.scaled_down_at
    assert abs((parse_timestamp(first) - parse_timestamp(ago(0))).total_seconds()) <= 2
    run.status.scaled_down_at = ago(300)  # as if the first pass was five minutes ago
    earlier = run.status.scaled_down_at
    scaled_down(vault, run)
    assert run.status.scaled_down_at == earlier


def test_the_first_record_of_the_original_counts_wins(vault):
    run = vault.restore_run()
    with pytest.raises(Wait):
        scale_down(run)
    vault.kube.workload("wallet").replicas = 1  # scaled up meanwhile (a person, an HPA, a sync)
    again = vault.next_pass(run)
    scaled_down(vault, again)
    assert again.status.original_replicas["wallet"] == 2
    assert vault.kube.workload("wallet").replicas == 0


def test_the_sessions_are_not_judged_while_pods_remain(vault):
    vault.db.sessions = [session(101)]
    run = with_policy(vault, "Fail")
    with pytest.raises(Wait):  # not SessionsRemain: the wallet's pods may still be closing them
        scale_down(run)


def test_pods_that_stay_fail_the_step_after_the_stop_timeout(vault):
    run = vault.restore_run()
    running_since(run, RestoreStep.SCALE_DOWN, vault.settings.stop_timeout_seconds + 1)
    with pytest.raises(StepFailed) as stuck:
        scale_down(run)
    assert stuck.value.reason == "ServicesStuckStopping" and "wallet-0" in stuck.value.message


# --- sessions -----------------------------------------------------------------------------------


def test_a_target_database_that_does_not_exist_yet_has_no_sessions(vault):
    vault.db.databases = set()
    vault.db.sessions = [session(101)]  # on another database of the server: not asked
    run = stopped(vault, with_policy(vault, "Fail"))
    assert scale_down(run).endswith("no sessions (the target database does not exist yet)")


def test_policy_fail_fails_at_once_naming_the_sessions(vault):
    run = stopped(vault, with_policy(vault, "Fail"))
    vault.db.sessions = [session(101), session(102, "psql")]
    with pytest.raises(StepFailed) as failed:
        scale_down(run)
    assert failed.value.reason == "SessionsRemain"
    assert "2 session(s)" in failed.value.message and "pid 102 user wallet application psql" in failed.value.message
    assert vault.db.terminated == []


def test_policy_wait_waits_up_to_wait_seconds_then_fails(vault):
    run = stopped(vault, with_policy(vault, "Wait", wait_seconds=60))
    vault.db.sessions = [session(101)]
    with pytest.raises(Wait) as waiting:
        scale_down(run)
    assert "waiting up to 60s" in waiting.value.message
    seen = run.status.sessions_seen_at
    with pytest.raises(Wait):
        scale_down(run)
    assert run.status.sessions_seen_at == seen  # counted from the first sight
    run.status.sessions_seen_at = ago(61)
    with pytest.raises(StepFailed) as failed:
        scale_down(run)
    assert failed.value.reason == "SessionsRemain" and "after 60s" in failed.value.message
    assert vault.db.terminated == []


def test_sessions_that_end_while_waiting_let_the_step_finish(vault):
    run = stopped(vault, with_policy(vault, "Wait"))
    vault.db.sessions = [session(101)]
    with pytest.raises(Wait):
        scale_down(run)
    vault.db.sessions = []
    assert scale_down(run).endswith("no application sessions left")


def test_policy_terminate_terminates_after_wait_seconds_and_looks_again(vault):
    run = stopped(vault, with_policy(vault, "Terminate", wait_seconds=60))
    vault.db.sessions = [session(101), session(102)]
    with pytest.raises(Wait):
        scale_down(run)
    assert vault.db.terminated == []  # not before wait_seconds
    run.status.sessions_seen_at = ago(61)
    with pytest.raises(Wait) as waiting:
        scale_down(run)
    assert waiting.value.delay == 1 and "terminated 2 session(s)" in waiting.value.message
    assert vault.db.terminated == [101, 102]
    [event] = [e for e in run.events if e.reason == "SessionsTerminated"]
    assert event.warning and "pid 101" in event.message
    assert scale_down(run).endswith("no application sessions left")


def test_policy_terminate_with_no_wait_terminates_at_first_sight(vault):
    run = stopped(vault, with_policy(vault, "Terminate", wait_seconds=0))
    vault.db.sessions = [session(101)]
    with pytest.raises(Wait):
        scale_down(run)
    assert vault.db.terminated == [101]


def test_clients_that_keep_reconnecting_fail_the_step_after_the_grace(vault):
    run = stopped(vault, with_policy(vault, "Terminate", wait_seconds=60))
    vault.db.sessions, vault.db.reconnecting = [session(101)], True
    run.status.sessions_seen_at = ago(60 + RECONNECT_GRACE_SECONDS - 5)
    with pytest.raises(Wait):
        scale_down(run)  # still within the grace: terminated again
    assert vault.db.terminated == [101]
    run.status.sessions_seen_at = ago(60 + RECONNECT_GRACE_SECONDS + 5)
    with pytest.raises(StepFailed) as failed:
        scale_down(run)
    assert failed.value.reason == "SessionsRemain" and "keep reconnecting" in failed.value.message
    assert vault.db.terminated == [101]  # no endless loop of terminations


def test_sessions_that_cannot_be_checked_fail_with_the_databases_reason(vault):
    run = stopped(vault, vault.restore_run())
    vault.db.error = postgres.DatabaseError("DatabaseUnreachable", "cannot connect to db.internal:5432")
    with pytest.raises(StepFailed) as failed:
        scale_down(run)
    assert failed.value.reason == "DatabaseUnreachable"
    assert failed.value.message == "cannot check sessions on the target: cannot connect to db.internal:5432"


# --- the undo -----------------------------------------------------------------------------------


def test_nothing_recorded_nothing_to_start(vault):
    run = vault.restore_run()
    assert start_stopped_services(run, UndoCause.FAILURE) is None
    assert vault.kube.writes == []


def started_by_undo(vault, run, cause):
    return vault.until_done(lambda: start_stopped_services(run, cause))


@pytest.mark.parametrize("cause", list(UndoCause))
def test_the_undo_starts_what_was_stopped_with_the_original_counts_and_records_the_downtime(vault, cause):
    run = vault.restore_run()
    scaled_down(vault, run)
    run.status.scaled_down_at = ago(120)
    message = started_by_undo(vault, run, cause)
    assert message.startswith("the services it had stopped were started again: started nats, policy-node0")
    assert vault.kube.replicas() == {"wallet": 2, **{p: 1 for p in POLICY}, "nats": 3, "orchestrator": 1}
    assert 119 <= run.status.downtime_seconds <= 125


def test_a_slow_start_after_a_failure_is_loud_after_a_deletion_it_only_waits(vault):
    run = vault.restore_run()
    scaled_down(vault, run)
    running_since(run, RestoreStep.ROLLBACK, vault.settings.stop_timeout_seconds + 1)
    with pytest.raises(Wait):
        start_stopped_services(run, UndoCause.DELETION)
    assert run.status.condition(ConditionType.SERVICES_NOT_READY) is None
    with pytest.raises(Wait):
        start_stopped_services(run, UndoCause.FAILURE)
    assert run.status.condition_is_true(ConditionType.SERVICES_NOT_READY)
