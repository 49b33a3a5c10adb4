"""A stopped service whose original-replicas annotation is lost while it is at 0 (a GitOps replace)
keeps its first record, so ScaleUp starts it with its real replica count."""

from __future__ import annotations

import pytest

from walwarden.api import Topology
from walwarden.kube.workloads import ORIGINAL_REPLICAS
from walwarden.workflow import tiers
from walwarden.workflow.engine import Wait


def test_a_lost_annotation_does_not_overwrite_the_first_record(vault):
    run = vault.restore_run()
    with pytest.raises(Wait):  # wallet 2 -> 0, recorded 2; its pods are still terminating
        tiers.stop_in_order(run, vault.kube, vault.namespace, Topology(), poll=1)
    vault.kube.workload("wallet").annotations.pop(ORIGINAL_REPLICAS)  # e.g. a GitOps sync/replace
    with pytest.raises(Wait):
        tiers.stop_in_order(run, vault.kube, vault.namespace, Topology(), poll=1)
    assert run.status.original_replicas["wallet"] == 2


def test_a_service_whose_annotation_was_lost_while_stopping_comes_back(vault):
    from walwarden.restore.steps.scale_down import scale_down
    from walwarden.restore.steps.scale_up import scale_up

    run = vault.restore_run()
    with pytest.raises(Wait):
        scale_down(run)
    vault.kube.workload("wallet").annotations.pop(ORIGINAL_REPLICAS)
    vault.until_done(lambda: scale_down(run))
    assert vault.until_done(lambda: scale_up(run)).endswith("with their original replica counts")
    assert vault.kube.workload("wallet").replicas == 2
