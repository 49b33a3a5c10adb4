"""The restore history (restore/history.py): a restore that succeeded is recorded, and another
request doing the same again — same backup, mode and target — is refused in Validate unless it
says spec.allowRepeat (a RestoreRequest pruned from git and synced back is such a request)."""

from __future__ import annotations

import json

import pytest

from walwarden.restore.history import HISTORY_CONFIGMAP, record_restore
from walwarden.restore.steps.preflight import preflight
from walwarden.restore.steps.validate import validate
from walwarden.workflow.engine import StepFailed

AGAIN_UID = "9e9f0e3c-1111-4222-8333-444455556666"


def test_a_restore_that_ran_is_recorded_once_by_what_it_did(vault):
    run = vault.restore_run()
    record_restore(run)
    record_restore(vault.next_pass(run))  # a second pass records nothing new
    [entry] = vault.kube.config_maps[(vault.namespace, HISTORY_CONFIGMAP)]["data"].values()
    assert json.loads(entry)["request"] == "restore-1" and json.loads(entry)["uid"] == run.uid
    assert "password" not in entry


def test_the_same_restore_again_is_refused_before_anything_is_touched(vault):
    record_restore(vault.restore_run())
    again = vault.restore_run(uid=AGAIN_UID)  # the same YAML, re-created (prune, then sync)
    with pytest.raises(StepFailed) as refused:
        validate(again)
    assert refused.value.reason == "RestoreAlreadyRan"
    assert "RestoreRequest restore-1 already restored" in refused.value.message
    assert "spec.allowRepeat: true" in refused.value.message and "Nothing was touched" in refused.value.message


def test_allow_repeat_or_another_target_is_not_a_repeat(vault):
    record_restore(vault.restore_run())
    validate(vault.restore_run(vault.restore_spec(allowRepeat=True), uid=AGAIN_UID))
    other = vault.restore_spec(target={"secretRef": {"name": "restore-admin"}, "database": "vault_copy"})
    validate(vault.restore_run(other, uid=AGAIN_UID))


def test_the_request_that_was_recorded_passes_validate_again(vault):
    run = vault.restore_run()
    record_restore(run)
    validate(vault.next_pass(run))  # e.g. the operator restarted after Verify


def test_a_twin_validated_before_the_first_ran_is_refused_in_preflight_under_the_lock(vault):
    twin = vault.restore_run(uid=AGAIN_UID)
    validate(twin)  # the first had not run yet
    record_restore(vault.restore_run())  # now it has
    with pytest.raises(StepFailed) as refused:
        preflight(vault.next_pass(twin))
    assert refused.value.reason == "RestoreAlreadyRan"
    assert vault.kube.jobs == {}  # refused before the verify Job
