"""Whether Argo CD would scale a stopped service back up (workflow/gitops.py): an Application that
self-heals a vault workload without ignoring its replicas is refused before anything stops."""

from __future__ import annotations

import pytest

from walwarden.api import DEFAULT_TOPOLOGY
from walwarden.workflow.engine import StepFailed
from walwarden.workflow.gitops import check_gitops_leaves_replicas_alone

TRACKING = "argocd.argoproj.io/tracking-id"
IGNORE_REPLICAS = [{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}]


def tracked(vault, app="vault-prod", self_heal=True, ignore=None):
    vault.kube.workload("wallet").annotations[TRACKING] = f"{app}:apps/Deployment:vault/wallet"
    spec = {"syncPolicy": {"automated": {"prune": True, "selfHeal": self_heal}}}
    if ignore is not None:
        spec["ignoreDifferences"] = ignore
    vault.kube.add_custom("applications", {"metadata": {"name": app}, "spec": spec}, namespace="argocd")


def check(vault) -> str:
    return check_gitops_leaves_replicas_alone(vault.kube, vault.namespace, DEFAULT_TOPOLOGY)


def test_untracked_services_are_not_looked_at(vault):
    assert check(vault) == ""


def test_self_heal_without_ignoring_the_replicas_is_refused_naming_the_application_and_the_fix(vault):
    tracked(vault)
    with pytest.raises(StepFailed) as refused:
        check(vault)
    assert refused.value.reason == "GitOpsWouldRestartServices"
    assert "wallet (Deployment, Application argocd/vault-prod)" in refused.value.message
    assert "jsonPointers: [/spec/replicas]" in refused.value.message and "Nothing was touched" in refused.value.message


@pytest.mark.parametrize(
    "ignore",
    [
        IGNORE_REPLICAS,
        [{"group": "apps", "kind": "Deployment", "name": "wallet", "jqPathExpressions": [".spec.replicas"]}],
    ],
)
def test_replicas_ignored_as_the_docs_say_pass(vault, ignore):
    tracked(vault, ignore=ignore)
    assert check(vault) == "Argo CD leaves the replicas of wallet alone"


def test_ignoring_another_workloads_replicas_does_not_count(vault):
    tracked(
        vault,
        ignore=[{"group": "apps", "kind": "Deployment", "name": "orchestrator", "jsonPointers": ["/spec/replicas"]}],
    )
    with pytest.raises(StepFailed):
        check(vault)


def test_without_self_heal_argo_cd_does_not_fight_the_restore(vault):
    tracked(vault, self_heal=False)
    assert check(vault) == "Argo CD leaves the replicas of wallet alone"


def test_an_application_that_is_gone_is_not_a_risk(vault):
    vault.kube.workload("wallet").annotations[TRACKING] = "deleted-app:apps/Deployment:vault/wallet"
    assert check(vault) == ""
