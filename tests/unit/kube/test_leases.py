"""The namespace lock (kube/leases.py) over stand-ins of the coordination and custom-objects APIs
that answer as the API server does: 404 for a missing object, 409 for a create of an existing one
or a write with a stale resourceVersion."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta
from kubernetes.client.rest import ApiException

from walwarden.api.common import GROUP, VERSION
from walwarden.kube import leases
from walwarden.kube.api import CONFLICT_ATTEMPTS, Kube, StillConflicting
from walwarden.kube.leases import LOCK_NAME, Holder

NAMESPACE = "vault"
ME = Holder("RestoreRequest", "restore-today", "uid-me")
OTHER = Holder("BackupRequest", "nightly", "uid-other")
PARENT = Holder("RestoreRequest", "restore-parent", "uid-parent")


class FakeCoordination:
    """Leases in memory. `before_write`, when set, runs before each create/replace/delete reaches the
    store: another writer getting there first."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.reads = 0
        self.writes: list[tuple[str, dict[str, Any] | None]] = []
        self.before_write: Callable[[], None] | None = None

    # what another writer does, straight into the store
    def put(self, holder: Holder | str | None, labels: dict[str, str] | None = None) -> None:
        identity = holder.identity if isinstance(holder, Holder) else holder
        self.version += 1
        self.leases[(NAMESPACE, LOCK_NAME)] = {
            "metadata": {"name": LOCK_NAME, "resourceVersion": str(self.version), "labels": labels},
            "spec": {"holderIdentity": identity},
        }

    def holder_identity(self) -> str | None:
        lease = self.leases.get((NAMESPACE, LOCK_NAME))
        return None if lease is None else lease["spec"]["holderIdentity"]

    # the CoordinationV1Api methods leases.py calls
    def read_namespaced_lease(self, name: str, namespace: str) -> V1Lease:
        self.reads += 1
        lease = self.leases.get((namespace, name))
        if lease is None:
            raise ApiException(status=404, reason="Not Found")
        metadata, spec = lease["metadata"], lease["spec"]
        return V1Lease(
            metadata=V1ObjectMeta(
                name=metadata["name"], resource_version=metadata["resourceVersion"], labels=metadata["labels"]
            ),
            spec=V1LeaseSpec(holder_identity=spec["holderIdentity"]),
        )

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any]) -> None:
        self._before_write()
        key = (namespace, body["metadata"]["name"])
        if key in self.leases:
            raise ApiException(status=409, reason="Conflict")
        self.writes.append(("create", body))
        self.version += 1
        self.leases[key] = {
            "metadata": {**copy.deepcopy(body["metadata"]), "resourceVersion": str(self.version)},
            "spec": copy.deepcopy(body["spec"]),
        }

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        self._before_write()
        current = self.leases.get((namespace, name))
        if current is None:
            raise ApiException(status=404, reason="Not Found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self.writes.append(("replace", body))
        self.version += 1
        self.leases[(namespace, name)] = {
            "metadata": {**copy.deepcopy(body["metadata"]), "resourceVersion": str(self.version)},
            "spec": copy.deepcopy(body["spec"]),
        }

    def delete_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        self._before_write()
        current = self.leases.get((namespace, name))
        if current is None:
            raise ApiException(status=404, reason="Not Found")
        if body["preconditions"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self.writes.append(("delete", body))
        del self.leases[(namespace, name)]

    def _before_write(self) -> None:
        if self.before_write is not None:
            self.before_write()


class FakeCustomObjects:
    """The requests that exist, by plural and name."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, holder: Holder, phase: str | None = None, uid: str | None = None) -> None:
        plural = leases.PLURALS[holder.kind]
        status = {"phase": phase} if phase else {}
        self.objects[(plural, holder.name)] = {
            "metadata": {"name": holder.name, "uid": uid or holder.uid},
            "status": status,
        }

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> dict[str, Any]:
        assert (group, version, namespace) == (GROUP, VERSION, NAMESPACE)
        if (plural, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.objects[(plural, name)])


@pytest.fixture
def coordination() -> FakeCoordination:
    return FakeCoordination()


@pytest.fixture
def requests() -> FakeCustomObjects:
    return FakeCustomObjects()


@pytest.fixture
def kube(coordination: FakeCoordination, requests: FakeCustomObjects) -> Kube:
    return Kube(core=None, apps=None, batch=None, coordination=coordination, custom=requests)  # type: ignore[arg-type]


# -- acquire ------------------------------------------------------------------------------------------


def test_a_free_lock_is_created_for_me(kube: Kube, coordination: FakeCoordination) -> None:
    assert leases.acquire(kube, NAMESPACE, ME) is None
    [(verb, body)] = coordination.writes
    assert verb == "create"
    assert body == {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LOCK_NAME, "labels": {"app.kubernetes.io/managed-by": "walwarden"}},
        "spec": {"holderIdentity": "RestoreRequest/restore-today/uid-me"},
    }


def test_a_lock_i_hold_is_mine_without_a_write(kube: Kube, coordination: FakeCoordination) -> None:
    coordination.put(ME)
    assert leases.acquire(kube, NAMESPACE, ME) is None
    assert coordination.writes == []


def test_an_active_holder_is_waited_for(
    kube: Kube, coordination: FakeCoordination, requests: FakeCustomObjects
) -> None:
    coordination.put(OTHER)
    requests.add(OTHER, phase="Running")
    assert leases.acquire(kube, NAMESPACE, ME) == OTHER
    requests.add(OTHER)  # accepted, no phase yet: still active
    assert leases.acquire(kube, NAMESPACE, ME) == OTHER
    assert coordination.writes == [] and coordination.holder_identity() == OTHER.identity


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "RolledBack"])
def test_a_finished_holder_is_taken_over(
    kube: Kube, coordination: FakeCoordination, requests: FakeCustomObjects, phase: str
) -> None:
    coordination.put(OTHER, labels={"app.kubernetes.io/managed-by": "walwarden", "team": "vault"})
    requests.add(OTHER, phase=phase)
    assert leases.acquire(kube, NAMESPACE, ME) is None
    [(verb, body)] = coordination.writes
    assert verb == "replace"
    assert body["metadata"]["resourceVersion"] == "1"  # the version read: the takeover is atomic
    assert body["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "walwarden", "team": "vault"}
    assert coordination.holder_identity() == ME.identity


def test_a_deleted_holder_is_taken_over(kube: Kube, coordination: FakeCoordination) -> None:
    coordination.put(OTHER)  # no such request any more
    assert leases.acquire(kube, NAMESPACE, ME) is None
    assert coordination.holder_identity() == ME.identity


def test_a_holder_deleted_and_recreated_under_the_same_name_is_taken_over(
    kube: Kube, coordination: FakeCoordination, requests: FakeCustomObjects
) -> None:
    coordination.put(OTHER)
    requests.add(OTHER, phase="Running", uid="uid-of-a-new-request")
    assert leases.acquire(kube, NAMESPACE, ME) is None
    assert coordination.holder_identity() == ME.identity


@pytest.mark.parametrize("identity", [None, "", "not-an-identity", "Deployment/wallet/uid-1"])
def test_a_lease_without_a_holder_we_know_is_taken_over(
    kube: Kube, coordination: FakeCoordination, identity: str | None
) -> None:
    coordination.put(identity)
    assert leases.acquire(kube, NAMESPACE, ME) is None
    assert coordination.holder_identity() == ME.identity


def test_a_request_runs_under_its_parents_lock(
    kube: Kube, coordination: FakeCoordination, requests: FakeCustomObjects
) -> None:
    coordination.put(PARENT)
    requests.add(PARENT, phase="Running")
    assert leases.acquire(kube, NAMESPACE, ME, parent=PARENT) is None
    assert coordination.writes == [] and coordination.holder_identity() == PARENT.identity
    # Without the parent relation the same lock is someone else's.
    assert leases.acquire(kube, NAMESPACE, ME) == PARENT


# -- acquire racing other writers ---------------------------------------------------------------------


def test_losing_the_race_to_create_reads_the_lease_again_and_waits_for_the_winner(
    kube: Kube, coordination: FakeCoordination, requests: FakeCustomObjects
) -> None:
    requests.add(OTHER, phase="Running")

    def other_creates_it_first() -> None:
        coordination.before_write = None
        coordination.put(OTHER)

    coordination.before_write = other_creates_it_first
    assert leases.acquire(kube, NAMESPACE, ME) == OTHER
    assert coordination.reads == 2 and coordination.holder_identity() == OTHER.identity


def test_losing_the_race_to_take_over_reads_the_lease_again(
    kube: Kube, coordination: FakeCoordination, requests: FakeCustomObjects
) -> None:
    coordination.put(OTHER)  # deleted: free to take over, but a third request is faster
    third = Holder("BackupRequest", "adhoc", "uid-third")
    requests.add(third, phase="Running")

    def third_takes_it_first() -> None:
        coordination.before_write = None
        coordination.put(third)

    coordination.before_write = third_takes_it_first
    assert leases.acquire(kube, NAMESPACE, ME) == third
    assert coordination.writes == [] and coordination.holder_identity() == third.identity


def test_conflicts_are_retried_a_bounded_number_of_times(kube: Kube, coordination: FakeCoordination) -> None:
    coordination.put(OTHER)  # deleted: we try to take over, but someone rewrites the lease every time
    coordination.before_write = lambda: coordination.put(OTHER)
    with pytest.raises(StillConflicting) as gave_up:
        leases.acquire(kube, NAMESPACE, ME)
    assert coordination.reads == CONFLICT_ATTEMPTS  # the lease is read afresh on each attempt
    assert f"Lease {NAMESPACE}/{LOCK_NAME}" in str(gave_up.value)
    assert f"after {CONFLICT_ATTEMPTS} attempts" in str(gave_up.value)
    assert coordination.holder_identity() == OTHER.identity


# -- release ------------------------------------------------------------------------------------------


def test_the_holder_releases_the_lock(kube: Kube, coordination: FakeCoordination) -> None:
    coordination.put(ME)
    leases.release(kube, NAMESPACE, ME)
    assert coordination.holder_identity() is None
    [(verb, body)] = coordination.writes
    assert verb == "delete" and body == {"preconditions": {"resourceVersion": "1"}}


def test_only_the_holder_releases_the_lock(kube: Kube, coordination: FakeCoordination) -> None:
    coordination.put(OTHER)
    leases.release(kube, NAMESPACE, ME)
    assert coordination.writes == [] and coordination.holder_identity() == OTHER.identity


def test_releasing_a_lock_nobody_holds_does_nothing(kube: Kube, coordination: FakeCoordination) -> None:
    leases.release(kube, NAMESPACE, ME)
    assert coordination.writes == []


def test_a_lock_changed_while_releasing_is_left_to_whoever_changed_it(
    kube: Kube, coordination: FakeCoordination
) -> None:
    coordination.put(ME)

    def other_takes_it_first() -> None:
        coordination.before_write = None
        coordination.put(OTHER)

    coordination.before_write = other_takes_it_first
    leases.release(kube, NAMESPACE, ME)
    assert coordination.holder_identity() == OTHER.identity


def test_holder_identity_round_trips() -> None:
    assert Holder.parse(ME.identity) == ME
    assert Holder.parse(None) is None and Holder.parse("a/b") is None and Holder.parse("a/b/c/d/e") is None
    elsewhere = Holder("RestoreRequest", "drill", "u-1", namespace="team-a")  # a lease of another namespace
    assert elsewhere.identity == "RestoreRequest/team-a/drill/u-1" and Holder.parse(elsewhere.identity) == elsewhere
