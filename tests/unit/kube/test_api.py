"""kube/api.py: conflicts (HTTP 409) are retried a bounded number of times, never for ever; API
errors become decisions; requests own what they create."""

from __future__ import annotations

import pytest
from kubernetes.client.rest import ApiException

from walwarden.kube.api import CONFLICT_ATTEMPTS, Conflict, StillConflicting, call, owner_reference, retry_on_conflict


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


def test_giving_up_names_the_object_and_the_bound_is_the_callers():
    calls = []

    def action():
        calls.append(1)
        raise Conflict("Conflict")

    with pytest.raises(StillConflicting) as gave_up:
        retry_on_conflict(action, attempts=2, what="Lease vault/walwarden-lock")
    assert len(calls) == 2
    assert str(gave_up.value).startswith("Lease vault/walwarden-lock: still conflicting after 2 attempts")
    assert gave_up.value.__cause__ is None


def test_other_errors_are_not_retried():
    calls = []

    def action():
        calls.append(1)
        raise ApiException(status=500, reason="Internal Server Error")

    with pytest.raises(ApiException):
        retry_on_conflict(action)
    assert len(calls) == 1


def test_at_least_one_attempt():
    with pytest.raises(ValueError):
        retry_on_conflict(lambda: None, attempts=0)


def test_call_turns_404_into_none_and_409_into_conflict():
    def answer(status):
        raise ApiException(status=status, reason="why")

    assert call(answer, 404) is None
    with pytest.raises(Conflict):
        call(answer, 409)
    with pytest.raises(ApiException):
        call(answer, 403)
    assert call(lambda x, y=0: x + y, 1, y=2) == 3


def test_owner_reference_is_a_controller_that_does_not_block_the_owners_deletion():
    body = {
        "apiVersion": "walwarden.io/v1alpha1",
        "kind": "RestoreRequest",
        "metadata": {"name": "restore-today", "namespace": "vault", "uid": "0a1b2c3d", "generation": 1},
        "spec": {},
    }
    # The same dict the operator always wrote by hand.
    assert owner_reference(body) == {
        "apiVersion": "walwarden.io/v1alpha1",
        "kind": "RestoreRequest",
        "name": "restore-today",
        "uid": "0a1b2c3d",
        "controller": True,
        "blockOwnerDeletion": False,
    }
    assert type(owner_reference(body)) is dict
