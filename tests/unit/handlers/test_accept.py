"""The accept handler's decisions, on plain dicts (no cluster): what it writes to status."""

from __future__ import annotations

import logging

import kopf
import pytest

from walwarden.api import RestoreRequest, RestoreRequestStatus
from walwarden.handlers import common as handlers

VALID = {
    "apiVersion": "walwarden.io/v1alpha1",
    "kind": "RestoreRequest",
    "metadata": {"name": "r", "namespace": "ns", "generation": 1, "uid": "u1"},
    "spec": {"mode": "InPlace", "source": {"backupRef": {"name": "nightly"}}},
}


@pytest.fixture
def events(monkeypatch):
    posted = []
    monkeypatch.setattr(
        handlers, "announce", lambda body, reason, message, warning=False: posted.append((reason, warning))
    )
    return posted


def run_accept(body: dict, status: dict | None = None) -> dict:
    patch = kopf.Patch()
    handlers.accept(
        RestoreRequest,
        RestoreRequestStatus,
        kopf.Body({**body, "status": status or {}}),
        patch,
        logging.getLogger("test"),
        operator_namespace="walwarden-system",
    )
    return dict(patch.get("status", {}))


def test_valid_request_becomes_pending_with_an_accepted_condition(events):
    status = run_accept(VALID)
    assert status["phase"] == "Pending"
    assert status["observedGeneration"] == 1
    [condition] = status["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == ("Progressing", "True", "Accepted")
    assert events == [("Accepted", False)]


def test_request_the_models_reject_fails_with_the_reason(events):
    body = {**VALID, "spec": {"mode": "Redirected", "source": {"backupRef": {"name": "nightly"}}}}
    status = run_accept(body)
    assert status["phase"] == "Failed"
    assert "spec.redirect" in status["message"] or "redirect" in status["message"]
    failed = [c for c in status["conditions"] if c["type"] == "Failed"]
    assert failed and failed[0]["status"] == "True" and failed[0]["reason"] == "InvalidSpec"
    assert events == [("InvalidSpec", True)]


def test_a_request_already_seen_is_left_alone(events):
    assert run_accept(VALID, {"phase": "Pending"}) == {}
    assert events == []


def test_a_request_in_the_operators_own_namespace_is_refused(events):
    """Its keys live there: even a cluster-wide operator serves no request made in it."""
    body = {**VALID, "metadata": {**VALID["metadata"], "namespace": "walwarden-system"}}
    status = run_accept(body)
    assert status["phase"] == "Failed" and "the operator's own namespace" in status["message"]
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Failed"] == ["InOperatorNamespace"]
    assert events == [("InOperatorNamespace", True)]
