"""The switch's choice of the next statement (restore/switch.py), from every state the server can
show: each choice moves towards its end state, and a state no switch leaves touches nothing."""

from __future__ import annotations

import pytest

from walwarden.postgres.databases import DatabaseState
from walwarden.restore.switch import Direction, SwitchNames, SwitchStateUnknown, Verb, next_action

NAMES = SwitchNames(database="vault", restored="vault_walwarden_1234abcd", previous="vault_pre_restore_202612021705")


def server(**databases: bool) -> dict[str, DatabaseState]:
    """`name=True`: exists and accepts connections; False: exists, refusing; absent: does not exist."""
    roles = {"current": NAMES.database, "restored": NAMES.restored, "previous": NAMES.previous}
    observed = {name: DatabaseState(name, False) for name in NAMES.all()}
    for role, allows in databases.items():
        observed[roles[role]] = DatabaseState(roles[role], True, allows)
    return observed


def apply(observed: dict[str, DatabaseState], action) -> dict[str, DatabaseState]:
    """What the server shows after the action."""
    result = dict(observed)
    state = result[action.database]
    if action.verb == Verb.RENAME:
        result[action.database] = DatabaseState(action.database, False)
        result[action.new_name] = DatabaseState(action.new_name, True, state.allows_connections)
    else:
        result[action.database] = DatabaseState(action.database, True, action.verb == Verb.ALLOW_CONNECTIONS)
    return result


def run_to_the_end(direction, observed):
    steps = []
    while (action := next_action(direction, NAMES, observed)) is not None:
        steps.append(action.point)
        observed = apply(observed, action)
        assert len(steps) < 10, steps
    return steps, observed


def test_the_switch_from_the_start_refuses_renames_twice_and_opens_the_restored_database():
    steps, end = run_to_the_end(Direction.FORWARD, server(current=True, restored=False))
    assert steps == [
        "switch:refuse-current",
        "switch:rename-current-aside",
        "switch:rename-restored-in",
        "switch:allow-restored",
    ]
    assert end == server(current=True, previous=False)


@pytest.mark.parametrize("done", range(4))
def test_the_switch_resumed_after_any_statement_ends_in_the_same_state(done):
    observed = server(current=True, restored=True)  # the sibling still open: refused first
    for _ in range(done):
        observed = apply(observed, next_action(Direction.FORWARD, NAMES, observed))
    _, end = run_to_the_end(Direction.FORWARD, observed)
    assert end == server(current=True, previous=False)


@pytest.mark.parametrize("done", range(5))
def test_the_switch_back_from_any_point_of_the_switch_puts_the_original_back_open(done):
    observed = server(current=True, restored=False)
    for _ in range(done):
        action = next_action(Direction.FORWARD, NAMES, observed)
        if action is None:
            break
        observed = apply(observed, action)
    _, end = run_to_the_end(Direction.BACK, observed)
    assert end == server(current=True, restored=False)


def test_the_switch_back_when_nothing_was_built_only_opens_the_database():
    assert next_action(Direction.BACK, NAMES, server(current=True)) is None
    assert next_action(Direction.BACK, NAMES, server(current=False)).point == "switch-back:allow-previous"


@pytest.mark.parametrize(
    "observed",
    [server(), server(restored=False), server(current=True, restored=False, previous=False), server(previous=False)],
    ids=["nothing", "only-the-restored", "all-three", "only-the-previous"],
)
def test_a_state_no_switch_leaves_is_refused_for_a_person_to_look_at(observed):
    with pytest.raises(SwitchStateUnknown, match="Nothing was changed"):
        next_action(Direction.FORWARD, NAMES, observed)
    if not (observed[NAMES.database].exists and observed[NAMES.restored].exists):
        with pytest.raises(SwitchStateUnknown, match="Nothing was changed"):
            next_action(Direction.BACK, NAMES, observed)


@pytest.mark.parametrize("refused", [True, False])
def test_a_switch_that_found_its_previous_name_taken_still_opens_the_untouched_database(refused):
    """Someone made a database under the previous name first: the switch refuses to go on, and the
    switch back, seeing the sibling still there, knows the vault's database never moved: it opens
    it again (if the switch had refused its connections), so the services can start on it."""
    observed = server(current=not refused, restored=False, previous=True)
    with pytest.raises(SwitchStateUnknown):
        next_action(Direction.FORWARD, NAMES, observed)
    steps, end = run_to_the_end(Direction.BACK, observed)
    assert steps == (["switch-back:allow-previous"] if refused else [])
    assert end[NAMES.database] == DatabaseState(NAMES.database, True, True)
    assert end[NAMES.previous] == observed[NAMES.previous]  # not ours: left as it is
