"""The vault's services as workloads (kube/workloads.py), over stand-ins of AppsV1Api and CoreV1Api
that keep objects as the API server does and apply patches as merge patches (a null removes a key)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes.client import (
    V1Deployment,
    V1DeploymentSpec,
    V1DeploymentStatus,
    V1LabelSelector,
    V1ManagedFieldsEntry,
    V1ObjectMeta,
    V1Pod,
    V1PodList,
    V1PodTemplateSpec,
    V1StatefulSet,
    V1StatefulSetSpec,
    V1StatefulSetStatus,
)
from kubernetes.client.rest import ApiException

from walwarden.kube import workloads
from walwarden.kube.api import Kube
from walwarden.kube.workloads import ORIGINAL_REPLICAS, Workload

NAMESPACE = "vault"


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386, which is what a strategic-merge patch does to these fields."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            if not isinstance(target.get(key), dict):
                target[key] = {}
            merge_patch(target[key], value)
        else:
            target[key] = value


class FakeApps:
    """Deployments and StatefulSets in memory, as API-shaped dicts; reads return client models."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def add(
        self,
        kind: str,
        name: str,
        replicas: int | None = 3,
        ready: int | None = None,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        with_status: bool = True,
    ) -> None:
        obj: dict[str, Any] = {
            "metadata": {"name": name, "namespace": NAMESPACE, "annotations": dict(annotations or {})},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels or {"app.kubernetes.io/name": name}}},
        }
        if with_status:
            obj["status"] = {"readyReplicas": ready}
        self.objects[(kind, name)] = obj

    def spec_replicas(self, kind: str, name: str) -> int | None:
        return self.objects[(kind, name)]["spec"].get("replicas")

    def annotations(self, kind: str, name: str) -> dict[str, str]:
        return self.objects[(kind, name)]["metadata"].get("annotations") or {}

    # the AppsV1Api methods workloads.py calls
    def read_namespaced_deployment(self, name: str, namespace: str) -> V1Deployment:
        obj = self._get("Deployment", name, namespace)
        status = obj.get("status")
        return V1Deployment(
            metadata=self._metadata(obj),
            spec=V1DeploymentSpec(
                replicas=obj["spec"].get("replicas"), selector=self._selector(obj), template=V1PodTemplateSpec()
            ),
            status=None if status is None else V1DeploymentStatus(ready_replicas=status.get("readyReplicas")),
        )

    def read_namespaced_stateful_set(self, name: str, namespace: str) -> V1StatefulSet:
        obj = self._get("StatefulSet", name, namespace)
        status = obj.get("status")
        return V1StatefulSet(
            metadata=self._metadata(obj),
            spec=V1StatefulSetSpec(
                replicas=obj["spec"].get("replicas"),
                selector=self._selector(obj),
                template=V1PodTemplateSpec(),
                service_name=obj["metadata"]["name"],
            ),
            status=None
            if status is None
            else V1StatefulSetStatus(
                replicas=obj["spec"].get("replicas") or 0, ready_replicas=status.get("readyReplicas")
            ),
        )

    def patch_namespaced_deployment(self, name: str, namespace: str, body: dict[str, Any], field_manager: str) -> None:
        self._patch("Deployment", name, namespace, body, field_manager)

    def patch_namespaced_stateful_set(
        self, name: str, namespace: str, body: dict[str, Any], field_manager: str
    ) -> None:
        self._patch("StatefulSet", name, namespace, body, field_manager)

    def _get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        assert namespace == NAMESPACE
        if (kind, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return self.objects[(kind, name)]

    def _patch(self, kind: str, name: str, namespace: str, body: dict[str, Any], field_manager: str) -> None:
        obj = self._get(kind, name, namespace)
        self.patches.append((kind, name, copy.deepcopy(body)))
        merge_patch(obj, body)
        if "replicas" in (body.get("spec") or {}):
            self.set_replicas_by(kind, name, field_manager, "2026-12-02T10:00:00Z")

    def set_replicas_by(self, kind: str, name: str, manager: str, time: str, subresource: str | None = None) -> None:
        """Record in managedFields that `manager` owns spec.replicas, as the API server does."""
        managed = self.objects[(kind, name)]["metadata"].setdefault("managedFields", [])
        managed[:] = [entry for entry in managed if entry.manager != manager]
        fields = {"f:spec": {"f:replicas": {}}}
        managed.append(V1ManagedFieldsEntry(manager=manager, time=time, fields_v1=fields, subresource=subresource))

    @staticmethod
    def _metadata(obj: dict[str, Any]) -> V1ObjectMeta:
        return V1ObjectMeta(
            name=obj["metadata"]["name"],
            annotations=obj["metadata"].get("annotations") or None,
            labels=obj["metadata"].get("labels") or None,
            managed_fields=obj["metadata"].get("managedFields") or None,
        )

    @staticmethod
    def _selector(obj: dict[str, Any]) -> V1LabelSelector:
        return V1LabelSelector(match_labels=obj["spec"]["selector"]["matchLabels"])


class FakeCore:
    """Pods in memory; `list_namespaced_pod` answers an equality label selector like the API server."""

    def __init__(self) -> None:
        self.pods: list[tuple[str, dict[str, str]]] = []
        self.selectors: list[str] = []

    def list_namespaced_pod(self, namespace: str, label_selector: str = "") -> V1PodList:
        assert namespace == NAMESPACE
        self.selectors.append(label_selector)
        wanted = dict(term.split("=", 1) for term in label_selector.split(",") if term)
        return V1PodList(
            items=[
                V1Pod(metadata=V1ObjectMeta(name=name, labels=labels))
                for name, labels in self.pods
                if all(labels.get(key) == value for key, value in wanted.items())
            ]
        )


@pytest.fixture
def apps() -> FakeApps:
    return FakeApps()


@pytest.fixture
def core() -> FakeCore:
    return FakeCore()


@pytest.fixture
def kube(apps: FakeApps, core: FakeCore) -> Kube:
    return Kube(core=core, apps=apps, batch=None, coordination=None, custom=None)  # type: ignore[arg-type]


# -- find_workload ------------------------------------------------------------------------------------


def test_a_deployment_is_found_as_a_deployment(kube: Kube, apps: FakeApps) -> None:
    apps.add("Deployment", "wallet", replicas=2, ready=1, labels={"app": "wallet", "tier": "api"})
    assert workloads.find_workload(kube, NAMESPACE, "wallet") == Workload(
        kind="Deployment",
        namespace=NAMESPACE,
        name="wallet",
        replicas=2,
        ready_replicas=1,
        selector={"app": "wallet", "tier": "api"},
        original_replicas=None,
    )


def test_a_statefulset_is_found_as_a_statefulset(kube: Kube, apps: FakeApps) -> None:
    apps.add("StatefulSet", "nats", replicas=3, ready=3)
    found = workloads.find_workload(kube, NAMESPACE, "nats")
    assert found is not None
    assert (found.kind, found.replicas, found.ready_replicas) == ("StatefulSet", 3, 3)


def test_a_deployment_is_looked_for_before_a_statefulset_of_the_same_name(kube: Kube, apps: FakeApps) -> None:
    apps.add("StatefulSet", "wallet")
    apps.add("Deployment", "wallet")
    found = workloads.find_workload(kube, NAMESPACE, "wallet")
    assert found is not None and found.kind == "Deployment"


def test_a_missing_service_is_none(kube: Kube, apps: FakeApps) -> None:
    apps.add("Deployment", "wallet")
    assert workloads.find_workload(kube, NAMESPACE, "orchestrator") is None


def test_defaults_of_an_unset_replica_count_and_a_missing_status(kube: Kube, apps: FakeApps) -> None:
    apps.add("Deployment", "wallet", replicas=None, ready=None, with_status=False)
    found = workloads.find_workload(kube, NAMESPACE, "wallet")
    assert found is not None
    assert (found.replicas, found.ready_replicas) == (1, 0)  # Kubernetes defaults spec.replicas to 1
    apps.add("Deployment", "wallet", replicas=2, ready=None)
    found = workloads.find_workload(kube, NAMESPACE, "wallet")
    assert found is not None and found.ready_replicas == 0


def test_the_recorded_original_count_is_read_back(kube: Kube, apps: FakeApps) -> None:
    apps.add("Deployment", "wallet", replicas=0, annotations={ORIGINAL_REPLICAS: "4", "other": "x"})
    found = workloads.find_workload(kube, NAMESPACE, "wallet")
    assert found is not None and found.original_replicas == 4


# -- scaling ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_scale_to_zero_records_the_original_count_in_the_same_patch(kube: Kube, apps: FakeApps, kind: str) -> None:
    apps.add(kind, "svc", replicas=3, annotations={"keep": "me"})
    workload = workloads.find_workload(kube, NAMESPACE, "svc")
    assert workload is not None
    assert workloads.scale_to_zero(kube, workload) == 3
    assert apps.patches == [
        (kind, "svc", {"metadata": {"annotations": {ORIGINAL_REPLICAS: "3"}}, "spec": {"replicas": 0}})
    ]
    assert apps.spec_replicas(kind, "svc") == 0
    assert apps.annotations(kind, "svc") == {"keep": "me", ORIGINAL_REPLICAS: "3"}


def test_scale_to_zero_again_keeps_the_first_record(kube: Kube, apps: FakeApps) -> None:
    apps.add("Deployment", "wallet", replicas=3)
    first = workloads.find_workload(kube, NAMESPACE, "wallet")
    assert first is not None and workloads.scale_to_zero(kube, first) == 3
    # A resumed operator finds it at 0 replicas: the record still says 3, and stays 3.
    again = workloads.find_workload(kube, NAMESPACE, "wallet")
    assert again is not None and (again.replicas, again.original_replicas) == (0, 3)
    assert workloads.scale_to_zero(kube, again) == 3
    assert apps.annotations("Deployment", "wallet")[ORIGINAL_REPLICAS] == "3"
    # Even when someone scaled it meanwhile: the first record is what gets restored.
    apps.objects[("Deployment", "wallet")]["spec"]["replicas"] = 1
    meanwhile = workloads.find_workload(kube, NAMESPACE, "wallet")
    assert meanwhile is not None and workloads.scale_to_zero(kube, meanwhile) == 3


def test_scale_to_sets_the_count_and_leaves_the_record(kube: Kube, apps: FakeApps) -> None:
    apps.add("StatefulSet", "policy-node0", replicas=0, annotations={ORIGINAL_REPLICAS: "1"})
    workload = workloads.find_workload(kube, NAMESPACE, "policy-node0")
    assert workload is not None
    workloads.scale_to(kube, workload, 1)
    assert apps.patches == [("StatefulSet", "policy-node0", {"spec": {"replicas": 1}})]
    assert apps.annotations("StatefulSet", "policy-node0") == {ORIGINAL_REPLICAS: "1"}


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_forget_original_replicas_removes_only_our_annotation(kube: Kube, apps: FakeApps, kind: str) -> None:
    apps.add(kind, "svc", replicas=3, annotations={ORIGINAL_REPLICAS: "3", "keep": "me"})
    workload = workloads.find_workload(kube, NAMESPACE, "svc")
    assert workload is not None
    workloads.forget_original_replicas(kube, workload)
    assert apps.patches == [(kind, "svc", {"metadata": {"annotations": {ORIGINAL_REPLICAS: None}}})]
    assert apps.annotations(kind, "svc") == {"keep": "me"}
    found = workloads.find_workload(kube, NAMESPACE, "svc")
    assert found is not None and found.original_replicas is None and found.replicas == 3


def test_restart_stamps_the_pod_template_as_kubectl_rollout_restart(kube: Kube, apps: FakeApps) -> None:
    apps.add("Deployment", "wallet")
    workload = workloads.find_workload(kube, NAMESPACE, "wallet")
    assert workload is not None
    workloads.restart(kube, workload, "2026-12-02T10:00:00Z")
    assert apps.patches == [
        (
            "Deployment",
            "wallet",
            {
                "spec": {
                    "template": {
                        "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-02T10:00:00Z"}}
                    }
                }
            },
        )
    ]


# -- pods ---------------------------------------------------------------------------------------------


def test_pods_of_selects_by_the_workloads_labels(kube: Kube, apps: FakeApps, core: FakeCore) -> None:
    apps.add("Deployment", "wallet", labels={"tier": "api", "app": "wallet"})
    core.pods = [
        ("wallet-1", {"app": "wallet", "tier": "api", "pod-template-hash": "x"}),
        ("wallet-2", {"app": "wallet", "tier": "api"}),
        ("wallet-canary", {"app": "wallet", "tier": "canary"}),
        ("nats-0", {"app": "nats"}),
    ]
    workload = workloads.find_workload(kube, NAMESPACE, "wallet")
    assert workload is not None
    assert workloads.pods_of(kube, workload) == ["wallet-1", "wallet-2"]
    assert core.selectors == ["app=wallet,tier=api"]  # sorted: the same selector every time


def test_pods_of_a_stopped_workload_is_empty(kube: Kube, apps: FakeApps, core: FakeCore) -> None:
    apps.add("StatefulSet", "nats", replicas=0)
    core.pods = [("wallet-1", {"app.kubernetes.io/name": "wallet"})]
    workload = workloads.find_workload(kube, NAMESPACE, "nats")
    assert workload is not None
    assert workloads.pods_of(kube, workload) == []
    assert core.selectors == ["app.kubernetes.io/name=nats"]


def test_who_last_set_the_replicas_and_the_argocd_application_are_read_from_the_object(
    kube: Kube, apps: FakeApps
) -> None:
    apps.add("Deployment", "wallet", replicas=2)
    workload = workloads.find_workload(kube, NAMESPACE, "wallet")
    assert workload is not None and workload.replicas_set_by is None and workload.argocd_application is None
    workloads.scale_to_zero(kube, workload)
    assert workloads.find_workload(kube, NAMESPACE, "wallet").replicas_set_by == workloads.FIELD_MANAGER
    apps.set_replicas_by("Deployment", "wallet", "kubectl", "2026-12-02T10:05:00Z", subresource="scale")
    apps.objects[("Deployment", "wallet")]["metadata"]["annotations"][workloads.ARGOCD_TRACKING_ANNOTATION] = (
        "vault-prod:apps/Deployment:vault/wallet"
    )
    found = workloads.find_workload(kube, NAMESPACE, "wallet")
    assert found.replicas_set_by == "kubectl (scale subresource)"  # the newest owner of spec.replicas
    assert found.argocd_application == "vault-prod"
