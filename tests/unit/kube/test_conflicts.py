"""Conflicts (HTTP 409) are retried a bounded number of times, never for ever."""

from __future__ import annotations

import pytest

from walwarden.kube.api import CONFLICT_ATTEMPTS, Conflict, StillConflicting, retry_on_conflict


def test_an_action_that_conflicts_once_succeeds_on_the_next_attempt():
    calls = []

    def action():
        calls.append(1)
        if len(calls) == 1:
            raise Conflict("changed meanwhile")
        return "done"

    assert retry_on_conflict(action) == "done" and len(calls) == 2


def test_an_action_that_always_conflicts_gives_up_after_the_bound():
    calls = []

    def action():
        calls.append(1)
        raise Conflict("changed meanwhile")

    with pytest.raises(StillConflicting, match=f"after {CONFLICT_ATTEMPTS} attempts"):
        retry_on_conflict(action)
    assert len(calls) == CONFLICT_ATTEMPTS
