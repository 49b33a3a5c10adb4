"""Events are numbered per request, across passes, so those of one second read in order."""

from __future__ import annotations

from walwarden.handlers.common import number_events


def test_events_are_numbered_on_from_the_count_in_status(vault):
    run = vault.restore_run()
    run.event("ValidateStarted", "step Validate started")
    run.event("ValidateSucceeded", "checked")
    first = number_events(run)
    assert [e.message for e in first] == ["[1] step Validate started", "[2] checked"]
    assert run.status.events_posted == 2
    run.events = []
    run.event("PlanStarted", "step Plan started", warning=True)
    assert [(e.reason, e.message, e.warning) for e in number_events(run)] == [
        ("PlanStarted", "[3] step Plan started", True)
    ]
    assert run.status.events_posted == 3
